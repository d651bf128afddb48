"""Shared helpers for the benchmarks: spawn a plugin with wait4 (wall time + peak RSS), statistics,
and throwaway network namespaces that the calling *thread* enters (its children inherit that netns).

Nothing here changes the root network namespace: ``Spaces`` only creates and deletes ``cnbench-…``
namespaces, and ``Spaces.entered()`` moves the calling thread (and threads/processes it starts) into the
throwaway "host" namespace and back.
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cni_ignite.netlink.netns import entered, open_netns

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

BASE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@dataclass
class Proc:
    argv: tuple[str, ...]
    rc: int
    stdout: bytes
    stderr: bytes
    wall_ms: float
    maxrss_kb: int  # peak RSS of the program (and children it waited for); -1 unless spawn(rss=True)
    cpu_ms: float


TIME = "/usr/bin/time"


def spawn(argv: Sequence[str], *, stdin: bytes = b"", env: Mapping[str, str] | None = None,
          timeout: float = 120, rss: bool = False) -> Proc:
    """posix_spawn argv (absolute path), feed stdin, collect stdout/stderr, wait4 for rusage.

    The wall time runs from just before the spawn to the return of wait4 (what a runtime waits for).
    Pipes are O_CLOEXEC (os.pipe), so concurrent spawns from other threads do not hold them open.

    Peak memory (``rss=True``): the program runs under GNU ``time -f %M``. wait4's ru_maxrss of a child
    spawned straight from this process is useless: posix_spawn's child shares our address space until
    exec, and exec records that (~20 MB of Python) as the child's high-water mark. time's own mark
    (~1 MB) is the floor of the figure. The extra exec makes those calls untimed (wall is still filled).
    """
    if rss:
        return _spawn_rss(argv, stdin=stdin, env=env, timeout=timeout)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawn(argv[0], list(argv), dict(BASE_ENV if env is None else env), file_actions=actions)
    finally:
        for fd in (in_r, out_w, err_w):
            os.close(fd)
    try:
        if stdin:
            os.write(in_w, stdin)  # CNI configs are far below the pipe buffer
    except BrokenPipeError:
        pass
    finally:
        os.close(in_w)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = [out_r, err_r]
    deadline = t0 + timeout
    try:
        while open_fds:
            left = deadline - time.perf_counter()
            if left <= 0:
                os.kill(pid, 9)  # the child we started, by PID
                break
            ready, _, _ = select.select(open_fds, [], [], left)
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    open_fds.remove(fd)
        _, status, usage = os.wait4(pid, 0)
        wall = (time.perf_counter() - t0) * 1000
    finally:
        os.close(out_r)
        os.close(err_r)
    return Proc(tuple(argv), os.waitstatus_to_exitcode(status), b"".join(chunks[out_r]), b"".join(chunks[err_r]),
                wall, -1, (usage.ru_utime + usage.ru_stime) * 1000)


def _spawn_rss(argv: Sequence[str], *, stdin: bytes, env: Mapping[str, str] | None, timeout: float) -> Proc:
    fd, out = tempfile.mkstemp(prefix="rss-")
    os.close(fd)
    try:
        p = spawn([TIME, "-f", "%M", "-o", out, *argv], stdin=stdin, env=env, timeout=timeout)
        text = Path(out).read_text().strip().splitlines()
    finally:
        os.unlink(out)
    p.argv, p.maxrss_kb = tuple(argv), int(text[-1]) if text and text[-1].isdigit() else -1
    return p


def p90(xs: Sequence[float]) -> float:
    if not xs:
        return float("nan")
    return statistics.quantiles(xs, n=10)[-1] if len(xs) >= 2 else xs[0]


def stats(xs: Sequence[float]) -> dict[str, float | int]:
    if not xs:
        return {"median_ms": float("nan"), "p90_ms": float("nan"), "n": 0}
    return {"median_ms": round(statistics.median(xs), 2), "p90_ms": round(p90(xs), 2), "n": len(xs)}


def run(argv: Sequence[str], *, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(argv), input=input, capture_output=True, check=False, timeout=120, env=BASE_ENV)


@dataclass
class Spaces:
    """A throwaway "host" netns plus container namespaces, all deleted by close() (use as a context)."""

    tag: str = "cnbench"
    host: str = ""
    made: list[str] = field(default_factory=list)
    _fd: int = -1

    def __enter__(self) -> Spaces:
        self.host = self.new("h")
        self._fd = open_netns(f"/var/run/netns/{self.host}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def new(self, role: str = "c") -> str:
        name = f"{self.tag}-{role}-{uuid.uuid4().hex[:8]}"
        res = run(["ip", "netns", "add", name])
        if res.returncode != 0:
            raise RuntimeError(f"ip netns add {name}: {res.stderr.decode(errors='replace')}")
        self.made.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def delete(self, name: str) -> None:
        run(["ip", "netns", "del", name])
        if name in self.made:
            self.made.remove(name)

    @contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread (and what it spawns or starts) runs in the host netns for the body."""
        with entered(self._fd):
            yield

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for name in reversed(self.made):
            run(["ip", "netns", "del", name])
        self.made.clear()
