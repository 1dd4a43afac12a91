"""Inference: from a request to codes and audio, with a bundle's trained models.

    options.py    SamplingSettings (logits -> tokens), SamplingOptions (a request's choices)
    request.py    SampleRequest: checked against the bundle, stored in song.json
    run.py        Sampler: the run loop, top-down over levels, saving after every window
    level.py      one level, window by window (LevelJob, sample_level)
    schedule.py   which windows cover a level, their random streams, batch chunks
    window.py     one window: KV-cached ancestral sampling and the logits filters
    alignment.py  lyric timings read off the top prior's attention
    song.py       Song and the run directory (codes, record, WAVs, spectrograms)
    codes.py      the codes file format
    codec.py      audio <-> codes through the VQ-VAE levels (encode, decode, reconstruct)
    plots.py      spectrogram and alignment PNGs
"""
