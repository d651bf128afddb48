"""Cost of the netlink layer: import, and per-operation time in throwaway namespaces (needs root).

    sudo .venv/bin/python benchmarks/netlink_bench.py [-n 200] [--startup 20]

1. in this process: wall time of ``import cni_ignite.netlink.rtnl`` (+ netns, sysctl), measured first;
2. ``--startup K``: K fresh interpreters each of ``python -c pass`` and ``python -c 'import ...rtnl'``,
   with bytecode cached in a temporary PYTHONPYCACHEPREFIX (as an installed or frozen plugin has it);
3. N iterations, in a "host" and a "container" netns made for the run and deleted afterwards, of:
   veth create (peer straight into the container netns as eth0) + host end up, container end up +
   IPv4 address + default route, then delete; plus tap + tc redirect + delete, and ``Rtnl(path)``.

Not a test. Nothing here touches the root namespace (``ip netns add/del`` only mounts/unmounts).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()
import cni_ignite.netlink.netns  # noqa: E402
import cni_ignite.netlink.rtnl  # noqa: E402
import cni_ignite.netlink.sysctl  # noqa: E402

IMPORT_MS = (time.perf_counter() - _T0) * 1e3

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections import defaultdict  # noqa: E402
from ipaddress import ip_address, ip_interface, ip_network  # noqa: E402

Rtnl = cni_ignite.netlink.rtnl.Rtnl
open_netns = cni_ignite.netlink.netns.open_netns


def startup(k: int) -> dict[str, float]:
    env = {key: v for key, v in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        for label, code in (("python -c pass", "pass"),
                            ("python -c 'import cni_ignite.netlink.rtnl'", "import cni_ignite.netlink.rtnl")):
            subprocess.run([sys.executable, "-c", code], env=env, check=True)  # warm the bytecode cache
            runs = []
            for _ in range(k):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", code], env=env, check=True)
                runs.append((time.perf_counter() - t) * 1e3)
            out[label] = statistics.median(runs)
    return out


def summary(label: str, xs: list[float]) -> str:
    xs = sorted(xs)
    return f"{label:<34} median {statistics.median(xs):7.3f} ms   p90 {xs[int(len(xs) * 0.9) - 1]:7.3f} ms"


def run_ops(n: int) -> dict[str, list[float]]:
    host, cont = f"cnib-{uuid.uuid4().hex[:8]}", f"cnib-{uuid.uuid4().hex[:8]}"
    t: dict[str, list[float]] = defaultdict(list)
    for name in (host, cont):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        cfd = open_netns(f"/var/run/netns/{cont}")
        with Rtnl(f"/var/run/netns/{host}") as h, Rtnl(cfd) as c:
            c.set_link(c.require("lo").index, up=True)
            for i in range(n):
                t0 = time.perf_counter()
                veth = h.create_veth(f"vb{i}", "eth0", peer_netns_fd=cfd, mtu=1400)
                h.set_link(veth.index, up=True)
                t1 = time.perf_counter()
                eth0 = c.require("eth0")
                c.set_link(eth0.index, up=True)
                c.add_addr(eth0.index, ip_interface("10.99.0.2/24"))
                t2 = time.perf_counter()
                c.add_route(ip_network("0.0.0.0/0"), ip_address("10.99.0.1"), eth0.index)
                t3 = time.perf_counter()
                h.delete_link(veth.index)
                t4 = time.perf_counter()
                t["veth create + host end up"].append((t1 - t0) * 1e3)
                t["eth0 lookup + up + address"].append((t2 - t1) * 1e3)
                t["default route"].append((t3 - t2) * 1e3)
                t["veth delete"].append((t4 - t3) * 1e3)
                t["ADD-like total (without delete)"].append((t3 - t0) * 1e3)
                t["whole iteration"].append((t4 - t0) * 1e3)
            veth = h.create_veth("vbt", "eth0", peer_netns_fd=cfd, mtu=1400)
            eth0 = c.require("eth0")
            for i in range(max(n // 4, 1)):
                t0 = time.perf_counter()
                tap = c.create_tap(f"tap{i}", uid=0, gid=0, mtu=1400)
                t1 = time.perf_counter()
                c.add_tc_redirect(eth0.index, tap.index)
                t2 = time.perf_counter()
                c.del_ingress_qdisc(eth0.index)
                c.delete_link(tap.index)
                t3 = time.perf_counter()
                t["tap create (+mtu, up)"].append((t1 - t0) * 1e3)
                t["tc redirect both ways"].append((t2 - t1) * 1e3)
                t["qdisc + tap delete"].append((t3 - t2) * 1e3)
            for _ in range(max(n // 4, 1)):
                t0 = time.perf_counter()
                Rtnl(f"/var/run/netns/{cont}").close()
                t["Rtnl(path): open+setns+socket"].append((time.perf_counter() - t0) * 1e3)
            for i in range(max(n // 10, 1)):
                t0 = time.perf_counter()
                subprocess.run(["ip", "-n", host, "link", "add", f"ipx{i}", "type", "veth", "peer", "name",
                                f"ipy{i}"], check=True)
                t["(compare) one `ip link add` exec"].append((time.perf_counter() - t0) * 1e3)
        os.close(cfd)
    finally:
        for name in (host, cont):
            subprocess.run(["ip", "netns", "del", name], check=False)
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--startup", type=int, default=20, metavar="K")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, kernel {os.uname().release}")
    print(f"in-process import of rtnl+netns+sysctl: {IMPORT_MS:.1f} ms "
          f"(bytecode {'not ' if sys.dont_write_bytecode else ''}written by this interpreter)")
    if args.startup:
        for label, ms in startup(args.startup).items():
            print(f"{label:<50} median {ms:6.1f} ms over {args.startup} runs")
    for label, xs in run_ops(args.n).items():
        print(summary(label, xs) + f"   (n={len(xs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
