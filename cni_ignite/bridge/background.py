"""Link deletes that run beside the rest of a DEL.

Deleting a veth answers only after the kernel's ``netdev_run_todo``: an ``rcu_barrier`` and the wait for the
device's last references, 10-20 ms of waiting (measured) although the kernel has closed both ends, taken
them off the link list and their bridge and announced them (RTM_DELLINK on RTNLGRP_LINK) within a
millisecond of the request. ``Background.start`` sends the delete from a second thread (``_thread``: a
builtin, no import; the GIL is released while the netlink send waits) and ``wait_gone`` lets the DEL go on
once the host end is announced gone: the firewall and guard removal (one ``nft`` exec, whose own netlink
socket close waits for an RCU grace period), the imports and the state records then run while the kernel
finishes the delete. ``finish`` joins the thread and hands what the delete raised to the DEL's ``attempt``
under the step's name, before the DEL decides whether it is complete (the lease stays held otherwise).

Why the announcement is the moment the port's guard may go (a serial DEL removed it after the delete
returned): the kernel sends the host end's RTM_DELLINK after closing it, unlisting it, waiting for the
packets in flight (``synchronize_net``) and running the NETDEV_UNREGISTER notifiers (the bridge removes the
port and unregisters its rx handler, with another ``synchronize_net``): no frame of the port passes a hook
after it. Only the generic (AF_UNSPEC) announcement counts; the bridge's own AF_BRIDGE RTM_DELLINK comes
earlier, before the rx handler is gone.

Without the announcement (the container interface was not the host veth's peer, the delete failed, the
monitor socket could not be made or overflowed) ``wait_gone`` waits for the delete to be over: the serial
order. A thread that cannot be started runs the delete in the caller's thread.
"""

from __future__ import annotations

import _socket as socket  # not socket.py (its enums cost ~3 ms): as the netlink layer
import _thread
import errno
import os
import select
import struct
from contextlib import suppress  # loaded by skel anyway: free

from ..netlink._nl import align, iter_nla  # loaded with the netlink layer already

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

RTNLGRP_LINK = 1
RTM_DELLINK = 17
IFLA_IFNAME = 3
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")


def deleted_names(data: bytes) -> list[str]:
    """The names of the links that the rtnetlink messages in `data` announce deleted (generic RTM_DELLINK
    only, not the bridge's AF_BRIDGE one). Pure."""
    names = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, mtype = _NLMSG.unpack_from(data, off)[:2]
        if length < _NLMSG.size or off + length > len(data):
            break
        body = off + _NLMSG.size
        if mtype == RTM_DELLINK and length >= _NLMSG.size + _IFINFO.size and data[body] == 0:  # AF_UNSPEC
            names += [bytes(v).split(b"\0", 1)[0].decode(errors="replace")
                      for k, v in iter_nla(data, body + _IFINFO.size, off + length) if k == IFLA_IFNAME]
        off += align(length)
    return names


# Classic BPF (linux/filter.h) for SO_ATTACH_FILTER: loads are big-endian, netlink headers host-endian.
_LD_W, _LD_H, _LD_B, _JEQ, _RET = 0x20, 0x28, 0x30, 0x15, 0x06
SOL_SOCKET, SO_ATTACH_FILTER = 1, 26


def _host(fmt: str, value: int) -> int:
    """`value` packed in host order as the big-endian number a BPF load of it reads."""
    return int.from_bytes(struct.pack(fmt, value), "big")


def announcement_filter(index: int) -> bytes:
    """The BPF program that passes only the generic RTM_DELLINK of link `index` (struct sock_filter[]): under
    64 concurrent DELs a monitor would otherwise wake for every other link's ~5 announcements. Pure."""
    insns = [(_LD_H, 0, 0, 4), (_JEQ, 0, 5, _host("=H", RTM_DELLINK)),   # nlmsg_type
             (_LD_B, 0, 0, 16), (_JEQ, 0, 3, 0),                          # ifi_family: AF_UNSPEC
             (_LD_W, 0, 0, 20), (_JEQ, 0, 1, _host("=i", index)),         # ifi_index
             (_RET, 0, 0, 0x40000), (_RET, 0, 0, 0)]
    return b"".join(struct.pack("=HBBI", *i) for i in insns)


def _attach(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_FILTER needs the program's address: taken with ``_ctypes``, and only when the process has
    loaded it already (netns.setns on Python 3.11), so that the filter never costs an import. Without it,
    every announcement wakes the DEL (the name check below sorts them)."""
    import sys

    _ctypes: Any = sys.modules.get("_ctypes")
    if _ctypes is None:
        return

    class Char(_ctypes._SimpleCData):  # type: ignore[misc]  # = ctypes.c_char
        _type_ = "c"

    buf = (Char * len(program)).from_buffer_copy(program)  # type: ignore[operator,attr-defined]  # a ctypes array
    fprog = struct.pack("=HxxxxxxQ", len(program) // 8, _ctypes.addressof(buf))
    with suppress(OSError):  # the kernel copies the program here; a refusal leaves the socket unfiltered
        sock.setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _monitor(index: int | None) -> socket.socket | None:
    """A netlink socket of the caller's namespace subscribed to link announcements (those of link `index`
    only, when given and the filter can be attached); None when it cannot be made (the DEL then waits for
    each delete to be over)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                             socket.NETLINK_ROUTE)
    except OSError:
        return None
    try:
        if index is not None:
            _attach(sock, announcement_filter(index))
        sock.bind((0, 1 << (RTNLGRP_LINK - 1)))
    except OSError:
        sock.close()
        return None
    return sock


