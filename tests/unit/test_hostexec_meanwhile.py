"""hostexec.Meanwhile: work lent to the next child runs once the child has all of its stdin (EOF included),
while the child works; once per block; its exceptions are dropped; without a child it is not run."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cni_ignite import hostexec

if TYPE_CHECKING:
    from pathlib import Path

SH = "/bin/sh"


def test_lent_work_runs_while_the_child_works_with_its_whole_stdin(tmp_path: Path) -> None:
    out = tmp_path / "stdin-copy"
    seen: list[str] = []

    def work() -> None:  # the child writes its stdin's copy only after EOF: it must have it all by now
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (out.exists() and out.read_text() == "script\n"):
            time.sleep(0.005)
        seen.append(out.read_text() if out.exists() else "")

    t0 = time.monotonic()
    with hostexec.Meanwhile(work):
        res = hostexec.run([SH, "-c", f"cat > {out}; sleep 0.3; echo done"], stdin=b"script\n", timeout=10)
        again = hostexec.run([SH, "-c", "echo again"])  # the work went with the first child
    assert res.ok and res.stdout == b"done\n" and again.stdout == b"again\n"
    assert seen == ["script\n"]
    assert time.monotonic() - t0 < 2  # the child's sleep and the work overlapped; no wait for a timeout


def test_a_failing_lent_work_is_dropped_and_the_call_goes_on() -> None:
    def broken() -> None:
        raise ImportError("no such module")

    with hostexec.Meanwhile(broken):
        res = hostexec.run([SH, "-c", "cat"], stdin=b"x" * 200_000)  # more than the pipe takes at once
    assert res.ok and res.stdout == b"x" * 200_000


def test_without_a_child_the_work_is_not_run_and_not_kept() -> None:
    ran: list[int] = []
    with hostexec.Meanwhile(lambda: ran.append(1)):
        pass
    hostexec.run([SH, "-c", "true"])
    assert ran == []
