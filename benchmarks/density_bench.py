"""ADD and DEL cost as attachments accumulate: N attachments added one by one through RuleFirewall (each
ipMasq + forward + one TCP port mapping, IPv4: the default conflist's rules), then deleted one by one
(as runtimes send DEL: no port mappings, the state record holds them). Medians of wall time and of CPU
time (this process + the rule tools it runs) per block of 100 (or ``--block``).

Everything runs inside a throwaway network namespace per backend (created and deleted here); the root
namespace is never touched. ``--tree DIR`` runs another checkout's code (e.g. the previous layout, from
``git archive <rev> | tar -x -C DIR``) the same way, for a side-by-side comparison in one run.

    sudo .venv/bin/python benchmarks/density_bench.py [--n 1000] [--block 100] [--markdown] [--tree DIR]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid


def _cpu() -> float:
    """CPU seconds of this process and of its waited-for children (the rule tools), µs resolution."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def inner(backend: str, n: int) -> dict[str, list[list[float]]]:
    """[[wall_ms, cpu_ms], ...] of each ADD (in order) and each DEL (from n attachments down to 0);
    "left": [[any rule or chain of ours left after the DELs and a GC (1/0), state records left]]."""
    from cni_ignite.firewall.base import Attachment, FirewallConfig, Owner, PortMapping
    from cni_ignite.firewall.core import RuleFirewall

    subprocess.run(["ip", "link", "add", "br0", "type", "bridge"], check=True)
    state_dir = tempfile.mkdtemp(prefix="densbench-")
    fw = RuleFirewall(state_dir=state_dir)
    base = ipaddress.ip_address("10.100.0.2")

    def att(i: int) -> Attachment:
        return Attachment(owner=Owner(network="bench", container_id=f"ctr{i}", ifname="eth0"),
                          addresses=(ipaddress.ip_interface(f"{base + i}/16"),), host_iface="br0")

    def cfg(i: int) -> FirewallConfig:
        maps = (PortMapping(host_port=10000 + i, container_port=80, protocol="tcp"),) if i >= 0 else ()
        return FirewallConfig(backend=backend, ip_masq=True, state_dir=state_dir, port_mappings=maps)

    adds, dels = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), _cpu()
        fw.add(att(i), cfg(i))
        adds.append([(time.perf_counter() - t0) * 1e3, (_cpu() - c0) * 1e3])
    for i in reversed(range(n)):
        t0, c0 = time.perf_counter(), _cpu()
        fw.delete(att(i).owner, cfg(-1))
        dels.append([(time.perf_counter() - t0) * 1e3, (_cpu() - c0) * 1e3])
    fw.gc("bench", set(), cfg(-1))  # no attachment left: removes the per-subnet chains no element uses
    rules = ""
    for argv in (["iptables-save"], ["nft", "list", "ruleset"]):
        res = subprocess.run(argv, capture_output=True, check=False)
        rules += res.stdout.decode()
    records = [f for _d, _s, files in os.walk(state_dir) for f in files if "lock" not in f]
    ours = re.search(r"cni-ignite:|CNI-IG[MD]-|chain [mhcpdf]-[0-9a-f]{20}", rules)
    return {"add": adds, "del": dels, "left": [[float(ours is not None), float(len(records))]]}


def run_in_netns(backend: str, n: int, tree: str | None = None) -> dict[str, list[list[float]]]:
    """inner() in a fresh throwaway namespace (deleted afterwards), with tree's code when given."""
    ns = f"cnit-dens-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        script = os.path.abspath(__file__)
        env = dict(os.environ)
        if tree:
            env["PYTHONPATH"] = tree
        res = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-P" if tree else "-B", script,
                              "--inner", backend, "--n", str(n)], check=True, capture_output=True, env=env,
                             cwd=tree or None)
        out: dict[str, list[list[float]]] = json.loads(res.stdout)
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def blocks(samples: list[list[float]], size: int) -> list[tuple[float, float]]:
    """(median wall, median cpu) of each block of `size` samples."""
    return [(statistics.median(s[0] for s in samples[i:i + size]), statistics.median(s[1] for s in samples[i:i + size]))
            for i in range(0, len(samples), size)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inner")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--tree", action="append", default=[], help="also run this checkout's code (label=DIR)")
    ap.add_argument("--backends", default="iptables,nftables")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(inner(args.inner, args.n)))
        return
    runs: dict[str, dict[str, list[list[float]]]] = {}
    for backend in args.backends.split(","):
        runs[backend] = run_in_netns(backend, args.n)
        for spec in args.tree:
            label, _, tree = spec.partition("=")
            runs[f"{backend} ({label})"] = run_in_netns(backend, args.n, tree)
    if not args.markdown:
        print(json.dumps({k: {"add": blocks(v["add"], args.block), "del": blocks(v["del"], args.block),
                              "left": v["left"]} for k, v in runs.items()}, indent=1))
        return
    b = args.block
    print(f"ADD: median wall / CPU ms per block of {b} ADDs (attachments present before the block)\n")
    print("| code | " + " | ".join(f"{i}-{i + b - 1}" for i in range(0, args.n, b)) + " |")
    print("|---|" + "---|" * len(range(0, args.n, b)))
    for k, v in runs.items():
        print(f"| {k} | " + " | ".join(f"{w:.1f} / {c:.1f}" for w, c in blocks(v["add"], b)) + " |")
    print(f"\nDEL: median wall / CPU ms per block of {b} DELs (attachments present before the block)\n")
    print("| code | " + " | ".join(f"{args.n - i}-{args.n - i - b + 1}" for i in range(0, args.n, b)) + " |")
    print("|---|" + "---|" * len(range(0, args.n, b)))
    for k, v in runs.items():
        print(f"| {k} | " + " | ".join(f"{w:.1f} / {c:.1f}" for w, c in blocks(v["del"], b)) + " |")
    print("\nleft after the DELs (rules?, records): " +
          ", ".join(f"{k}: {int(v['left'][0][0])}, {int(v['left'][0][1])}" for k, v in runs.items()))


if __name__ == "__main__":
    main()
