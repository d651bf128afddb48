"""The one place that runs other programs (iptables-restore, nft, a delegated IPAM plugin).

It uses ``os.posix_spawn`` and pipes rather than ``subprocess`` (importing ``subprocess`` costs ~27 ms
per plugin start; see benchmarks/IMPORTS.md). The child's environment is sanitised: the PyInstaller
bootloader's ``LD_LIBRARY_PATH`` is replaced by the original one, and programs are found on ``PATH``
plus the standard sbin/bin folders even when the runtime hands us a minimal ``PATH``.
"""

from __future__ import annotations

import os
import select
import time
from contextlib import suppress  # loaded by skel anyway: free

from .errors import CniError, IOFailure

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable, Mapping, Sequence
    from typing import NamedTuple as Record
else:
    import _signal as signal  # not signal.py (its IntEnums: ~1 ms per call); only SIGKILL is used

    from . import Record

STANDARD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class Completed(Record):
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class ProgramNotFound(CniError):
    code = 999


def child_env(env: Mapping[str, str], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of env without the frozen bootloader's library path (restored from *_ORIG) and variables."""
    out = {k: v for k, v in env.items() if not k.startswith("_PYI_")}  # the bootloader's own state
    for key in ("LD_LIBRARY_PATH", "LD_PRELOAD"):
        orig = out.pop(key + "_ORIG", None)
        out.pop(key, None)
        if orig:
            out[key] = orig
    if overrides:
        out.update(overrides)
    return out


_idle: list[Callable[[], object]] = []


class Meanwhile:
    """``with Meanwhile(fn):`` lends `fn` (CPU work the caller needs next, e.g. the imports of its next step)
    to the first child that :func:`run` starts inside the block: it runs once that child has its stdin, while
    the child works (a DEL's ``nft`` waits ~10 ms for an RCU grace period as it closes its netlink socket).
    An exception in it is dropped (the work is done again where it is needed); without a child in the block
    it is not run at all."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn

    def __enter__(self) -> None:
        _idle.append(self.fn)

    def __exit__(self, *exc: object) -> None:
        with suppress(ValueError):  # run already
            _idle.remove(self.fn)


def _run_idle() -> None:
    while _idle:
        fn = _idle.pop()
        with suppress(Exception):
            fn()


def find_program(name: str, search_path: str | None = None) -> str:
    """The absolute path of program `name` on search_path (or PATH) plus the standard folders."""
    if "/" in name:
        if os.access(name, os.X_OK):
            return name
        raise ProgramNotFound(f"{name} is not executable")
    dirs = [d for d in (search_path if search_path is not None else os.environ.get("PATH", "")).split(":") if d]
    for d in (*dirs, *STANDARD_PATH):
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ProgramNotFound(f"{name} not found", f"searched {':'.join((*dirs, *STANDARD_PATH))}")


def run(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Completed:
    """Run argv (argv[0] must be an absolute path) and collect its output; never raises on exit status.

    The child is killed when it has not exited `timeout` seconds after it started, whatever it is doing
    (not reading its stdin, filling its stdout, or running on with its pipes closed)."""
    env = child_env(os.environ if env is None else env)
    deadline = time.monotonic() + timeout
    fds: list[int] = []
    try:
        for _ in range(3):
            fds += os.pipe()
        in_r, in_w, out_r, out_w, err_r, err_w = fds
        actions = [
            (os.POSIX_SPAWN_DUP2, in_r, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions)
    except OSError as exc:
        _close(fds)
        raise IOFailure(f"cannot run {argv[0]}", str(exc)) from exc
    _close([in_r, out_w, err_w])
    outs = {out_r: bytearray(), err_r: bytearray()}
    try:
        _pump(in_w, stdin, outs, deadline)
        status = _reap(pid, deadline)
    except TimeoutError:
        _kill(pid)
        raise IOFailure(f"{argv[0]} timed out", f"after {timeout:g}s") from None
    except OSError as exc:  # a pipe or the wait failed under us: the child's answer is lost
        _kill(pid)
        raise IOFailure(f"talking to {argv[0]} failed", str(exc)) from exc
    except BaseException:
        _kill(pid)
        raise
    return Completed(tuple(argv), os.waitstatus_to_exitcode(status), bytes(outs[out_r]), bytes(outs[err_r]))


def _close(fds: list[int]) -> None:
    for fd in fds:
        with suppress(OSError):  # best effort: Linux releases the descriptor even when close(2) fails
            os.close(fd)


def _kill(pid: int) -> None:
    """Kill and reap the child; a failure here must not hide the error that brought us here."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except OSError:
        return
    with suppress(OSError):
        os.waitpid(pid, 0)


def _wait_ms(deadline: float) -> int:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return int(left * 1000) + 1


def _pump(in_w: int, data: bytes, outs: dict[int, bytearray], deadline: float) -> None:
    """Feed stdin and drain stdout/stderr together (poll, non-blocking writes) until all three are closed.

    A write never blocks: the child may fill its stdout while we still have stdin for it. A child that
    exits (or closes its stdin) before reading everything ends the feeding (EPIPE), not the call.
    Closes every fd it was given, also on timeout. Work lent by :class:`Meanwhile` runs once the pipe holds
    what it takes of stdin (a script fits: 64 KiB), while the child works."""
    poller = select.poll()
    view = memoryview(data)
    open_fds = set(outs) | {in_w}
    try:
        if data:
            os.set_blocking(in_w, False)
            if _idle:
                view = _feed(in_w, view, 0)
        if view:
            poller.register(in_w, select.POLLOUT)
        else:
            open_fds.discard(in_w)
            _close([in_w])  # the child has all of its stdin: it works while the lent work runs
        for fd in outs:
            poller.register(fd, select.POLLIN)
        _run_idle()
        while open_fds:
            for fd, events in poller.poll(_wait_ms(deadline)):
                if fd == in_w:
                    view = _feed(in_w, view, events)
                    done = not view
                else:
                    chunk = os.read(fd, 65536)
                    outs[fd] += chunk
                    done = not chunk
                if done:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    _close([fd])
    finally:
        _close(list(open_fds))


def _feed(in_w: int, view: memoryview, events: int) -> memoryview:
    """Write what the pipe takes now; an empty view when all is written or the reader has gone."""
    if events & (select.POLLERR | select.POLLHUP):
        return view[:0]  # the child closed its stdin
    try:
        return view[os.write(in_w, view[:65536]):]
    except BlockingIOError:
        return view
    except BrokenPipeError:
        return view[:0]


def _reap(pid: int, deadline: float) -> int:
    """The child's wait status once it exits; TimeoutError at the deadline (it may have closed its pipes
    and run on)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # kernel < 5.3: poll the status instead
        pidfd = -1
    if pidfd < 0:
        delay = 0.001
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            _wait_ms(deadline)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while not poller.poll(_wait_ms(deadline)):
            pass
    finally:
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]
