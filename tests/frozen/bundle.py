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


def python_installations(keep: Path | None = None) -> list[str]:
    """The outermost folders holding a Python installation here (system, pyenv, the venv), to hide under an
    empty tmpfs as on a fresh machine with no Python; none that contains `keep`."""
    import sys

    pyenv = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    found = sorted({p for p in ("/usr/lib/python3", "/usr/lib/python3.11", "/usr/local/lib/python3.11", sys.prefix,
                                sys.base_prefix, os.path.realpath(sys.base_prefix), pyenv)
                    if os.path.isdir(p) and not (keep is not None and str(keep).startswith(p + "/"))})
    return [p for p in found if not any(p.startswith(q + "/") for q in found)]
