"""Print the parity table without pytest: `JUKEBOX_SRC=... python -m tests.parity.report`."""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.parity.jukebox_reference import skip_reason


def main() -> int:
    reason = skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    from tests.parity import compare
    from tests.parity.cases import MODEL_SETS, build_references

    began = time.perf_counter()
    rows: list[compare.Row] = []
    errors: list[str] = []

    def run(case: str, what: Callable[[], list[compare.Row]]) -> None:
        try:
            rows.extend(what())
        except Exception as exc:  # report every case, whatever fails
            errors.append(f"{case}: {type(exc).__name__}: {exc}")
            rows.append(compare.Row(case, f"error #{len(errors)}", math.inf, 0))

    with tempfile.TemporaryDirectory() as tmp:
        refs = build_references(Path(tmp) / "checkpoints")
        for model_set, presets in MODEL_SETS.items():
            try:
                bundle = compare.import_bundle(refs, model_set, Path(tmp) / model_set)
            except Exception as exc:
                errors.append(f"import {model_set}: {type(exc).__name__}: {exc}")
                rows.append(compare.Row(f"{model_set}: import", f"error #{len(errors)}",
                                        math.inf, 0))
                continue
            if model_set == "5b":
                run("vqvae", lambda b=bundle: compare.vqvae_rows(refs, b))
            for preset in presets:
                if model_set == "5b_lyrics" and preset != "prior_5b_lyrics":
                    continue  # the same upsamplers as 5b
                case = f"{model_set}: {preset}"
                run(case, lambda p=preset, b=bundle, s=model_set: compare.prior_rows(refs, p, b, s))
                if model_set == "5b" or not preset.startswith("upsampler"):
                    run(case, lambda p=preset, b=bundle, s=model_set:
                        compare.cached_rows(refs, p, b, s))
    print(compare.format_table(rows))
    for number, error in enumerate(errors, 1):
        print(f"error #{number} {error}")
    print(f"{sum(not r.ok for r in rows)} of {len(rows)} over tolerance "
          f"({time.perf_counter() - began:.0f} s)")
    return int(any(not r.ok for r in rows))


if __name__ == "__main__":
    sys.exit(main())
