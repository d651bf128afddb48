"""Where the frozen bundle under test is (dist/cni-ignite, built by `make build`; CNI_IGNITE_DIST overrides)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DIST = Path(os.environ.get("CNI_IGNITE_DIST", str(REPO / "dist")))
BUNDLE = DIST / "cni-ignite"
EXE = BUNDLE / "cni-ignite"
MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def built() -> bool:
    return EXE.is_file() and os.access(EXE, os.X_OK)
