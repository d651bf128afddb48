"""Reproductions of the DELs the long fault sweep found answering ok while leaving something (formerly
xfail entries of KNOWN in test_fault_sweep.py), now fixed: each faults one call of a clean DEL at the
point it names (the first `syscall` at or after the trace line matching `after`), then DEL and DEL again;
the faulted DEL must answer the code named (a failed DEL is repeated by the runtime, an ok one never), and
after the repeats nothing may be left."""

from __future__ import annotations

import shutil
from typing import NamedTuple

import pytest
from harness import Case, Scenario, run_case

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")]


class Repro(NamedTuple):
    syscall: str
    fault: str
    after: str
    outcome: str  # what the faulted DEL must answer: "ok" (then it finished the job) or "code-N"


REPROS = {
    # netns.open_netns took every open error but ENOENT for "not a netns" (InvalidNetns), and DEL then skipped
    # the container side: it answered ok leaving tap0 in the container
    "netns-open-enospc": Repro("openat", "ENOSPC", r'^openat\(AT_FDCWD, "/var/run/netns/', "code-5"),
    "netns-open-eacces": Repro("openat", "EACCES", r'^openat\(AT_FDCWD, "/var/run/netns/', "code-5"),
    # firewall/core.py delete(): a record that could not be read (an I/O error) was kept with the host port
    # claim while the DEL answered ok (the port refused until a GC); now the DEL fails and its repeat finishes
    "fw-record-open-enospc": Repro("openat", "ENOSPC", r'^openat\(AT_FDCWD, "[^"]*/state/faultnet/[0-9a-f]',
                                   "code-5"),
    "fw-record-open-eio": Repro("openat", "EIO", r'^openat\(AT_FDCWD, "[^"]*/state/faultnet/[0-9a-f]', "code-5"),
    # firewall/state.py shared_unref swallowed every error of the registration's unlink: the shared masquerade
    # chain counted as used, and the DEL answered ok leaving it and the registration. Now the DEL carries on,
    # and its record-less pass retries the registration: the one-shot fault is gone then, so the DEL finishes
    # the job itself and answers ok (a lasting failure fails it with 5: tests/unit/test_firewall_del_errors.py)
    "shared-unref-unlink-eio": Repro("unlink", "EIO", r'^unlink\(".*/_nft-shared/', "ok"),
    "shared-unref-unlink-eacces": Repro("unlink", "EACCES", r'^unlink\(".*/_nft-shared/', "ok"),
}


@pytest.mark.parametrize("name", list(REPROS))
def test_faulted_del_answers_as_named_and_leaves_nothing(name: str) -> None:
    r = REPROS[name]
    with Scenario("bridge") as sc:
        sc.prepare()
        index = sc.locate("DEL", r.syscall, r.after)
        case = run_case(sc, Case("bridge", "DEL", r.syscall, index, r.fault))
    assert case.injected, f"{case.name} was not injected"
    assert not case.problems, f"{case.name} ({case.outcome}): {case.problems} {case.detail}"
    assert case.outcome == r.outcome, (case.outcome, case.detail)
