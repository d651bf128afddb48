"""Network namespaces by file descriptor: open, identify, enter and always come back.

Python 3.11 has no ``os.setns``; libc's ``setns(2)`` is called through ``_ctypes`` (loaded on first use,
~1 ms). On 3.12+ ``os.setns`` is used. ``setns`` changes only the calling thread's namespace; the
plugins are single-threaded. A netlink or packet socket keeps the namespace it was created in, so
:func:`socket_in` creates one inside a namespace and returns to the original at once.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager

from ..errors import CniError, InvalidNetns, IOFailure
from .ops import NetnsGone

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator
    from typing import NamedTuple as Record
    from typing import TypeVar

    T = TypeVar("T")
else:
    from .. import Record

CLONE_NEWNET = 0x40000000
SELF_NETNS = "/proc/thread-self/ns/net"
# open(2) errors that say the path can never name a namespace, whatever is retried: the path is too long,
# loops, or names a socket or a device without a driver (not an I/O failure: code 8, which DEL takes for
# "the container side is unreachable"). ENOENT and ENOTDIR say it does not exist (NetnsGone); any other
# error (EIO, ENOSPC, EACCES, EMFILE...) is an I/O failure (5) that a repeated call may not meet.
_NOT_A_NETNS_PATH = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENXIO, errno.ENODEV})

_setns_impl: Callable[[int, int], None] | None = None


class NsId(Record):
    """Identity of a namespace: (st_dev, st_ino) of its nsfs inode."""

    dev: int
    ino: int


class NetnsRestoreFailed(CniError):
    """Could not switch back to the original namespace; the process must not continue."""


def _libc_setns() -> Callable[[int, int], None]:
    """libc's setns(2) through ``_ctypes`` itself: the ``ctypes`` package on top of it (its ~30 type classes,
    ``ctypes._endian``, the CDLL machinery) costs ~1-4 ms of CPU per call for one function (benchmarks/IMPORTS.md).
    These few lines are what ``CDLL(None, use_errno=True).setns`` with int argtypes/restype builds."""
    import _ctypes

    class CInt(_ctypes._SimpleCData):  # type: ignore[type-arg]  # = ctypes.c_int
        _type_ = "i"

    class SetnsFn(_ctypes.CFuncPtr):  # = CDLL(..., use_errno=True)._FuncPtr with argtypes/restype
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = CInt
        _argtypes_ = (CInt, CInt)

    class Libc:  # what CFuncPtr((name, dll)) reads of a CDLL: its dlopen handle
        # dlopen(NULL): the running program's own symbol table, which includes libc's setns. Not
        # ctypes.util.find_library: it imports subprocess (+27 ms) and runs ldconfig on every call.
        _handle = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]  # NULL is valid (typeshed omits it)

    fn = SetnsFn(("setns", Libc()))  # type: ignore[arg-type]  # duck-typed: only ._handle is read

    def call(fd: int, nstype: int) -> None:
        if fn(fd, nstype) != 0:
            err = _ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return call


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the calling thread into the namespace open at fd."""
    global _setns_impl  # noqa: PLW0603 - a memoised loader, not state
    if _setns_impl is None:
        _setns_impl = getattr(os, "setns", None) or _libc_setns()
    _setns_impl(fd, nstype)


def open_netns(path: str) -> int:
    """An O_RDONLY|O_CLOEXEC fd for the netns at path: NetnsGone if the path does not exist, InvalidNetns
    if it cannot name a namespace (:data:`_NOT_A_NETNS_PATH`), IOFailure for any other error. Whether an
    opened file is a netns at all is found on entering it (:func:`entered`: InvalidNetns)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NetnsGone(f"netns {path} does not exist") from exc
    except OSError as exc:
        if exc.errno in _NOT_A_NETNS_PATH:
            raise InvalidNetns(f"cannot open netns {path}", str(exc)) from exc
        raise IOFailure(f"cannot open netns {path}", str(exc)) from exc


def ns_id(fd_or_path: int | str) -> NsId:
    try:
        st = os.stat(fd_or_path)
    except OSError as exc:
        raise IOFailure(f"cannot stat the network namespace {fd_or_path}", str(exc)) from exc
    return NsId(st.st_dev, st.st_ino)


def current_ns_id() -> NsId:
    return ns_id(SELF_NETNS)


def is_current(fd_or_path: int | str) -> bool:
    """True when fd_or_path is the caller's own netns (CNI_NETNS pointing at the host is an error)."""
    return ns_id(fd_or_path) == current_ns_id()


@contextmanager
def entered(fd: int) -> Iterator[None]:
    """Run the body inside the netns open at fd, then return to the original one, even on error.
    InvalidNetns when fd is no network namespace (setns: EINVAL); IOFailure when it cannot be entered for
    another reason (or setns cannot be loaded): nothing changed then, and a repeated call may succeed."""
    try:
        origin = os.open(SELF_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:  # nothing changed yet: an I/O failure (the way back could not be kept)
        raise IOFailure(f"cannot open {SELF_NETNS}", str(exc)) from exc
    try:
        try:
            setns(fd)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # fd is no netns (a leftover file, a directory, another ns type)
                raise InvalidNetns("cannot enter network namespace: not a network namespace", str(exc)) from exc
            raise IOFailure("cannot enter network namespace", str(exc)) from exc
        except ImportError as exc:  # _ctypes' module could not be loaded (an I/O error opening its file)
            raise IOFailure("cannot enter network namespace: setns is unavailable", str(exc)) from exc
        try:
            yield
        finally:
            _return_to(origin)
    finally:
        os.close(origin)


def _return_to(origin: int) -> None:
    """setns back to our own netns, tried twice: the kernel may refuse once for want of memory (ENOMEM, or a
    fault injected at that call); staying in the container's namespace is not an option (999 then)."""
    for attempt in (1, 2):
        try:
            setns(origin)
            return
        except OSError as exc:
            if attempt == 2:
                raise NetnsRestoreFailed("cannot return to the original network namespace", str(exc)) from exc


def socket_in(fd: int | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside the netns at fd (or here when fd is None); it stays bound to that netns."""
    import socket  # the full class (context manager, makefile...): not on the plugins' path

    if fd is None:
        return socket.socket(family, kind, proto)
    with entered(fd):
        return socket.socket(family, kind, proto)


def call_in(fd: int | None, fn: Callable[[], T]) -> T:
    """fn() run inside the netns at fd (or here when fd is None)."""
    if fd is None:
        return fn()
    with entered(fd):
        return fn()
