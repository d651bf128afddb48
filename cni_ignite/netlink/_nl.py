"""A small synchronous request loop over a stdlib AF_NETLINK socket, plus NLA helpers.

Stdlib only (socket, struct, errno). Messages are bytes built elsewhere (``_msg`` for
links/addresses/routes, struct for tc); this module frames them with a header, sends them, and collects
the replies that carry the request's sequence number:

* every non-dump request carries ``NLM_F_ACK``; the loop returns on the kernel's ACK (or raises
  :class:`NetlinkError` with the errno and the kernel's extended-ack text);
* a dump returns on ``NLMSG_DONE``; a dump with ``NLM_F_DUMP_INTR`` set on any part is repeated, up to
  :data:`DUMP_ATTEMPTS` times, as containernetworking's ``netlinksafe`` does.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its IntEnums and selectors cost ~3 ms per call
import errno
import os
import struct

from ..errors import IOFailure, TryAgainLater
from .ops import NetlinkError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterator

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # on an NLMSG_ERROR: the echoed request is only its header
NLM_F_ACK_TLVS = 0x200  # on an NLMSG_ERROR: extended-ack attributes follow
NLA_F_NESTED = 0x8000

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
NLMSGERR_ATTR_MSG = 1

DUMP_ATTEMPTS = 5
# A send or receive failing with these is the kernel short of memory or the socket's buffer overrun (a
# dump raced a flood of events): a retry may well succeed (CNI 11). Any other OSError is an I/O failure (5).
TRANSIENT = frozenset({errno.ENOBUFS, errno.EAGAIN, errno.ENOMEM})
RECV_BUF = 1 << 18
RECV_TIMEOUT = 10.0  # the kernel answers in microseconds; this only keeps a wedged plugin from hanging

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NLA = struct.Struct("=HH")


def align(n: int) -> int:
    return (n + 3) & ~3


def nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    out = _NLA.pack(4 + len(payload), kind) + payload
    return out + b"\0" * (align(len(out)) - len(out))


def nest(kind: int, *children: bytes, flagged: bool = False) -> bytes:
    return nla(kind | (NLA_F_NESTED if flagged else 0), b"".join(children))


def iter_nla(buf: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[tuple[int, memoryview]]:
    """Yield (type without flags, payload) for each attribute in buf[start:end]."""
    view = memoryview(buf)
    end = len(view) if end is None else end
    off = start
    while off + 4 <= end:
        length, kind = _NLA.unpack_from(view, off)
        if length < 4 or off + length > end:
            return
        yield kind & 0x3FFF, view[off + 4 : off + length]
        off += align(length)


def nla_map(buf: bytes | memoryview, start: int = 0) -> dict[int, memoryview]:
    return dict(iter_nla(buf, start))


def _ext_ack_text(view: memoryview, off: int, end: int) -> str:
    for kind, payload in iter_nla(view, off, end):
        if kind == NLMSGERR_ATTR_MSG:
            return bytes(payload).rstrip(b"\0").decode(errors="replace")
    return ""


class NetlinkSocket:
    """One NETLINK_ROUTE socket; requests are strictly one at a time."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock if sock is not None else open_route_socket()
        self._seq = int.from_bytes(os.urandom(2), "little") << 8

    def close(self) -> None:
        self.sock.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        return self._seq

    def _send(self, msg_type: int, flags: int, body: bytes, what: str) -> int:
        seq = self._next_seq()
        try:
            self.sock.send(_HDR.pack(_HDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0) + body)
        except OSError as exc:
            raise socket_failure(what, "send", exc) from exc
        return seq

    def _replies(self, seq: int, what: str) -> Iterator[tuple[int, int, memoryview]]:
        """Yield (type, flags, whole message) for our seq until DONE or ACK; raise on an error."""
        while True:
            try:
                data = self.sock.recv(RECV_BUF)
            except TimeoutError as exc:
                raise IOFailure(what, f"no answer from the kernel within {RECV_TIMEOUT:.0f}s") from exc
            except OSError as exc:
                raise socket_failure(what, "receive", exc) from exc
            view = memoryview(data)
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, mflags, mseq, _ = _HDR.unpack_from(view, off)
                if length < _HDR.size:
                    break
                msg = view[off : off + length]
                off += align(length)
                if mseq != seq:
                    continue  # a late reply to an earlier, abandoned request
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", msg, _HDR.size)
                    if err == 0:
                        return
                    text = ""
                    if mflags & NLM_F_ACK_TLVS:
                        echoed = _HDR.size if mflags & NLM_F_CAPPED else _HDR.unpack_from(msg, _HDR.size + 4)[0]
                        text = _ext_ack_text(msg, _HDR.size + 4 + align(echoed), length)
                    raise NetlinkError(-err, what, text)
                if mtype == NLMSG_DONE:
                    if length >= _HDR.size + 4:
                        (err,) = struct.unpack_from("=i", msg, _HDR.size)
                        if err < 0:
                            raise NetlinkError(-err, what)
                    yield mtype, mflags, msg
                    return
                yield mtype, mflags, msg

    def request(self, msg_type: int, body: bytes, *, flags: int = 0, what: str = "netlink request") -> list[bytes]:
        """Send one request with NLM_F_ACK; return the reply messages (whole, header included) before the ACK."""
        seq = self._send(msg_type, flags | NLM_F_ACK, body, what)
        return [bytes(m) for t, _, m in self._replies(seq, what) if t != NLMSG_DONE]

    def dump(self, msg_type: int, body: bytes, *, what: str = "netlink dump") -> list[bytes]:
        """Send a dump request; return all parts, repeating the dump if the kernel marks it interrupted."""
        for _ in range(DUMP_ATTEMPTS):
            seq = self._send(msg_type, NLM_F_DUMP, body, what)
            parts: list[bytes] = []
            interrupted = False
            for mtype, mflags, msg in self._replies(seq, what):
                interrupted |= bool(mflags & NLM_F_DUMP_INTR)
                if mtype != NLMSG_DONE:
                    parts.append(bytes(msg))
            if not interrupted:
                return parts
        raise TryAgainLater(what, f"dump interrupted {DUMP_ATTEMPTS} times by concurrent changes")


def socket_failure(what: str, op: str, exc: OSError) -> IOFailure | TryAgainLater:
    """The CNI error for a failed netlink send or receive: 11 when transient (TRANSIENT), else 5."""
    kind = TryAgainLater if exc.errno in TRANSIENT else IOFailure
    return kind(what, f"netlink {op} failed: {exc}")


def open_route_socket() -> socket.socket:
    """A NETLINK_ROUTE socket in the caller's current network namespace."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    except OSError as exc:
        raise socket_failure("cannot open a netlink socket", "socket", exc) from exc
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.bind((0, 0))
        sock.settimeout(RECV_TIMEOUT)
    except OSError as exc:
        sock.close()
        raise socket_failure("cannot set up a netlink socket", "setup", exc) from exc
    return sock


def header(msg: bytes) -> tuple[int, int, int, int, int]:
    """(len, type, flags, seq, pid) of a whole message."""
    return _HDR.unpack_from(msg, 0)


HDR_SIZE = _HDR.size
