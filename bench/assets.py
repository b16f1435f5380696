"""Where the optional offline assets (real weights and images) are.

They are never shipped with the project. ``$BENCH_ASSETS`` points at them; by
default the ``shared/assets`` folder beside the checkout, as on CI. Code that
needs them asks :func:`assets_dir` and gets None when they are absent, so tests
can skip cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "assets"


def assets_dir() -> Path | None:
    """The assets folder, or None when it does not exist."""
    path = Path(os.environ.get("BENCH_ASSETS", _DEFAULT))
    return path if path.is_dir() else None
