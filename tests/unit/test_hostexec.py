"""hostexec.run against real children (no root): output collected, stdin fed, no deadlock, timeout kept.

Each call that could hang on the unfixed code runs in a separate interpreter with its own hard limit, so
a deadlock fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from cni_ignite import hostexec
from cni_ignite.errors import CniError, IOFailure

SH = "/bin/sh"
MIB = 1 << 20


def run_isolated(script: str, stdin_size: int, timeout: float, limit: float = 20.0) -> dict[str, object]:
    """hostexec.run([sh, -c, script], stdin=stdin_size bytes, timeout) in a fresh interpreter."""
    code = (
        "import json, sys, time\n"
        "from cni_ignite import hostexec\n"
        "from cni_ignite.errors import CniError\n"
        "t0 = time.monotonic()\n"
        "try:\n"
        f"    done = hostexec.run([{SH!r}, '-c', {script!r}], stdin=b'x' * {stdin_size}, timeout={timeout})\n"
        "    out = {'rc': done.returncode, 'stdout': len(done.stdout), 'stderr': len(done.stderr)}\n"
        "except CniError as exc:\n"
        "    out = {'error': exc.msg}\n"
        "out['elapsed'] = time.monotonic() - t0\n"
        "print(json.dumps(out))\n"
    )
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=limit, check=False,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    except subprocess.TimeoutExpired:
        pytest.fail(f"hostexec.run hung for {limit}s (timeout was {timeout}s): {script}")
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


def test_output_and_exit_status_are_collected() -> None:
    done = hostexec.run([SH, "-c", "cat; echo err >&2; exit 3"], stdin=b"hello")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"hello", b"err\n")


def test_child_that_writes_a_mib_before_reading_stdin_does_not_deadlock() -> None:
    # The child reads one page of stdin, so the stdin pipe has room again, then fills its stdout pipe
    # before reading the rest: a blocking write of a large chunk into stdin would wait for it forever.
    script = "dd bs=4096 count=1 of=/dev/null 2>/dev/null; head -c 1048576 /dev/zero; cat >/dev/null"
    out = run_isolated(script, stdin_size=MIB, timeout=10)
    assert out.get("rc") == 0, out
    assert out["stdout"] == MIB


def test_timeout_is_honoured_while_stdin_is_being_fed() -> None:
    out = run_isolated("dd bs=4096 count=1 of=/dev/null 2>/dev/null; exec sleep 30", stdin_size=MIB, timeout=1)
    assert out.get("error", "").endswith("timed out"), out
    assert float(out["elapsed"]) < 5


def test_timeout_is_honoured_when_the_child_closed_its_pipes_but_runs_on() -> None:
    out = run_isolated("exec >&- 2>&- <&-; exec sleep 30", stdin_size=0, timeout=1)
    assert out.get("error", "").endswith("timed out"), out
    assert float(out["elapsed"]) < 5


def test_stdin_the_child_never_reads_is_not_an_error() -> None:
    """EPIPE on stdin: the child exited without reading; its status and output are what count."""
    done = hostexec.run([SH, "-c", "echo done"], stdin=b"x" * MIB, timeout=10)
    assert (done.returncode, done.stdout) == (0, b"done\n")


def test_large_stdin_and_output_round_trip() -> None:
    data = os.urandom(3 * MIB)
    done = hostexec.run([SH, "-c", "cat; cat /dev/null >&2"], stdin=data, timeout=20)
    assert done.ok and done.stdout == data


def test_timed_out_child_is_killed_and_reaped(monkeypatch: pytest.MonkeyPatch) -> None:
    pids: list[int] = []
    real_spawn = os.posix_spawn

    def spawn(*args: Any, **kw: Any) -> int:
        pids.append(real_spawn(*args, **kw))
        return pids[-1]

    monkeypatch.setattr(os, "posix_spawn", spawn)
    t0 = time.monotonic()
    with pytest.raises(IOFailure, match="timed out"):
        hostexec.run([SH, "-c", "exec sleep 30"], timeout=0.3)
    assert time.monotonic() - t0 < 3
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # already reaped: no zombie, no sleeper left


def test_missing_program_is_a_cni_error() -> None:
    with pytest.raises(CniError, match="cannot run"):
        hostexec.run(["/nonexistent/prog"])
