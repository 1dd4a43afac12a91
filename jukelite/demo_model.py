"""Where the shipped demo bundle lives, so `jukelite.load()` and `jukelite sample` work with no
model named and nothing downloaded.

The bundle is kept in the repository's `data/demo/` (found there by source checkouts and editable
installs) and copied to `<prefix>/share/jukelite/demo/` by a wheel install (pyproject data-files).
"""

from __future__ import annotations

import sys
from pathlib import Path

from jukelite.bundle import MANIFEST_NAME, BundleError

DEMO_NAME = "demo"


def demo_bundle_candidates() -> list[Path]:
    """Places the demo bundle is looked for, first match wins."""
    repository = Path(__file__).resolve().parents[1] / "data" / DEMO_NAME
    return [repository, Path(sys.prefix) / "share" / "jukelite" / DEMO_NAME]


def demo_bundle_path() -> Path:
    """The directory of the shipped demo bundle; a clear error when the install lacks it."""
    candidates = demo_bundle_candidates()
    for folder in candidates:
        if (folder / MANIFEST_NAME).is_file():
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise BundleError(
        f"the demo model is not installed (looked in {searched}); install jukelite from its "
        "repository (pip install -e .) or pass --model / the path of a trained bundle"
    )
