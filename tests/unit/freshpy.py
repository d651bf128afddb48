"""Run code in a fresh interpreter (``-S -I``: no site, no user paths) with the repo first on ``sys.path``, as a
plugin process starts: whatever is in ``sys.modules`` there was loaded by the code's own imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_fresh(code: str) -> str:
    """`code`'s stdout; fails the test (with its stderr) when it exits non-zero."""
    prelude = f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
    res = subprocess.run([sys.executable, "-S", "-I", "-c", prelude + code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout
