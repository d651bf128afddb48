from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from typing import TYPE_CHECKING

from nsutil import Namespaces, is_root

if TYPE_CHECKING:
    from collections.abc import Iterator


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_root():
        return
    skip = pytest.mark.skip(reason="needs root to create network namespaces (run `make test` as root)")
    for item in items:
        if "privileged" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    """Make throwaway namespaces with netns.new(); all are deleted after the test, pass or fail."""
    spaces = Namespaces()
    try:
        yield spaces
    finally:
        spaces.cleanup()


HOST_STATE = ("/var/lib/cni/networks", "/var/lib/cni/results", "/run/cni/ignite", "/etc/cni/net.d", "/opt/cni/bin")


@pytest.fixture(scope="session", autouse=True)
def machine_state_is_left_alone() -> Iterator[None]:
    """Tests use temp folders only: fail the run if one of them wrote into the machine's CNI folders."""
    import os

    before = {p: sorted(os.listdir(p)) if os.path.isdir(p) else None for p in HOST_STATE}
    yield
    after = {p: sorted(os.listdir(p)) if os.path.isdir(p) else None for p in HOST_STATE}
    changed = {p: (before[p], after[p]) for p in HOST_STATE if before[p] != after[p]}
    assert not changed, f"tests changed the machine's CNI folders (before, after): {changed}"
