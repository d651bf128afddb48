"""Reproductions of the firewall-state and skeleton defects the fault sweep found (formerly xfail entries of
KNOWN in test_fault_sweep.py), now fixed: each faults one call of a clean run at the point it names (the
first `syscall` at or after the trace line matching `after`), then DEL and DEL again; the run must answer a
meaningful code, and nothing may be left."""

from __future__ import annotations

import shutil
from typing import NamedTuple

import pytest
from harness import Case, Scenario, run_case

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")]


class Repro(NamedTuple):
    plugin: str
    verb: str
    syscall: str
    fault: str
    after: str
    code: int | None  # the code the faulted run must answer (None: killed)


REPROS = {
    # skel._load: dlopen of fcntl's .so failing (EACCES, ENOSPC) escaped as ImportError: 999 + traceback
    "skel-import-eacces": Repro("ipam", "ADD", "openat", "EACCES", r"lib-dynload/fcntl", 5),
    "skel-import-enospc": Repro("ipam", "ADD", "openat", "ENOSPC", r"lib-dynload/fcntl", 5),
}


@pytest.mark.parametrize("name", list(REPROS))
def test_fault_answers_a_meaningful_code_and_leaves_nothing(name: str) -> None:
    r = REPROS[name]
    with Scenario(r.plugin) as sc:
        sc.prepare()
        index = sc.locate(r.verb, r.syscall, r.after)
        case = run_case(sc, Case(r.plugin, r.verb, r.syscall, index, r.fault))
    assert case.injected, f"{case.name} was not injected"
    assert not case.problems, f"{case.name} ({case.outcome}): {case.problems} {case.detail}"
    assert case.outcome == ("killed" if r.code is None else f"code-{r.code}"), (case.outcome, case.detail)
