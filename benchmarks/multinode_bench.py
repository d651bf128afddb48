"""Multi-node benchmarks (issue 11), everything in throwaway namespaces, state in temp folders:

1. ``adddel``: ADD then DEL of one container by the frozen ignite-bridge, interleaved in one run, with
   - ``single``: the shipped conf/10-ignite.conflist (static subnet, ipMasq true),
   - ``single-nomasq``: the same with ipMasq false and mtu 1450 (what differs from multi-node is then only
     where the subnet comes from),
   - ``multi``: the shipped conf/30-ignite-multinode.conflist (ipam.subnetFile, ipMasq false, mtu 1450).
   No etcd and no agent on this path: the plugins only read the subnet file. Figures: median wall and CPU
   (user+sys of the plugin and its children) per verb, and the median of the per-round differences.
2. ``converge``: N hosts (namespaces on one underlay bridge, a real etcd, one real agent each), N-1 joined; then a
   new host's agent starts. Figures per join (fresh namespace each time): lease = agent start -> its subnet
   taken in etcd (includes the agent's start-up: Python, pyroute2, the VXLAN device), propagate = lease -> the
   last other host applied the route (agent logs' timestamps, one clock), total = agent start -> every other
   host has the route (polled in the kernel), and peers = agent start -> the new host reconciled its routes to
   all N-1 others.

    .venv/bin/python benchmarks/multinode_bench.py [--ours dist] [--n 30] [--hosts 3,20] [--joins 3]
                                                   [--only adddel|converge]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "node")]
from benchlib import Spaces, spawn, stats  # noqa: E402

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def load(name: str) -> dict[str, Any]:
    doc = json.loads((REPO / "conf" / name).read_text())
    conf = {"cniVersion": doc["cniVersion"], "name": doc["name"], **doc["plugins"][0]}
    conf.pop("capabilities", None)
    return conf


def adddel(ours: Path, n: int) -> dict[str, Any]:
    plugin = str(ours / "ignite-bridge")
    with tempfile.TemporaryDirectory(prefix="mnbench-") as tmp, Spaces(tag="cnmn") as spaces:
        env_file = Path(tmp) / "subnet.env"
        env_file.write_text("FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET=10.61.7.1/24\nFLANNEL_MTU=1450\n"
                            "FLANNEL_IPMASQ=true\n")
        single = load("10-ignite.conflist")
        multi = load("30-ignite-multinode.conflist")
        multi["ipam"] = {**multi["ipam"], "subnetFile": str(env_file)}
        confs = {"single": single, "single-nomasq": {**single, "ipMasq": False, "mtu": 1450}, "multi": multi}
        for kind, conf in confs.items():  # own state per variant; own bridge so the subnets never meet
            conf["stateDir"] = f"{tmp}/{kind}/state"
            conf["ipam"] = {**conf["ipam"], "dataDir": f"{tmp}/{kind}/ipam"}
        confs["single-nomasq"]["bridge"] = "ignite-nm0"
        ctr = {kind: spaces.new("c") for kind in confs}
        samples: dict[str, dict[str, list[float]]] = {k: {"add_wall": [], "add_cpu": [], "del_wall": [], "del_cpu": []}
                                                      for k in confs}
        with spaces.entered():
            for i in range(n + 3):
                for kind, conf in confs.items():
                    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_CONTAINERID": f"{kind}-{i}",
                           "CNI_NETNS": f"/var/run/netns/{ctr[kind]}", "CNI_IFNAME": "eth0", "CNI_PATH": str(ours)}
                    for verb in ("ADD", "DEL"):
                        r = spawn([plugin], stdin=json.dumps(conf).encode(), env={**env, "CNI_COMMAND": verb})
                        if r.rc != 0:
                            raise RuntimeError(f"{kind} {verb} failed: {r.stdout!r} {r.stderr!r}")
                        if i >= 3:  # warm-up
                            samples[kind][f"{verb.lower()}_wall"].append(r.wall_ms)
                            samples[kind][f"{verb.lower()}_cpu"].append(r.cpu_ms)
    out: dict[str, Any] = {k: {m: stats(v)["median_ms"] for m, v in s.items()} for k, s in samples.items()}
    out["multi_minus_single_nomasq"] = {
        m: round(statistics.median(a - b for a, b in zip(samples["multi"][m], samples["single-nomasq"][m],
                                                         strict=True)), 2) for m in samples["multi"]}
    out["multi_minus_single"] = {
        m: round(statistics.median(a - b for a, b in zip(samples["multi"][m], samples["single"][m], strict=True)), 2)
        for m in samples["multi"]}
    out["n"] = n
    return out


def _log_times(log: Path, pattern: str) -> list[float]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        m = LOG_TIME.match(line)
        if m and pattern in line:
            found.append(dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return found


def converge(hosts: int, joins: int) -> dict[str, Any]:
    from multinode import Cluster, wait_until
    from nsutil import Namespaces, sh

    spaces = Namespaces()
    with tempfile.TemporaryDirectory(prefix="mnconv-") as tmp:
        cluster = Cluster(spaces, Path(tmp), ttl=30)
        results: dict[str, list[float]] = {"lease_ms": [], "propagate_ms": [], "total_ms": [], "peers_ms": []}
        try:
            cluster.etcd.start()
            base = [cluster.add_host() for _ in range(hosts - 1)]
            for h in base:
                h.start_agent("--log-level", "info")
            subs = {h.name: str(h.wait_subnet(60).subnet) for h in base}
            want = set(subs.values())
            for h in base:
                wait_until(f"{h.name} to see its peers", lambda h=h: set(h.routes()) == want - {subs[h.name]}, 120)
            for _ in range(joins):
                new = cluster.add_host()
                t0 = time.time()
                new.start_agent("--log-level", "info")
                sub = str(new.wait_subnet(60).subnet)
                wait_until("every host to route to the new one", lambda sub=sub: all(sub in h.routes() for h in base),
                           60, 0.02)
                t_kernel = time.time()
                wait_until("the new host to route to all", lambda new=new: len(new.routes()) == len(base), 60, 0.02)
                leased = _log_times(new.log, f"took {sub} in etcd")[-1]
                applied = [max(_log_times(h.log, f"peer {sub} at")) for h in base]
                peers = _log_times(new.log, f"reconciled {len(base)} peer(s)")[-1]
                results["lease_ms"].append((leased - t0) * 1000)
                results["propagate_ms"].append((max(applied) - leased) * 1000)
                results["total_ms"].append((t_kernel - t0) * 1000)
                results["peers_ms"].append((peers - t0) * 1000)
                # the host leaves for good: its lease goes, the others drop it; the namespace is deleted
                new.stop_agent()
                cluster.etcd.ctl("del", f"/coreos.com/network/subnets/{sub.replace('/', '-')}")
                wait_until("the others to drop it", lambda sub=sub: all(sub not in h.routes() for h in base), 60)
                sh(["ip", "netns", "del", new.ns])  # (stays in cluster.hosts: the next host gets a fresh name and IP)
                spaces.made.remove(new.ns)
        finally:
            cluster.stop()
            spaces.cleanup()
    return {"hosts": hosts, "joins": joins,
            **{k: {"median": round(statistics.median(v), 1), "max": round(max(v), 1)} for k, v in results.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", default=str(REPO / "dist"), help="folder with the frozen ignite-bridge / ignite-ipam")
    ap.add_argument("--n", type=int, default=30, help="ADD+DEL rounds per configuration")
    ap.add_argument("--hosts", default="3,20", help="cluster sizes for the convergence figures")
    ap.add_argument("--joins", type=int, default=3, help="joins measured per cluster size")
    ap.add_argument("--only", choices=("adddel", "converge"))
    opts = ap.parse_args()
    if os.geteuid() != 0:
        print("multinode_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    out: dict[str, Any] = {"loadavg_1m_before": round(load_before, 2)}
    if opts.only in (None, "adddel"):
        out["adddel"] = r = adddel(Path(opts.ours), opts.n)
        print(f"ADD/DEL (median of {r['n']} interleaved rounds, ms): " + "; ".join(
            f"{k} ADD {r[k]['add_wall']} wall / {r[k]['add_cpu']} CPU, DEL {r[k]['del_wall']} / {r[k]['del_cpu']}"
            for k in ("single", "single-nomasq", "multi")))
        d = r["multi_minus_single_nomasq"]
        print(f"  multi - single-nomasq (median of per-round differences): ADD {d['add_wall']:+} wall "
              f"{d['add_cpu']:+} CPU, DEL {d['del_wall']:+} wall {d['del_cpu']:+} CPU")
    if opts.only in (None, "converge"):
        out["converge"] = []
        for size in (int(x) for x in opts.hosts.split(",")):
            c = converge(size, opts.joins)
            out["converge"].append(c)
            print(f"convergence, {size} hosts ({opts.joins} joins; median / max ms): lease {c['lease_ms']}, "
                  f"propagate {c['propagate_ms']}, total {c['total_ms']}, new host routes all {c['peers_ms']}")
    out["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
