"""What a failure to open or enter a network namespace means (issue 13, "netns open error taken for gone"):
only a missing path is gone, only a path or file that can never be a netns is InvalidNetns; any other error
is an I/O failure (5), so that a DEL meeting it fails and is repeated instead of answering ok while the
container's links are still there. No root needed: os.open / setns are replaced, or a plain file is used."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

import pytest

from cni_ignite.bridge import kernel
from cni_ignite.errors import InvalidNetns, IOFailure
from cni_ignite.netlink import netns
from cni_ignite.netlink.ops import NetnsGone

if TYPE_CHECKING:
    from pathlib import Path


def _failing_open(monkeypatch: pytest.MonkeyPatch, target: str, err: int) -> None:
    real_open = os.open

    def open_(path: str, flags: int, *a: int) -> int:
        if path == target:
            raise OSError(err, os.strerror(err), path)
        return real_open(path, flags, *a)

    monkeypatch.setattr(netns.os, "open", open_)


@pytest.mark.parametrize(("err", "kind"), [
    (errno.ENOENT, NetnsGone), (errno.ENOTDIR, NetnsGone),
    (errno.ENAMETOOLONG, InvalidNetns), (errno.ELOOP, InvalidNetns), (errno.ENXIO, InvalidNetns),
    (errno.EIO, IOFailure), (errno.ENOSPC, IOFailure), (errno.EACCES, IOFailure), (errno.EMFILE, IOFailure),
])
def test_open_netns_tells_gone_from_not_a_netns_from_an_io_failure(
        monkeypatch: pytest.MonkeyPatch, err: int, kind: type[Exception]) -> None:
    _failing_open(monkeypatch, "/run/netns/x", err)
    with pytest.raises(kind) as info:
        netns.open_netns("/run/netns/x")
    assert type(info.value) is kind


def test_a_missing_path_is_gone_for_real(tmp_path: Path) -> None:
    with pytest.raises(NetnsGone):
        netns.open_netns(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("")
    with pytest.raises(NetnsGone):  # ENOTDIR: a path below a plain file does not exist either
        netns.open_netns(str(tmp_path / "file" / "ns"))


def test_entering_a_plain_file_is_invalid_netns(tmp_path: Path) -> None:
    """The real kernel: setns(2) on a file that is no namespace answers EINVAL (before any permission check)."""
    plain = tmp_path / "leftover"
    plain.write_text("")
    fd = netns.open_netns(str(plain))
    try:
        before = netns.current_ns_id()
        with pytest.raises(InvalidNetns), netns.entered(fd):
            pytest.fail("the body must not run")
        assert netns.current_ns_id() == before
    finally:
        os.close(fd)


@pytest.mark.parametrize(("err", "kind"), [(errno.EINVAL, InvalidNetns), (errno.EPERM, IOFailure),
                                           (errno.ENOMEM, IOFailure), (errno.EIO, IOFailure)])
def test_a_setns_failure_is_invalid_netns_only_for_einval(
        monkeypatch: pytest.MonkeyPatch, err: int, kind: type[Exception]) -> None:
    def setns(fd: int, nstype: int = 0) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(netns, "setns", setns)
    with pytest.raises(kind) as info, netns.entered(0):
        pytest.fail("the body must not run")
    assert type(info.value) is kind


def test_setns_that_cannot_be_loaded_is_an_io_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def setns(fd: int, nstype: int = 0) -> None:
        raise ImportError("cannot open shared object file: Input/output error")

    monkeypatch.setattr(netns, "setns", setns)
    with pytest.raises(IOFailure), netns.entered(0):
        pytest.fail("the body must not run")


@pytest.mark.parametrize("err", [errno.ENOENT, errno.ENAMETOOLONG])
def test_del_skips_a_container_side_that_is_gone_or_no_netns(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    _failing_open(monkeypatch, "/run/netns/x", err)
    assert kernel.open_container_for_del("/run/netns/x") is None
    assert kernel.open_container_for_del("") is None


def test_del_skips_a_leftover_file_that_is_no_netns(tmp_path: Path) -> None:
    plain = tmp_path / "leftover"
    plain.write_text("")
    assert kernel.open_container_for_del(str(plain)) is None


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EACCES])
def test_del_fails_when_the_container_side_cannot_be_reached_for_an_io_error(
        monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    _failing_open(monkeypatch, "/run/netns/x", err)
    with pytest.raises(IOFailure) as info:
        kernel.open_container_for_del("/run/netns/x")
    assert info.value.code == 5


def test_a_refused_return_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The way back (setns to our own netns) refused once (ENOMEM, or the fault sweep's injected error at that
    call): the body's work stands and the call goes on; refused twice: NetnsRestoreFailed (the process must
    not go on inside the container's namespace)."""
    calls: list[int] = []

    def setns(fd: int, nstype: int = 0) -> None:  # call 1: enter; call 2: the way back, refused; 3: again
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    monkeypatch.setattr(netns, "setns", setns)
    done = False
    with netns.entered(7):
        done = True
    assert done and len(calls) == 3 and calls[0] == 7

    calls.clear()

    def refuse_back(fd: int, nstype: int = 0) -> None:
        calls.append(fd)
        if len(calls) > 1:
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    monkeypatch.setattr(netns, "setns", refuse_back)
    with pytest.raises(netns.NetnsRestoreFailed), netns.entered(7):
        pass
    assert len(calls) == 3
