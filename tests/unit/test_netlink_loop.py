"""The request loop (ACK, errors with extended-ack text, seq matching, DUMP_INTR retry), taps' ifreq,
sysctl skip-when-same, and the import budget: no root needed."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from cni_ignite.errors import TryAgainLater
from cni_ignite.netlink import sysctl
from cni_ignite.netlink._nl import (
    DUMP_ATTEMPTS,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLMSG_DONE,
    NLMSG_ERROR,
    NetlinkSocket,
    nla,
)
from cni_ignite.netlink.ops import NetlinkError
from cni_ignite.netlink.tap import ifreq

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def msg(mtype: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload
    return raw + b"\0" * (-len(raw) % 4)


def ack(seq: int) -> bytes:
    return msg(NLMSG_ERROR, seq, struct.pack("=i", 0) + struct.pack("=IHHII", 16, 0, 0, seq, 0))


def error(seq: int, err: int, text: str = "") -> bytes:
    payload = struct.pack("=i", -err) + struct.pack("=IHHII", 16, 16, 5, seq, 0)
    flags = NLM_F_CAPPED
    if text:
        payload += nla(1, text.encode() + b"\0")
        flags |= NLM_F_ACK_TLVS
    return msg(NLMSG_ERROR, seq, payload, flags)


class FakeSock:
    """Answers each sent request with the datagrams reply(seq, attempt) returns."""

    def __init__(self, reply: Callable[[int, int], list[bytes]]) -> None:
        self.reply = reply
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        seq = struct.unpack_from("=I", data, 8)[0]
        self.queue.extend(self.reply(seq, len(self.sent)))
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.queue.pop(0)

    def close(self) -> None:
        pass


def loop(reply: Callable[[int, int], list[bytes]]) -> tuple[NetlinkSocket, FakeSock]:
    fake = FakeSock(reply)
    return NetlinkSocket(fake), fake  # type: ignore[arg-type]


def test_request_returns_replies_before_the_ack_and_skips_stale_sequence_numbers() -> None:
    nl, fake = loop(lambda seq, _: [ack(seq - 1) + msg(16, seq, b"link"), ack(seq)])
    (reply,) = nl.request(18, b"")
    assert reply[16:20] == b"link"
    flags = struct.unpack_from("=H", fake.sent[0], 6)[0]
    assert flags & 0x5 == 0x5  # NLM_F_REQUEST | NLM_F_ACK


def test_error_when_kernel_refuses_carries_errno_and_extended_ack_text() -> None:
    nl, _ = loop(lambda seq, _: [error(seq, errno.EEXIST, "Device already exists")])
    with pytest.raises(NetlinkError) as caught:
        nl.request(16, b"", what="create veth")
    assert caught.value.errno == errno.EEXIST
    assert caught.value.kernel_text == "Device already exists"
    assert caught.value.msg == "create veth"
    assert "EEXIST" in caught.value.details


def test_dump_collects_multipart_replies_until_done() -> None:
    nl, _ = loop(lambda seq, _: [msg(16, seq, b"a", NLM_F_MULTI) + msg(16, seq, b"b", NLM_F_MULTI),
                                 msg(NLMSG_DONE, seq, struct.pack("=i", 0), NLM_F_MULTI)])
    assert [p[16:17] for p in nl.dump(18, b"")] == [b"a", b"b"]


def test_interrupted_dump_is_repeated() -> None:
    def reply(seq: int, attempt: int) -> list[bytes]:
        flag = NLM_F_DUMP_INTR if attempt < 3 else 0
        return [msg(16, seq, b"x", NLM_F_MULTI | flag), msg(NLMSG_DONE, seq, struct.pack("=i", 0), flag)]

    nl, fake = loop(reply)
    assert len(nl.dump(18, b"")) == 1
    assert len(fake.sent) == 3


def test_error_when_dump_keeps_being_interrupted() -> None:
    nl, fake = loop(lambda seq, _: [msg(NLMSG_DONE, seq, struct.pack("=i", 0), NLM_F_DUMP_INTR)])
    with pytest.raises(TryAgainLater):
        nl.dump(18, b"")
    assert len(fake.sent) == DUMP_ATTEMPTS


def test_ifreq_is_a_40_byte_struct_and_rejects_bad_names() -> None:
    raw = ifreq("tap0", 0x1002)
    assert len(raw) == 40
    assert raw[:5] == b"tap0\0"
    assert struct.unpack_from("=H", raw, 16)[0] == 0x1002
    with pytest.raises(ValueError):
        ifreq("a-name-that-is-too-long", 0)


def test_sysctl_write_is_skipped_when_the_value_is_already_set(tmp_path: Path) -> None:
    key = tmp_path / "ip_forward"
    key.write_text("0\n")
    assert sysctl.write(str(key), 1) is True
    assert key.read_text() == "1\n"
    mtime = os.stat(key).st_mtime_ns
    assert sysctl.write(str(key), "1") is False
    assert os.stat(key).st_mtime_ns == mtime
    assert sysctl.read(str(key)) == "1"
    with pytest.raises(sysctl.SysctlMissing):
        sysctl.write(str(tmp_path / "absent"), 1)


def test_package_exports_resolve_lazily() -> None:
    import cni_ignite.netlink as pkg

    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
    with pytest.raises(AttributeError):
        _ = pkg.nothing_here


def test_the_netlink_layer_imports_no_pyroute2_logging_or_asyncio() -> None:
    code = (
        "import sys, cni_ignite.netlink.rtnl;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'asyncio', 'subprocess', 'logging',"
        " 'multiprocessing', 'dataclasses', 'inspect')];"
        "assert not bad, bad"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
