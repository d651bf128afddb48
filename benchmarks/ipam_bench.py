"""IPAM ADD and DEL latency, ignite-ipam against Go host-local, at 0 / 1,000 / 10,000 existing leases.

    python benchmarks/ipam_bench.py [--n 50] [--json out.json] [--ours PATH] [--go PATH] [--sticky [--held N]]

``--sticky``: the network has ``"sticky": {"hold": "1h"}``, every call carries containerd's CNI_ARGS (a pod
owner), and beside each size's leases there are as many held addresses (``--held`` overrides: placeholder
lease files of owners whose hold runs, with their owner records), interleaved with the leases below
last_reserved_ip; "size" in the table is then leases + held. Each timed DEL starts a hold.

Each sample is the wall time of one plugin process (exec to exit), as a runtime sees it. Leases are
pre-created directly in host-local's format (``<dataDir>/<net>/<ip>`` = ``id\\r\\neth0``, plus
``last_reserved_ip.0`` pointing at the last one), one dataDir per plugin and size; one untimed
ADD+DEL lets each plugin see them first (ignite-ipam builds its index then). The timed loop
alternates the plugins so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import spawn

NET = "bench"
SUBNET = ipaddress.ip_network("10.61.0.0/16")


def default_ours() -> str:
    return str(Path(sys.executable).parent / "ignite-ipam")


def prepare(data_dir: Path, leases: int, held: int = 0) -> None:
    """`leases` leases and `held` held addresses (interleaved) from 10.61.0.2 up, last_reserved_ip at the top."""
    net = data_dir / NET
    net.mkdir(parents=True)
    (net / "lock").touch()
    idx = data_dir / ".ignite-index" / NET
    if held:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from cni_ignite.identity import owner_key
        from cni_ignite.ipam.sticky import binding_name

        idx.mkdir(parents=True)
    until = time.time_ns() + 3600 * 10**9
    last = None
    n_lease = n_held = 0
    k = 0
    while n_lease < leases or n_held < held:
        last = SUBNET.network_address + 2 + k
        k += 1
        if n_held < held and (n_held < n_lease or n_lease >= leases):
            owner = f"k8s:bench/held-{n_held:05d}"
            (net / str(last)).write_bytes(f"_ignite_held_\r\neth0\r\n{owner}\r\n{until - 1}\r\n{until}".encode())
            (idx / f"o-{owner_key(owner, 'eth0')}").write_text(json.dumps(
                {"owner": owner, "ifname": "eth0", "cid": "", "ips": [str(last)]}))
            n_held += 1
        else:
            (net / str(last)).write_bytes(f"pre-{n_lease:05d}\r\neth0".encode())
            if held:
                owner = f"k8s:bench/pre-{n_lease:05d}"
                (idx / f"o-{owner_key(owner, 'eth0')}").write_text(json.dumps(
                    {"owner": owner, "ifname": "eth0", "cid": f"pre-{n_lease:05d}", "ips": [str(last)]}))
                (idx / binding_name(f"pre-{n_lease:05d}", "eth0")).write_text(owner_key(owner, "eth0"))
            n_lease += 1
    if last is not None:
        (net / "last_reserved_ip.0").write_bytes(str(last).encode())


RSS_KB: dict[tuple[str, str], list[int]] = {}  # (binary, verb) -> ru_maxrss of each call


STICKY = False


def call(binary: str, command: str, conf: bytes, cid: str, *, rss: bool = False) -> float:
    """Wall ms of one plugin process (posix_spawn to wait4); with rss, its peak RSS goes to RSS_KB."""
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": "/var/run/netns/b",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}
    if STICKY:  # containerd's CRI: the pod is the owner
        env["CNI_ARGS"] = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=p-{cid};"
                           f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=00000000-0000-4000-8000-000000000000")
    proc = spawn([binary], stdin=conf, env=env, rss=rss)
    if proc.rc != 0:
        raise SystemExit(f"{binary} {command} {cid} failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    if rss:
        RSS_KB.setdefault((binary, command), []).append(proc.maxrss_kb)
    return proc.wall_ms


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1] if len(xs) >= 2 else xs[0]


def bench(plugins: dict[str, str], sizes: list[int], n: int, root: Path,
          held: int | None = None) -> dict[str, dict[str, dict[str, object]]]:
    results: dict[str, dict[str, dict[str, object]]] = {}
    for size in sizes:
        confs: dict[str, bytes] = {}
        n_held = (size if held is None else held) if STICKY and size else 0
        for name in plugins:
            data_dir = root / f"{name}-{size}"
            prepare(data_dir, size, n_held)
            ipam: dict[str, object] = {"type": "host-local", "subnet": str(SUBNET), "dataDir": str(data_dir)}
            if STICKY:
                ipam["sticky"] = {"hold": "1h"}
            confs[name] = json.dumps({"cniVersion": "0.4.0", "name": NET, "type": "ipam", "ipam": ipam}).encode()
        samples: dict[str, dict[str, list[float]]] = {name: {"ADD": [], "DEL": []} for name in plugins}
        for name, binary in plugins.items():  # warm-up: let each plugin see the pre-existing leases
            call(binary, "ADD", confs[name], "warmup")
            call(binary, "DEL", confs[name], "warmup")
        for k in range(n):
            for name, binary in plugins.items():
                samples[name]["ADD"].append(call(binary, "ADD", confs[name], f"bench-{k}"))
                samples[name]["DEL"].append(call(binary, "DEL", confs[name], f"bench-{k}"))
        for k in range(3):  # peak memory, untimed (under GNU time)
            for name, binary in plugins.items():
                call(binary, "ADD", confs[name], f"rss-{k}", rss=True)
                call(binary, "DEL", confs[name], f"rss-{k}", rss=True)
        for name in plugins:  # noqa: PLC0206
            leases = [p for p in (root / f"{name}-{size}" / NET).iterdir() if p.name[0].isdigit()]
            expected = size + n_held + (n + 4 if STICKY and name == "ours" else 0)  # each DEL holds
            if len(leases) != expected:
                raise SystemExit(f"{name} left {len(leases) - expected} leases behind at {size}")
            for verb, xs in samples[name].items():
                rss = RSS_KB.pop((plugins[name], verb), [0])
                results.setdefault(str(size + n_held), {}).setdefault(name, {})[verb] = {
                    "median_ms": round(statistics.median(xs), 2), "p90_ms": round(p90(xs), 2), "n": len(xs),
                    "maxrss_mb": round(statistics.median(rss) / 1024, 1)}
        print(f"  {size} leases done", file=sys.stderr)
    return results


def flatness(binary: str, big: int, held: int, n: int, root: Path) -> dict[str, float]:
    """ours at 0 and at `big` leases + `held` held addresses, calls alternating between the two dataDirs so
    that machine noise hits both alike (the figure for "the index stays O(1)" on a busy host)."""
    confs = {}
    for size, h in ((0, 0), (big, held)):
        data_dir = root / f"flat-{size}"
        prepare(data_dir, size, h)
        ipam: dict[str, object] = {"type": "host-local", "subnet": str(SUBNET), "dataDir": str(data_dir)}
        if STICKY:
            ipam["sticky"] = {"hold": "1h"}
        confs[size] = json.dumps({"cniVersion": "0.4.0", "name": NET, "type": "ipam", "ipam": ipam}).encode()
        call(binary, "ADD", confs[size], "warmup")
        call(binary, "DEL", confs[size], "warmup")
    xs: dict[tuple[int, str], list[float]] = {(size, v): [] for size in confs for v in ("ADD", "DEL")}
    for k in range(n):
        for size, conf in confs.items():
            xs[(size, "ADD")].append(call(binary, "ADD", conf, f"flat-{k}"))
            xs[(size, "DEL")].append(call(binary, "DEL", conf, f"flat-{k}"))
    out = {f"{verb}@{size}_median_ms": round(statistics.median(xs[(size, verb)]), 2) for size, verb in xs}
    for verb in ("ADD", "DEL"):
        out[f"{verb}_ratio"] = round(statistics.median(xs[(big, verb)]) / statistics.median(xs[(0, verb)]), 3)
    return out


def table(results: dict[str, dict[str, dict[str, object]]]) -> str:
    def stat(size: str, name: str, verb: str, key: str) -> float:
        value = results[size][name][verb]
        assert isinstance(value, dict)
        return float(value[key])

    lines = ["| leases | verb | ours median | ours p90 | Go median | Go p90 | ours/Go (median) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for size in results:
        for verb in ("ADD", "DEL"):
            om, op = stat(size, "ours", verb, "median_ms"), stat(size, "ours", verb, "p90_ms")
            gm, gp = stat(size, "go", verb, "median_ms"), stat(size, "go", verb, "p90_ms")
            lines.append(f"| {int(size):,} | {verb} | {om:.1f} ms | {op:.1f} ms | {gm:.1f} ms | {gp:.1f} ms | "
                         f"{om / gm:.2f} |")
    sizes = list(results)
    lo, hi = sizes[0], sizes[-1]
    lines.append("")
    for verb in ("ADD", "DEL"):
        for name in ("ours", "go"):
            ratio = stat(hi, name, verb, "median_ms") / stat(lo, name, verb, "median_ms")
            lines.append(f"- {name}@{int(hi):,} / {name}@{int(lo):,} {verb} (median): {ratio:.2f}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="timed ADD+DEL pairs per plugin and size (default 50)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--ours", default=default_ours(), help="ignite-ipam executable (default: next to python)")
    ap.add_argument("--go", default="/usr/lib/cni/host-local", help="Go host-local executable")
    ap.add_argument("--sizes", default="0,1000,10000", help="pre-existing lease counts (default 0,1000,10000)")
    ap.add_argument("--sticky", action="store_true", help="sticky network, pod owners, held addresses beside leases")
    ap.add_argument("--held", type=int, default=None, help="held addresses per non-zero size (default: = leases)")
    ap.add_argument("--flat", type=int, default=0, metavar="LEASES",
                    help="only ours: 0 against LEASES leases (+ as many held with --sticky, or --held), interleaved")
    opts = ap.parse_args()
    global STICKY  # noqa: PLW0603
    STICKY = opts.sticky
    sizes = [int(s) for s in opts.sizes.split(",")]
    plugins = {"ours": opts.ours, "go": opts.go}
    if opts.flat:
        held = (opts.flat if opts.held is None else opts.held) if STICKY else 0
        with tempfile.TemporaryDirectory(prefix="ipam-bench-") as tmp:
            flat = flatness(opts.ours, opts.flat, held, opts.n, Path(tmp))
        print(json.dumps({"leases": opts.flat, "held": held, "sticky": STICKY, "n": opts.n, **flat}, indent=1))
        if opts.json:
            Path(opts.json).write_text(json.dumps(flat, indent=2) + "\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="ipam-bench-") as tmp:
        results = bench(plugins, sizes, opts.n, Path(tmp), opts.held)
    print(table(results))
    if opts.json:
        meta = {"n": opts.n, "sticky": opts.sticky, "ours": opts.ours, "go": opts.go, "python": sys.version.split()[0],
                "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        Path(opts.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
