"""The bridge's attachment records on a failing or interrupted file system: a failed write answers
IOFailure (5) and leaves no temp file; a killed writer's temp file is cleared by whoever next has the
network's lock exclusively (an ADD or DEL that finds no other ADD, gc), never while an ADD holds it."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from cni_ignite.bridge import records
from cni_ignite.errors import IOFailure

if TYPE_CHECKING:
    from pathlib import Path

NET = "net1"
REC = records.Record(cid="c1", ifname="eth0", owner="o1", netns="/run/netns/x", dev=1, ino=2)


def files(state: Path) -> list[str]:
    base = records.folder(str(state), NET)
    return sorted(os.path.relpath(os.path.join(d, f), base) for d, _, fs in os.walk(base) for f in fs)


@pytest.mark.parametrize("call", ["write", "replace"])
def test_a_failed_write_is_an_io_failure_and_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 call: str) -> None:
    def fail(*_: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(records.os, call, fail)
    with pytest.raises(IOFailure, match="attachment record") as failed:
        records.write(str(tmp_path), NET, REC)
    assert failed.value.code == 5
    monkeypatch.undo()
    assert files(tmp_path) == []
    assert records.load(str(tmp_path), NET, "c1", "eth0") is None


def test_a_record_written_whole_reads_back(tmp_path: Path) -> None:
    records.write(str(tmp_path), NET, REC)
    assert records.load(str(tmp_path), NET, "c1", "eth0") == REC
    assert records.latest(str(tmp_path), NET, "o1", "eth0") == "c1"
    assert [f for f in files(tmp_path) if f.startswith("tmp/")] == []


def killed_writer(state: Path) -> str:
    """A temp file as a writer killed between write and rename leaves it."""
    base = os.path.join(records.folder(str(state), NET), records.TMP)
    os.makedirs(base, exist_ok=True)
    path = os.path.join(base, "a-0123abcd.4242.tmp")
    with open(path, "wb") as f:
        f.write(b'{"cid": "half')
    return path


def test_a_killed_writers_temp_file_is_cleared_by_the_next_add_with_the_lock_free(tmp_path: Path) -> None:
    path = killed_writer(tmp_path)
    fd = records.hold_shared(str(tmp_path), NET)
    try:
        assert not os.path.exists(path)
    finally:
        os.close(fd)


def test_a_temp_file_is_kept_while_another_add_holds_the_lock(tmp_path: Path) -> None:
    other = records.hold_shared(str(tmp_path), NET)  # an ADD in progress: its temp file may be live
    try:
        path = killed_writer(tmp_path)
        mine = records.hold_shared(str(tmp_path), NET)  # a second ADD does not wait, and clears nothing
        os.close(mine)
        records.tidy(str(tmp_path), NET)  # nor does a DEL
        assert os.path.exists(path)
    finally:
        os.close(other)
    records.tidy(str(tmp_path), NET)  # the lock is free: a DEL clears it
    assert not os.path.exists(path)


def test_del_tidy_creates_nothing_for_a_network_without_records(tmp_path: Path) -> None:
    records.tidy(str(tmp_path), NET)
    assert not os.path.exists(records.folder(str(tmp_path), NET))


def test_gc_exclusive_clears_temp_files(tmp_path: Path) -> None:
    path = killed_writer(tmp_path)
    with records.exclusive(str(tmp_path), NET) as locked:
        assert locked and not os.path.exists(path)


def test_a_record_that_cannot_be_read_is_an_io_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records.write(str(tmp_path), NET, REC)

    def fail(*_: object, **__: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("builtins.open", fail)
    with pytest.raises(IOFailure):
        records.load(str(tmp_path), NET, "c1", "eth0")
