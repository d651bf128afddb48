from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from firewallenv import Topo

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nsutil import Namespaces


@pytest.fixture
def topo(netns: Namespaces, tmp_path: Path) -> Iterator[Topo]:
    """A built firewall topology (firewallenv.Topo), stopped after the test; for the firewall test files."""
    t = Topo(netns, str(tmp_path / "state")).build()
    try:
        yield t
    finally:
        t.stop()
