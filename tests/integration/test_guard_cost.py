"""What the guard costs per ADD/DEL with 1 and with 500 guarded ports present (issue 15).

Inside a throwaway namespace: N ports' elements are loaded, then one more attachment is applied and
removed 20 times through ``cni_ignite.guard.nft`` (an ``nft -f -`` exec each). Reported: the wall time
(minimum; the machine is shared) and the CPU time of the nft child (median). The cost must not grow with
N: nft fetches no set elements for an element-only transaction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nsutil import in_ns

if TYPE_CHECKING:
    from nsutil import Namespaces

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

REPO = str(Path(__file__).resolve().parents[2])

MEASURE = r"""
import ipaddress as i, json, resource, sys, time
from cni_ignite.guard import nft, rules
from cni_ignite.firewall._exec import checked

n = int(sys.argv[1])
def att(k):
    return rules.attachment(f"vethp{k}", [f"02:62:00:00:{k >> 8:02x}:{k & 255:02x}"],
                            [i.ip_address(f"10.62.{k >> 8}.{k & 255}"), i.ip_address(f"fd00:62::{k:x}")])
skel = rules.skeleton()
script = skel + "".join(rules.apply_script(att(k)).removeprefix(skel) for k in range(n))
checked("guard", ("nft", "-f", "-"), script)
one = att(4000)
def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
out = {}
noop = lambda: None
steps = (  # name: (before, timed, after); every round starts and ends without `one`
    ("apply", noop, lambda: nft.apply(one), lambda: nft.remove(one.port, one)),
    ("remove", lambda: nft.apply(one), lambda: nft.remove(one.port, one), noop),
    ("remove_again", noop, lambda: nft.remove(one.port), noop),  # the second DEL: one get element
    ("remove_without_record", lambda: nft.apply(one), lambda: nft.remove(one.port), noop),  # purge: a listing
    ("check", lambda: nft.apply(one), lambda: nft.check(one), lambda: nft.remove(one.port, one)),
)
for name, before, fn, after in steps:
    walls, cpus = [], []
    for _ in range(20):
        before()
        c, w = cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(cpu() - c)
        after()
    cpus.sort()
    out[name] = {"wall_min_ms": round(min(walls) * 1000, 2), "cpu_median_ms": round(cpus[10] * 1000, 2)}
print(json.dumps(out))
"""


def measure(netns: Namespaces, n: int) -> dict[str, dict[str, float]]:
    ns = netns.new("cnit-gcost")
    out = in_ns(ns, [sys.executable, "-c", MEASURE, str(n)], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                   "PYTHONPATH": REPO}, timeout=300)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_add_and_del_cost_does_not_grow_with_guarded_ports(netns: Namespaces) -> None:
    small, large = measure(netns, 1), measure(netns, 500)
    print(f"\nguard cost, 1 port: {small}\nguard cost, 500 ports: {large}")
    for verb in ("apply", "remove", "remove_again"):
        # CPU of the nft child: the same with 500 ports (a listing of 500 ports' elements would add ms)
        assert large[verb]["cpu_median_ms"] <= small[verb]["cpu_median_ms"] * 1.5 + 1.0, (verb, small, large)
