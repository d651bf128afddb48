"""A failed netlink send or receive, a failed open of our own namespace or of /dev/net/tun: a CNI error with
a meaningful code (5, or 11 when a retry may well succeed), never a raw OSError (999 + traceback)."""

from __future__ import annotations

import errno
import os

import pytest

from cni_ignite.errors import IOFailure, TryAgainLater
from cni_ignite.netlink import _nl, netns, tap
from cni_ignite.netlink._nl import NetlinkSocket


class FailingSock:
    def __init__(self, send_err: int = 0, recv_err: int = 0) -> None:
        self.send_err, self.recv_err = send_err, recv_err

    def send(self, data: bytes) -> int:
        if self.send_err:
            raise OSError(self.send_err, os.strerror(self.send_err))
        return len(data)

    def recv(self, size: int) -> bytes:
        raise OSError(self.recv_err, os.strerror(self.recv_err))

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("err", "kind"), [(errno.EIO, IOFailure), (errno.ENOSPC, IOFailure),
                                           (errno.EACCES, IOFailure), (errno.ENOBUFS, TryAgainLater),
                                           (errno.EAGAIN, TryAgainLater), (errno.ENOMEM, TryAgainLater)])
def test_a_failed_send_or_receive_is_a_cni_error(err: int, kind: type[Exception]) -> None:
    nl = NetlinkSocket(FailingSock(send_err=err))  # type: ignore[arg-type]
    with pytest.raises(kind, match="get link") as sent:
        nl.request(18, b"\0" * 16, what="get link")
    assert type(sent.value) is kind and "send failed" in str(sent.value)
    nl = NetlinkSocket(FailingSock(recv_err=err))  # type: ignore[arg-type]
    with pytest.raises(kind, match="dump links") as received:
        nl.dump(18, b"\0" * 16, what="dump links")
    assert type(received.value) is kind and "receive failed" in str(received.value)


def test_a_netlink_socket_that_cannot_be_made_is_a_cni_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(_nl.socket, "socket", refuse)
    with pytest.raises(IOFailure, match="netlink socket"):
        _nl.open_route_socket()


def test_entering_a_namespace_when_our_own_cannot_be_opened_is_an_io_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def open_(path: str, flags: int, *a: int) -> int:
        if path == netns.SELF_NETNS:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *a)

    monkeypatch.setattr(netns.os, "open", open_)
    entered_body = False
    with pytest.raises(IOFailure, match="thread-self"), netns.entered(0):
        entered_body = True
    assert not entered_body


def test_a_namespace_that_cannot_be_stat_ed_is_an_io_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def stat(_: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(netns.os, "stat", stat)
    with pytest.raises(IOFailure):
        netns.ns_id(3)


def test_tun_device_that_cannot_be_opened_is_an_io_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def open_(path: str, *_: int) -> int:
        assert path == tap.TUN_DEV
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(tap.os, "open", open_)
    with pytest.raises(IOFailure, match="/dev/net/tun") as failed:
        tap.create_tap("tap0", exclusive=True)
    assert failed.value.code == 5
