"""The host port registry under concurrency: processes claiming and releasing one host port.

Each worker does what ``core.RuleFirewall`` does: ADD claims under ``ports_lock`` and writes its record;
DEL removes the record, then calls ``release_ports`` (without holding the lock). A release that checks an
entry and unlinks it outside the lock deletes the entry of an ADD that meanwhile judged it stale, and a
third ADD then claims the port too: two live owners. Its rmdir also raced the claim's makedirs/open, and
that surfaced as FileNotFoundError / FileExistsError (a 999 for the runtime). No root needed.
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import time
import traceback
from typing import TYPE_CHECKING, Any

from cni_ignite.errors import CniError
from cni_ignite.firewall import state
from cni_ignite.firewall.base import FirewallConfig, Owner, PortMapping

if TYPE_CHECKING:
    from pathlib import Path

WORKERS = 4
ROUNDS = 3000
SECONDS = 12.0
MAPPING = (PortMapping(host_port=9000, container_port=80, protocol="tcp"),)


def _worker(sd: str, idx: int, holders: Any, violations: Any, out: Any, deadline: float) -> None:
    owner = Owner(network="race", container_id=f"c{idx}", ifname="eth0")
    cfg = FirewallConfig(ip_masq=False, state_dir=sd, backend="iptables", port_mappings=MAPPING)
    addr = (ipaddress.ip_interface(f"10.64.0.{idx + 2}/24"),)
    claims = conflicts = cni_errors = 0
    foreign: list[str] = []
    for _ in range(ROUNDS):
        if time.monotonic() > deadline or len(foreign) >= 3:
            break
        try:
            with state.ports_lock(sd):
                entries = state.claim_ports(sd, owner, MAPPING)
                state.write(state.Record(owner=owner, backend="iptables", addresses=addr, config=cfg,
                                         ports=entries))
        except state.PortConflict:
            conflicts += 1
            continue
        except CniError:
            cni_errors += 1
            continue
        except Exception:  # exactly what the test is looking for
            foreign.append(traceback.format_exc(limit=3))
            continue
        claims += 1
        with holders.get_lock():
            holders.value += 1
            if holders.value > 1:
                violations.value += 1
        with holders.get_lock():
            holders.value -= 1
        try:  # DEL, as core.RuleFirewall._remove does it: record first, then the registry entries
            state.remove(sd, owner)
            state.release_ports(sd, owner, entries)
        except CniError:
            cni_errors += 1
        except Exception:
            foreign.append(traceback.format_exc(limit=3))
    out.put({"claims": claims, "conflicts": conflicts, "cni_errors": cni_errors, "foreign": foreign})


def test_concurrent_claims_and_releases_never_give_one_host_port_two_owners(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    holders, violations, out = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Queue()
    deadline = time.monotonic() + SECONDS
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), i, holders, violations, out, deadline))
             for i in range(WORKERS)]
    for p in procs:
        p.start()
    try:
        reports = [out.get(timeout=SECONDS + 30) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()  # only the workers this test started
                p.join()
    foreign = [f for r in reports for f in r["foreign"]]
    assert foreign == [], "non-CNI exceptions (a 999 for the runtime):\n" + "\n".join(foreign[:3])
    assert violations.value == 0, f"{violations.value} times two attachments held tcp/9000 at once"
    assert sum(r["cni_errors"] for r in reports) == 0
    assert sum(r["claims"] for r in reports) > 100, reports
    assert os.listdir(tmp_path / "ports") == ["lock"], "every release removes its entry and folder"
