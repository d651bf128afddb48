"""Fixtures for tests of the frozen bundle (dist/cni-ignite, built by `make build`).

Every test here is marked ``frozen``. Without dist/ they skip with the reason; `make test` builds first,
so CI never skips them. Set CNI_IGNITE_DIST to test another build.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
DIST = Path(os.environ.get("CNI_IGNITE_DIST", str(REPO / "dist")))
BUNDLE = DIST / "cni-ignite"
EXE = BUNDLE / "cni-ignite"
MINIMAL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"no frozen bundle at {EXE}: run `make build` (`make test` builds it first)")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.frozen)
            if not (EXE.is_file() and os.access(EXE, os.X_OK)):
                item.add_marker(skip)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A folder like /opt/cni/bin: ignite-bridge and ignite-ipam as symlinks to the frozen executable."""
    d = tmp_path / "cni-bin"
    d.mkdir()
    for name in ("ignite-bridge", "ignite-ipam"):
        (d / name).symlink_to(EXE)
    return d
