"""ADD and DEL cost as attachments accumulate: N attachments added one by one through RuleFirewall (each
ipMasq + forward + one TCP port mapping, IPv4: the default conflist's rules), then deleted one by one
(as runtimes send DEL: no port mappings, the state record holds them). Medians of wall time and of CPU
time (this process + the rule tools it runs) per block of 100 (or ``--block``).

Everything runs inside a throwaway network namespace per backend (created and deleted here); the root
namespace is never touched. ``--tree DIR`` runs another checkout's code (e.g. the previous layout, from
``git archive <rev> | tar -x -C DIR``) the same way, for a side-by-side comparison in one run.

    sudo .venv/bin/python benchmarks/density_bench.py [--n 1000] [--block 100] [--markdown] [--tree DIR]

``--kernel-ops bridge|routed --sizes 0,1000``: the single netlink/sysctl operations of one ADD and DEL
(as ``cni_ignite.bridge`` sends them) timed at N attachments present (thread CPU and wall, median of
``--trials``), each attachment in its own container netns, in two throwaway host netns side by side: the
host veth with IPv6 left on (the plugin before issue 14's fix) and with IPv6 off (``disable_ipv6=1``
before the port comes up, as now). ``--reps`` repeats the measurement interleaved. JSON lines out.
``--sides off`` measures only the IPv6-off host (the plugin as it is; half the namespaces).

The per-interface sysctls are timed both ways in every attachment, in alternating order (even attachments
/proc first, odd ones netlink first; each sets the other value, so both always change it): "… /proc" is
the old path (``setns`` into the container + ``/proc/sys`` write; host ``/proc/sys`` writes) and
"… netlink" the new one (``Rtnl.set_ipv4_conf`` / ``set_proxy_delay`` on the namespace's socket). The
attachments present are made as the plugin makes them now (container sysctls over netlink only), so the
container namespaces hold no /proc/sys dentries of ours; only the measured trials use both paths.
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
from typing import Any


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


def _both_ways(t: Any, what: str, proc_first: bool, proc: Any, netlink: Any) -> None:
    """Time one setting through /proc and through netlink, in the order proc_first says."""
    pair = ((f"{what} /proc", proc), (f"{what} netlink", netlink))
    for label, fn in pair if proc_first else pair[::-1]:
        t(label, fn)


def _routed_host_sysctls(t: Any, host: Any, v: Any, proc_first: bool) -> None:
    from cni_ignite.netlink import sysctl

    on = "1" if proc_first else "0"

    def host_proc() -> None:
        for k, val in (("net/ipv4/conf/{}/proxy_arp", on), ("net/ipv4/neigh/{}/proxy_delay", "0" if proc_first
                       else "80"), ("net/ipv4/conf/{}/rp_filter", on)):
            sysctl.write(k.format(v.name), val)

    def host_netlink() -> None:
        host.set_ipv4_conf(v.index, {"proxy_arp": int(not proc_first), "rp_filter": int(not proc_first)})
        host.set_proxy_delay(v.index, 800 if proc_first else 0)

    _both_ways(t, "routed host sysctls", proc_first, host_proc, host_netlink)


def _container_arp_notify(t: Any, fd: int, cont: Any, c: Any, proc_first: bool) -> None:
    from cni_ignite.netlink import sysctl
    from cni_ignite.netlink.netns import entered

    def cont_sysctl() -> None:
        with entered(fd):
            sysctl.write("net/ipv4/conf/eth0/arp_notify", "1" if proc_first else "0")

    def cont_netlink() -> None:
        cont.set_ipv4_conf(c.index, {"arp_notify": 0 if proc_first else 1})

    _both_ways(t, "container arp_notify", proc_first, cont_sysctl, cont_netlink)


def kops_inner(cmd: str, mode: str, a: int, b: int, ipv6_off: bool, prefix: str) -> dict[str, Any]:
    """Inside the host netns: ``populate`` attachments a..b-1 (container netns ``<prefix><i>``), or
    ``measure`` b trials (container netns ``<prefix>t<k>``) with N=a present. Returns the medians."""
    from cni_ignite.netlink import sysctl
    from cni_ignite.netlink.netns import open_netns
    from cni_ignite.netlink.rtnl import Rtnl

    host, times = Rtnl(), {}  # type: ignore[var-annotated]

    def t(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        w0, c0 = time.perf_counter(), time.thread_time()
        r = fn(*args, **kw)
        times.setdefault(name, []).append(((time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000))
        return r

    br = host.link("br0")
    gw = ipaddress.ip_address("10.63.0.1")

    def attach(ns_path: str, name: str, ip: Any) -> Any:
        fd = open_netns(ns_path)
        cont = Rtnl(fd)
        v = t("veth create", host.create_veth, name, "eth0", peer_netns_fd=fd, mtu=1500, mac_of_peer=None)
        t("set alias", host.set_link, v.index, alias="tag")
        key = "disable_ipv6" if ipv6_off else "accept_ra"
        t("host veth sysctl", sysctl.write, f"net/ipv6/conf/{name}/{key}", "1" if ipv6_off else "0")
        t("ip_forward read /proc", sysctl.write, "net/ipv4/ip_forward", "1")
        t("ip_forward read netlink", host.forwarding, 4)
        proc_first = int(ip.ip) % 2 == 0
        if mode == "bridge":
            t("master + up + alias", host.set_link, v.index, master=br.index, up=True, alias="tag2")
            t("hairpin", host.set_brport, v.index, hairpin=True)
        else:
            t("up + alias", host.set_link, v.index, up=True, alias="tag2")
            _routed_host_sysctls(t, host, v, proc_first)
            t("gateway address", host.add_addr, v.index, ipaddress.ip_interface(f"{gw}/32"), nodad=True)
            t("host route", host.add_route, ipaddress.ip_network(f"{ip.ip}/32"), None, v.index)
        c = cont.link("eth0")

        if cmd == "populate":  # as the plugin now: no /proc/sys dentries in the container namespaces
            cont.set_ipv4_conf(c.index, {"arp_notify": 1})
        else:
            _container_arp_notify(t, fd, cont, c, proc_first)
        t("container address", cont.add_addr, c.index, ip, nodad=True, noprefixroute=mode != "bridge")
        t("container up", cont.set_link, c.index, up=True)
        t("container route", cont.add_route, ipaddress.ip_network("0.0.0.0/0"), gw, c.index, onlink=True)
        t("wait oper up", host.wait_oper_up, v.index)
        cont.close()
        os.close(fd)
        return v

    def addr(i: int) -> Any:
        return ipaddress.ip_interface(f"10.63.{1 + i // 250}.{i % 250 + 1}/16")

    if cmd == "populate":
        for i in range(a, b):
            attach(f"/var/run/netns/{prefix}{i}", f"h{i}", addr(i))
        return {}
    for k in range(b):
        v = attach(f"/var/run/netns/{prefix}t{k}", f"vt{k}", addr(60000 + k))
        time.sleep(0.05)
        t("veth delete", host.delete_link, v.index)
        time.sleep(0.02)
    ops = {k: [round(statistics.median(x[i] for x in v), 3) for i in (0, 1)] for k, v in times.items()}
    return {"mode": mode, "ipv6_off": ipv6_off, "n": a, "ops_wall_cpu_ms": ops,
            "sum_cpu_ms": round(sum(c for _, c in ops.values()), 2)}


def kernel_ops(mode: str, sizes: list[int], trials: int, reps: int, flavours: tuple[str, ...] = ("0", "1")) -> None:
    """Two throwaway host netns (IPv6 on / off on the host veths), grown to each size, measured interleaved."""
    tag = uuid.uuid4().hex[:5]
    made: list[str] = []

    def sh(*argv: str, inp: str | None = None) -> str:
        r = subprocess.run(argv, input=inp, capture_output=True, text=True, check=False)
        if r.returncode:
            raise SystemExit(f"{' '.join(argv[:6])} failed: {r.stderr}")
        return r.stdout

    def nsadd(names: list[str]) -> None:
        made.extend(names)
        sh("ip", "-batch", "-", inp="".join(f"netns add {n}\n" for n in names))

    me = os.path.abspath(__file__)
    try:
        sides = {}
        for off in flavours:
            host, prefix = f"cnbkops{off}-{tag}", f"cnbkops{off}-{tag}-"
            nsadd([host] + [f"{prefix}t{k}" for k in range(trials)])
            sides[off] = (host, prefix)
            sh("ip", "-n", host, "link", "set", "lo", "up")
            if mode == "bridge":
                sh("ip", "-n", host, "-batch", "-",
                   inp="link add br0 type bridge\nlink set br0 promisc on up\naddr add 10.63.0.1/16 dev br0\n")
        have = 0
        for size in sizes:
            for off, (host, prefix) in sides.items():
                nsadd([f"{prefix}{i}" for i in range(have, size)])
                sh("ip", "netns", "exec", host, sys.executable, me, "--kops-inner", "populate", mode, str(have),
                   str(size), off, prefix)
            have = size
            time.sleep(2)
            for _ in range(reps):
                for off, (host, prefix) in sides.items():
                    print(sh("ip", "netns", "exec", host, sys.executable, me, "--kops-inner", "measure", mode,
                             str(size), str(trials), off, prefix).strip(), flush=True)
    finally:
        subprocess.run(["ip", "-batch", "-"], input="".join(f"netns del {n}\n" for n in reversed(made)),
                       capture_output=True, text=True, check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inner")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--tree", action="append", default=[], help="also run this checkout's code (label=DIR)")
    ap.add_argument("--backends", default="iptables,nftables")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--kernel-ops", choices=("bridge", "routed"), help="time the single kernel ops instead")
    ap.add_argument("--sizes", default="0,1000")
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sides", choices=("both", "off"), default="both",
                    help="kernel ops: both host flavours (IPv6 on/off on the host veths) or only off (as now)")
    ap.add_argument("--kops-inner", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kops_inner:
        cmd, mode, a, b, off, prefix = args.kops_inner
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out = kops_inner(cmd, mode, int(a), int(b), off == "1", prefix)
        if out:
            print(json.dumps(out))
        return
    if args.kernel_ops:
        kernel_ops(args.kernel_ops, [int(x) for x in args.sizes.split(",")], args.trials, args.reps,
                   ("1",) if args.sides == "off" else ("0", "1"))
        return
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
