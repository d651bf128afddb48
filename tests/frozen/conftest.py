"""Fixtures for tests of the frozen bundle (dist/cni-ignite, built by `make build`).

Every test here is marked ``frozen``. Without dist/ they skip with the reason; `make test` builds first,
so CI never skips them. Set CNI_IGNITE_DIST to test another build.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bundle import EXE, built


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"no frozen bundle at {EXE}: run `make build` (`make test` builds it first)")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.frozen)
            if not built():
                item.add_marker(skip)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A folder like /opt/cni/bin: ignite-bridge, ignite-ipam and loopback as symlinks to the frozen executable."""
    d = tmp_path / "cni-bin"
    d.mkdir()
    for name in ("ignite-bridge", "ignite-ipam", "loopback"):
        (d / name).symlink_to(EXE)
    return d
