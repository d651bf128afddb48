from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from firewallenv import Topo
from vm import guest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nsutil import Namespaces
    from vm.flow import World


@pytest.fixture
def topo(netns: Namespaces, tmp_path: Path) -> Iterator[Topo]:
    """A built firewall topology (firewallenv.Topo), stopped after the test; for the firewall test files."""
    t = Topo(netns, str(tmp_path / "state")).build()
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture(scope="module")
def image() -> guest.GuestImage:
    """The QEMU guest (kernel + busybox initramfs) of the VM test files, built once per module."""
    return guest.prepare_guest()


@pytest.fixture
def worlds() -> Iterator[list[World]]:
    """Every vm.flow.World appended here is closed after the test: QEMUs stopped by PID, then the
    namespaces and temp folders deleted."""
    made: list[World] = []
    yield made
    for w in made:
        w.close()
