"""Running the rule programs through hostexec, with a clear error when one is missing."""

from __future__ import annotations

import contextlib
import os
import select
import time

from .. import hostexec
from ..errors import CniError, IOFailure

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    import signal
    from collections.abc import Sequence
else:
    import _signal as signal  # not signal.py (its IntEnums: ~1 ms per call); only SIGKILL is used


class RuleToolFailed(CniError):
    """iptables-restore / nft refused a batch; details carry its stderr."""


class ToolMissing(CniError):
    """iptables-restore / nft is not installed (DEL treats that backend as holding nothing)."""


def program(name: str, backend: str) -> str:
    try:
        return hostexec.find_program(name)
    except hostexec.ProgramNotFound as exc:
        raise ToolMissing(f"{name} is required by the {backend} firewall backend but was not found",
                       exc.details) from exc


def run(backend: str, argv: Sequence[str], stdin: str = "") -> hostexec.Completed:
    return hostexec.run([program(argv[0], backend), *argv[1:]], stdin=stdin.encode(), timeout=60.0)


def checked(backend: str, argv: Sequence[str], stdin: str = "", what: str = "") -> hostexec.Completed:
    res = run(backend, argv, stdin)
    if not res.ok:
        err = res.stderr.decode(errors="replace").strip() or res.stdout.decode(errors="replace").strip()
        raise RuleToolFailed(f"{what or argv[0]} failed ({backend})", err)
    return res



def run_all(backend: str, argvs: Sequence[Sequence[str]], timeout: float = 60.0) -> list[hostexec.Completed]:
    """Run short listing commands side by side (no stdin) and collect each one's output, in order: N
    listings cost about one exec of wall time instead of N. Never raises on exit status; on the deadline
    (or any error) every child still running is killed by its PID."""
    paths = [program(argv[0], backend) for argv in argvs]
    env = hostexec.child_env(os.environ)
    deadline = time.monotonic() + timeout
    pids: list[int] = []
    outs: dict[int, bytearray] = {}  # stdout/stderr read end -> bytes; order: child 0 out, err, child 1 ...
    open_fds: set[int] = set()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for path, argv in zip(paths, argvs, strict=True):
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            open_fds.update((out_r, err_r))
            outs[out_r], outs[err_r] = bytearray(), bytearray()
            try:
                pids.append(os.posix_spawn(path, [path, *argv[1:]], env, file_actions=[
                    (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2)]))
            except OSError as exc:
                raise IOFailure(f"cannot run {path}", str(exc)) from exc
            finally:
                os.close(out_w)
                os.close(err_w)
        poller = select.poll()
        for fd in open_fds:
            poller.register(fd, select.POLLIN)
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise IOFailure(f"{argvs[0][0]} timed out", f"after {timeout:g}s")
            for fd, _ in poller.poll(int(left * 1000) + 1):
                chunk = os.read(fd, 65536)
                outs[fd] += chunk
                if not chunk:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
        pids.clear()
    finally:
        os.close(null)
        for fd in open_fds:
            os.close(fd)
        for pid in pids:  # only on an error: kill and reap what we started
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
    bufs = [bytes(b) for b in outs.values()]
    return [hostexec.Completed(tuple(argv), os.waitstatus_to_exitcode(status), bufs[2 * i], bufs[2 * i + 1])
            for i, (argv, status) in enumerate(zip(argvs, statuses, strict=True))]