class _Job:
    __slots__ = ("done", "error", "lock", "on_end", "what")

    def __init__(self, what: str, on_end: Callable[[], object] | None) -> None:
        self.what, self.on_end = what, on_end
        self.done = False
        self.error: BaseException | None = None
        self.lock = _thread.allocate_lock()


def _call(job: _Job, fn: Callable[[], object]) -> None:
    """Run a job's delete; what it raises is kept for the caller's thread (handed to attempt by _collect)."""
    try:
        fn()
    except BaseException as exc:
        job.error = exc
    finally:
        job.done = True


class Background:
    """The link deletes of one DEL (one at a time in practice), watched for the announcement of `watch` (the
    host veth's name) in the caller's network namespace. `attempt` is the DEL's: it receives each delete's
    outcome as ``attempt(what, raise_outcome)``."""

    def __init__(self, watch: str, attempt: Callable[[str, Callable[[], object]], None]) -> None:
        self.watch, self.attempt = watch, attempt
        self._name = watch.encode() + b"\0"  # as IFLA_IFNAME holds it
        self.jobs: list[_Job] = []
        self.gone = False  # `watch` was announced deleted
        self._mon: socket.socket | None = None
        self._wake_r = self._wake_w = -1

    def start(self, what: str, fn: Callable[[], object], on_end: Callable[[], object] | None = None, *,
              index: int | None = None) -> None:
        """Run fn (a link delete) in a second thread; on_end (e.g. closing fn's socket) runs once it is over,
        in the caller's thread. `index`: the watched link's ifindex in the caller's namespace, when known
        (the monitor then hears only its announcement)."""
        job = _Job(what, on_end)
        if self._wake_r < 0:
            try:
                self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
            except OSError:
                self._serial(job, fn)
                return
        if not self.gone:
            self._close_monitor()
            self._mon = _monitor(index)  # before the request: its announcement must not be missed
        job.lock.acquire()
        try:
            _thread.start_new_thread(self._run, (job, fn))
        except RuntimeError:  # no thread to be had: the delete runs here
            job.lock.release()
            self._serial(job, fn)
            return
        self.jobs.append(job)

    def _serial(self, job: _Job, fn: Callable[[], object]) -> None:
        _call(job, fn)
        self._collect(job)

    def _run(self, job: _Job, fn: Callable[[], object]) -> None:
        try:
            _call(job, fn)
        finally:
            with suppress(OSError):  # the caller's wait_gone also ends on its own poll timeout (below)
                os.write(self._wake_w, b"x")  # before the release: once finish holds the lock, the pipe may go
            job.lock.release()

    def _collect(self, job: _Job) -> None:
        """Hand a finished job's outcome to attempt (in the caller's thread)."""
        if job in self.jobs:
            self.jobs.remove(job)
        try:
            if job.on_end is not None:
                job.on_end()
        finally:
            def outcome() -> None:
                if job.error is not None:
                    raise job.error

            self.attempt(job.what, outcome)

    def wait_gone(self) -> None:
        """Return once `watch` is announced deleted, or at once when no delete runs; a delete that is over by
        then is collected (its failure goes to attempt now, in the serial order)."""
        while self.jobs and not self.gone:
            for job in [j for j in self.jobs if j.done]:
                job.lock.acquire()
                self._collect(job)
            if not self.jobs:
                return
            self._poll()

    def _poll(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self._mon is not None:
            poller.register(self._mon.fileno(), select.POLLIN)
        events = poller.poll(1000)  # a delete ends or the link is announced gone well before
        for fd, _ in events:
            if fd == self._wake_r:
                os.read(self._wake_r, 64)
            else:
                self._read_monitor()

    def _read_monitor(self) -> None:
        while self._mon is not None:
            try:
                data = self._mon.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:  # ENOBUFS: announcements were lost; wait for the deletes instead
                if exc.errno != errno.EINTR:
                    self._close_monitor()
                    return
                continue
            if self._name in data and self.watch in deleted_names(data):  # most announcements are other links'
                self.gone = True
                self._close_monitor()
                return

    def _close_monitor(self) -> None:
        if self._mon is not None:
            self._mon.close()
            self._mon = None

    def finish(self) -> None:
        """Wait for every delete and hand each outcome to attempt; release the pipe and the monitor."""
        try:
            for job in self.jobs:
                job.lock.acquire()  # blocks until the thread is over: no socket of theirs is closed under them
            while self.jobs:
                self._collect(self.jobs[0])
        finally:
            self._close_monitor()
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
