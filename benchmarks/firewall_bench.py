"""Firewall layer cost: ADD and DEL of one attachment (ipMasq + forward + 1 TCP port mapping, IPv4),
per backend, on an empty host and after FILL other attachments exist (ADD must stay flat).

Runs everything inside a throwaway network namespace (created and deleted here); the root namespace
is never touched. Times are in-process (the plugin's process start is measured elsewhere).

    sudo .venv/bin/python benchmarks/firewall_bench.py [--reps 30] [--fill 200] [--markdown]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid


def inner(backend: str, reps: int, fill: int) -> dict[str, float]:
    from cni_ignite.firewall.base import Attachment, FirewallConfig, Owner, PortMapping
    from cni_ignite.firewall.core import RuleFirewall

    state_dir = tempfile.mkdtemp(prefix="fwbench-")

    def cfg(port: int) -> FirewallConfig:
        return FirewallConfig(backend=backend, ip_masq=True, state_dir=state_dir,
                              port_mappings=(PortMapping(host_port=port, container_port=80, protocol="tcp"),))

    fw = RuleFirewall(state_dir=state_dir)

    def att(i: int) -> Attachment:
        addr = ipaddress.ip_interface(f"{ipaddress.ip_address('10.100.0.2') + i}/16")
        return Attachment(owner=Owner(network="bench", container_id=f"ctr{i}", ifname="eth0"),
                          addresses=(addr,), host_iface="br0")

    def cycle(i: int) -> tuple[float, float]:
        a, c = att(i), cfg(20000 + i % 30000)
        t0 = time.perf_counter()
        fw.add(a, c)
        t1 = time.perf_counter()
        fw.delete(a.owner, FirewallConfig(backend=backend, ip_masq=True, state_dir=state_dir))
        return t1 - t0, time.perf_counter() - t1

    t0 = time.perf_counter()
    fw.add(att(50000), cfg(19999))  # first ADD creates the shared chains / table
    first = time.perf_counter() - t0
    fw.delete(att(50000).owner, cfg(19999))
    empty = [cycle(50001 + r) for r in range(reps)]
    t0 = time.perf_counter()
    for i in range(fill):
        fw.add(att(i), cfg(1000 + i))
    fill_s = time.perf_counter() - t0
    full = [cycle(50001 + r) for r in range(reps)]
    t0 = time.perf_counter()
    fw.delete(att(0).owner, cfg(1000), ())  # DEL without addresses or mappings, state record present
    del_full = time.perf_counter() - t0
    os.unlink(os.path.join(state_dir, "bench", att(1).owner.key))  # state lost: key-based sweep
    t0 = time.perf_counter()
    fw.delete(att(1).owner, cfg(1001), ())
    del_nostate = time.perf_counter() - t0
    ms = 1000.0
    return {"first_add": first * ms,
            "add_empty": statistics.median(a for a, _ in empty) * ms,
            "del_empty": statistics.median(d for _, d in empty) * ms,
            "add_full": statistics.median(a for a, _ in full) * ms,
            "del_full": statistics.median(d for _, d in full) * ms,
            "add_full_p90": sorted(a for a, _ in full)[int(0.9 * len(full))] * ms,
            "fill_per_add": fill_s / max(fill, 1) * ms,
            "del_one_of_full_no_addresses": del_full * ms,
            "del_one_of_full_state_lost": del_nostate * ms}


def outer(reps: int, fill: int, markdown: bool) -> None:
    results = {}
    for backend in ("iptables", "nftables"):
        ns = f"cnit-fwbench-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            res = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inner", backend,
                                  "--reps", str(reps), "--fill", str(fill)], check=True, capture_output=True)
            results[backend] = json.loads(res.stdout)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    if not markdown:
        print(json.dumps(results, indent=2))
        return
    rows = [("first ADD (creates shared chains/table)", "first_add"),
            ("ADD, empty host (median)", "add_empty"), ("DEL, empty host (median)", "del_empty"),
            (f"ADD with {fill} attachments present (median)", "add_full"),
            (f"ADD with {fill} attachments present (p90)", "add_full_p90"),
            (f"DEL with {fill} attachments present (median)", "del_full"),
            (f"mean ADD while filling to {fill}", "fill_per_add"),
            ("DEL, no addresses/mappings given (state record)", "del_one_of_full_no_addresses"),
            ("DEL, state record lost (lists our chains/table)", "del_one_of_full_state_lost")]
    print(f"| ms (reps={reps}) | iptables | nftables |\n|---|---|---|")
    for label, k in rows:
        print(f"| {label} | {results['iptables'][k]:.1f} | {results['nftables'][k]:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inner")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--fill", type=int, default=200)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner, args.reps, args.fill)))
    else:
        outer(args.reps, args.fill, args.markdown)


if __name__ == "__main__":
    main()
