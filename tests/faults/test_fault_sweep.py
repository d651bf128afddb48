"""A fault at every system call (quick profile): strace fails the Nth write, rename, link, fsync, openat,
unlink, utimensat, mkdir, flock, netlink sendto/recvfrom of ignite-bridge (in-process IPAM, a port mapping,
VM mode) and ignite-ipam, with ENOSPC, EIO, EACCES or SIGKILL, at a few indices per syscall spread over the
run (the full sweep: ``make faults-long``). After each faulted run, DEL and a second DEL: the run answered
with a result or a CNI error with a meaningful code (never a traceback, never 999), an ADD that succeeded
left a whole attachment (CHECK passes), and nothing is left (links, routes, rules, leases, records, temp
files; ``lock`` files excepted).

Defects in files this suite's owner may not change are listed in KNOWN: the sweep tolerates exactly those
problems, and each has a minimal reproduction below, an xfail(strict=True) that fails loudly once the
defect is fixed (then delete its entry).
"""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING, NamedTuple

import pytest
from harness import KINDS, Case, Scenario, indices, run_case

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")]

# (plugin, verb) -> (syscalls, indices per syscall). Indices are spread over the calls after the interpreter's
# start; fault kinds rotate over them. About 2 minutes on a loaded 2-core host.
QUICK: dict[tuple[str, str], tuple[tuple[str, ...], int]] = {
    ("bridge", "ADD"): (("write", "rename", "link", "fsync", "openat", "unlink", "utimensat", "mkdir", "flock",
                         "sendto", "recvfrom"), 2),
    ("bridge", "DEL"): (("write", "rename", "unlink", "sendto", "recvfrom"), 2),
    ("ipam", "ADD"): (("write", "rename", "link", "fsync", "openat", "unlink", "mkdir", "flock"), 2),
    ("ipam", "DEL"): (("rename", "unlink"), 1),
}


class Known(NamedTuple):
    """A defect in a file outside this suite's reach: which problems it explains, and how to reproduce it."""
    problem: str  # regex over a case's problem text
    reason: str  # file, defect, fix
    plugin: str
    verb: str
    syscall: str
    fault: str
    after: str  # regex: the fault hits the first `syscall` at or after the trace line matching it


# The fixed ones: test_bridge_fault_fixes.py, test_firewall_fault_fixes.py, test_del_fault_fixes.py.
KNOWN: dict[str, Known] = {
}


def known(problem: str) -> str:
    return next((name for name, k in KNOWN.items() if re.search(k.problem, problem)), "")


@pytest.fixture(scope="module")
def scenarios() -> Iterator[dict[str, Scenario]]:
    made: dict[str, Scenario] = {}
    try:
        yield made
    finally:
        for sc in made.values():
            sc.close()


def scenario(scenarios: dict[str, Scenario], plugin: str) -> Scenario:
    if plugin not in scenarios:
        scenarios[plugin] = Scenario(plugin)
        scenarios[plugin].prepare()
    return scenarios[plugin]


GROUPS = [(plugin, verb, syscall) for (plugin, verb), (syscalls, _) in QUICK.items() for syscall in syscalls]


@pytest.mark.parametrize(("plugin", "verb", "syscall"), GROUPS, ids=[" ".join(g) for g in GROUPS])
def test_fault_sweep(scenarios: dict[str, Scenario], plugin: str, verb: str, syscall: str) -> None:
    sc = scenario(scenarios, plugin)
    if verb != "ADD":
        sc.prev = sc.call("ADD").doc
    total, startup = sc.counts(verb, (syscall,))
    sc.call("DEL")
    sc.prev = None
    if total[syscall] == 0:
        pytest.skip(f"a clean {plugin} {verb} makes no {syscall} call")
    picked = indices(total[syscall], startup[syscall], sample=QUICK[(plugin, verb)][1])
    picked = [n for n in picked if n > startup[syscall]] or picked
    shift = GROUPS.index((plugin, verb, syscall))
    cases = [run_case(sc, Case(plugin, verb, syscall, n, KINDS[(i + shift) % len(KINDS)]))
             for i, n in enumerate(picked)]
    unknown = [f"{c.name}: {p}" for c in cases for p in c.problems if not known(p)]
    assert not unknown, "\n".join(unknown)
    assert any(c.injected for c in cases), "no fault was injected: the index sampling is wrong"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=k.reason))
                                  for n, k in KNOWN.items()])
def test_known_defect_is_still_there(name: str) -> None:
    """Each KNOWN defect, reproduced alone (the fault at the first `syscall` after the trace line `after`).
    xfail(strict): once the defect is fixed this passes, the run fails, and the entry must go (the sweep
    then keeps it fixed)."""
    k = KNOWN[name]
    with Scenario(k.plugin) as sc:
        sc.prepare()
        index = sc.locate(k.verb, k.syscall, k.after)
        case = run_case(sc, Case(k.plugin, k.verb, k.syscall, index, k.fault))
    assert case.injected, f"{case.name} was not injected"
    mine = [p for p in case.problems if re.search(k.problem, p)]
    assert not mine, f"{case.name}: {mine}"
