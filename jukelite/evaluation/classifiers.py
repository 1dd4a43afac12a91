"""Artist and genre classifiers: a small MLP on song-level features, trained with torch.

Song-level statistics (see :mod:`jukelite.evaluation.features`) already separate the demo songs'
genres and artists well, so a two-layer network trained full-batch for a few hundred steps is
enough, trains in seconds on a CPU and is exactly reproducible for a given seed. A classifier
remembers which feature function it was trained on (the full-band
:func:`~jukelite.evaluation.features.song_features` or the band-limited
:func:`~jukelite.evaluation.content.content_features`), so that :meth:`SongClassifier.predict`
hears clips the way it learned them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jukelite.evaluation.features import AudioLike, song_features

FeatureFn = Callable[[AudioLike, int], Tensor]


@dataclass
class SongClassifier:
    """A trained classifier over ``labels``; features are standardised with training stats."""

    labels: list[str]
    sample_rate: int
    mean: Tensor
    std: Tensor
    network: nn.Module
    featurize: FeatureFn = song_features

    def predict_features(self, features: Tensor) -> list[str]:
        """Labels for a batch of song-level feature vectors ``[N, D]``."""
        with torch.no_grad():
            logits = self.network((features - self.mean) / self.std)
        return [self.labels[i] for i in logits.argmax(dim=1).tolist()]

    def predict(self, audios: Sequence[AudioLike]) -> list[str]:
        """Labels for clips (``[S]`` or ``[C, S]`` each) at the classifier's sample rate."""
        if not audios:
            return []
        return self.predict_features(features_of(audios, self.sample_rate, self.featurize))


def features_of(
    audios: Sequence[AudioLike], sample_rate: int, featurize: FeatureFn = song_features
) -> Tensor:
    """Song-level features ``[N, D]`` of several clips (by default the full-band ones)."""
    return torch.stack([featurize(a, sample_rate) for a in audios])


def _network(n_features: int, n_labels: int, hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, n_labels)
    )


def train_classifier(
    features: Tensor,
    targets: Sequence[str],
    sample_rate: int,
    seed: int = 0,
    steps: int = 300,
    hidden: int = 64,
    lr: float = 1e-2,
    weight_decay: float = 1e-2,
    featurize: FeatureFn = song_features,
) -> SongClassifier:
    """Fit a classifier to feature vectors ``[N, D]`` and their labels (full batch, Adam).

    The label set is the sorted set of ``targets``; a single label is allowed (it is then
    always predicted). Weight decay and dropout keep the small training sets from being
    memorised by a few features that happen to separate them. ``featurize`` names the function
    ``features`` came from, for :meth:`SongClassifier.predict`.
    """
    if features.ndim != 2 or features.shape[0] != len(targets):
        raise ValueError(f"need features [N, D] for N={len(targets)} targets, got "
                         f"{tuple(features.shape)}")
    if not targets:
        raise ValueError("no training examples")
    labels = sorted(set(targets))
    index = {name: i for i, name in enumerate(labels)}
    y = torch.tensor([index[t] for t in targets])
    features = features.float()
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False).clamp_min(1e-4)
    x = (features - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _network(x.shape[1], len(labels), hidden)
        optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
        network.train()
        for _ in range(steps):
            loss = nn.functional.cross_entropy(network(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    network.eval()
    return SongClassifier(labels, int(sample_rate), mean, std, network, featurize)


def accuracy(predicted: Sequence[str], expected: Sequence[str]) -> float:
    """Fraction of positions where the two label lists agree."""
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} labels")
    if not expected:
        raise ValueError("accuracy of an empty list is undefined")
    return sum(p == e for p, e in zip(predicted, expected, strict=True)) / len(expected)
