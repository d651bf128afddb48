from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nsutil import Namespaces, is_root  # noqa: E402


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
