"""The one place that runs other programs (iptables-restore, nft, a delegated IPAM plugin).

It uses ``os.posix_spawn`` and pipes rather than ``subprocess`` (importing ``subprocess`` costs ~27 ms
per plugin start; see benchmarks/IMPORTS.md). The child's environment is sanitised: the PyInstaller
bootloader's ``LD_LIBRARY_PATH`` is replaced by the original one, and programs are found on ``PATH``
plus the standard sbin/bin folders even when the runtime hands us a minimal ``PATH``.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import TYPE_CHECKING, NamedTuple

from .errors import CniError, IOFailure

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

STANDARD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class Completed(NamedTuple):
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
    """Run argv (argv[0] must be an absolute path) and collect its output; never raises on exit status."""
    env = child_env(os.environ if env is None else env)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [
        (os.POSIX_SPAWN_DUP2, in_r, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]
    try:
        pid = os.posix_spawn(argv[0], list(argv), env, file_actions=actions)
    except OSError as exc:
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise IOFailure(f"cannot run {argv[0]}", str(exc)) from exc
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    outputs = _pump(pid, in_w, stdin, {out_r: bytearray(), err_r: bytearray()}, timeout, argv[0])
    _, status = os.waitpid(pid, 0)
    return Completed(tuple(argv), os.waitstatus_to_exitcode(status), bytes(outputs[out_r]), bytes(outputs[err_r]))


def _pump(
    pid: int, in_w: int, data: bytes, outs: dict[int, bytearray], timeout: float, name: str
) -> dict[int, bytearray]:
    """Feed stdin and drain stdout/stderr without deadlocking on full pipes."""
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    writers = [in_w] if data else []
    if not data:
        os.close(in_w)
    readers = list(outs)
    while readers or writers:
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            for fd in readers + writers:
                os.close(fd)
            raise IOFailure(f"{name} timed out", f"after {timeout:.0f}s")
        r, w, _ = select.select(readers, writers, [], left)
        for fd in r:
            chunk = os.read(fd, 65536)
            if chunk:
                outs[fd] += chunk
            else:
                readers.remove(fd)
                os.close(fd)
        if w:
            try:
                n = os.write(in_w, view[:65536])
            except BrokenPipeError:
                n = len(view)
            view = view[n:]
            if not view:
                writers.clear()
                os.close(in_w)
    return outs
