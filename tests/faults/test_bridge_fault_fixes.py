"""Reproductions of the bridge/netlink defects the fault sweep found (formerly xfail entries of KNOWN in
test_fault_sweep.py), now fixed: each faults one call of a clean run at the point it names (the first
`syscall` at or after the trace line matching `after`), then DEL and DEL again; the run must answer a
meaningful code, and nothing may be left."""

from __future__ import annotations

import shutil
from typing import NamedTuple

import pytest
from harness import Case, Scenario, run_case

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")]


class Repro(NamedTuple):
    verb: str
    syscall: str
    fault: str
    after: str
    code: int | None  # the code the faulted run must answer (None: killed)


# The record's temp file; it moved into tmp/ with the fix, so the pattern finds it before and after.
RECORD_TMP = r"\.bridge/faultnet/(tmp/)?a-[0-9a-f]+\.\d+\.tmp"

REPROS = {
    # records._write: EIO on the record's write was a raw OSError (999 + traceback), the temp file stayed
    "record-write-eio": Repro("ADD", "write", "EIO", RECORD_TMP, 5),
    # a writer killed mid-write left <name>.<pid>.tmp that no DEL removed
    "record-write-kill": Repro("ADD", "write", "KILL", RECORD_TMP, None),
    # _nl._send: any sendto fault escaped as 999 + traceback
    "netlink-sendto-eio": Repro("ADD", "sendto", "EIO", r"^sendto\(", 5),
    # delete(): a DEL that met an I/O failure answered 999
    "del-recvfrom-enospc": Repro("DEL", "recvfrom", "ENOSPC", r"^recvfrom\(", 5),
    # netns.entered: a failed open of /proc/thread-self/ns/net escaped as 999 + traceback
    "netns-self-open-enospc": Repro("ADD", "openat", "ENOSPC", r"thread-self/ns/net", 5),
    # tap.create_tap: a failed open of /dev/net/tun answered 999
    "tun-open-eio": Repro("ADD", "openat", "EIO", r"/dev/net/tun", 5),
    # vm.setup: an ADD killed after TUNSETIFF, before the tap was tagged, left it in the container
    "tap-untagged-kill": Repro("ADD", "recvfrom", "KILL", r"TUNSETIFF", None),
    # plugin._host_veth: a netlink failure right after the veth pair was created (its read-back) answered 5
    # but left the pair: the undo was registered only once the link had been read back (long sweep, sweep 3)
    "veth-readback-eio": Repro("ADD", "sendto", "EIO", r"^recvfrom\(.*error=0, msg=\{[^}]*NLM_F_EXCL\|NLM_F_CREATE", 5),
}


@pytest.mark.parametrize("name", list(REPROS))
def test_fault_answers_a_meaningful_code_and_leaves_nothing(name: str) -> None:
    r = REPROS[name]
    with Scenario("bridge") as sc:
        sc.prepare()
        index = sc.locate(r.verb, r.syscall, r.after)
        case = run_case(sc, Case("bridge", r.verb, r.syscall, index, r.fault))
    assert case.injected, f"{case.name} was not injected"
    assert not case.problems, f"{case.name} ({case.outcome}): {case.problems} {case.detail}"
    assert case.outcome == ("killed" if r.code is None else f"code-{r.code}"), (case.outcome, case.detail)
