"""The isolation guard's cost (issue 15): whole-network ADD and DEL of the frozen ignite-bridge with ``"guard":
true`` against ``"guard": false``, in bridge mode (conf/10-ignite.conflist) and routed mode
(conf/20-ignite-routed.conflist), interleaved in one run (target: <= +3 ms ADD).

    .venv/bin/python benchmarks/guard_bench.py [--n 40] [--ours dist] [--modes bridge,routed]

Each network is the shipped conflist (one plugin: ignite-bridge with ignite-ipam) with only ``guard`` set and
temp ``dataDir``/``stateDir``. Every configuration gets its own throwaway "host" netns (benchlib.Spaces) and
one container netns, reused round after round (each round ADDs a new container ID, then DELs it). A round
runs guard on and off back to back, in alternating order, so a load change between rounds cancels out in the
per-round difference. Reported per mode and verb: medians of wall and CPU time (user+sys of the plugin and
the children it waited for: ignite-ipam, nft), and the median of the per-round differences on - off. The
plugins are spawned by a thread that entered the host netns (no ``ip netns exec`` in the timing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import Spaces, spawn

REPO = Path(__file__).resolve().parents[1]
CONFLISTS = {"bridge": "conf/10-ignite.conflist", "routed": "conf/20-ignite-routed.conflist"}
WARM_UP = 3


def plugin_conf(mode: str, guard: bool, tmp: str) -> dict[str, Any]:
    listed = json.loads((REPO / CONFLISTS[mode]).read_text())
    conf = {**listed["plugins"][0], "cniVersion": "1.0.0", "name": listed["name"], "guard": guard,
            "stateDir": f"{tmp}/state"}
    conf["ipam"] = {**conf["ipam"], "dataDir": f"{tmp}/ipam"}
    conf.pop("capabilities", None)
    return conf


class Side:
    """One configuration (mode, guard on/off): its host netns, container netns, temp dirs and figures."""

    def __init__(self, mode: str, guard: bool, plugin: str, root: str) -> None:
        self.mode, self.guard, self.plugin = mode, guard, plugin
        self.tmp = tempfile.mkdtemp(prefix=f"{mode}-{'on' if guard else 'off'}-", dir=root)
        self.conf = json.dumps(plugin_conf(mode, guard, self.tmp)).encode()
        self.spaces = Spaces(tag="gbench").__enter__()
        self.ns = self.spaces.new("c")
        self.times: dict[str, dict[str, list[float]]] = {v: {"wall": [], "cpu": []} for v in ("ADD", "DEL")}

    def call(self, verb: str, cid: str, keep: bool) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": verb, "CNI_CONTAINERID": cid,
               "CNI_NETNS": f"/var/run/netns/{self.ns}", "CNI_IFNAME": "eth0",
               "CNI_PATH": os.path.dirname(self.plugin)}
        with self.spaces.entered():
            r = spawn([self.plugin], stdin=self.conf, env=env)
        if r.rc != 0:
            raise RuntimeError(f"{self.mode} guard={self.guard} {verb} failed: {r.stdout!r} {r.stderr!r}")
        if keep:
            self.times[verb]["wall"].append(r.wall_ms)
            self.times[verb]["cpu"].append(r.cpu_ms)

    def guarded_ports(self) -> int:
        """Elements in the guard's ports sets of the host (a check that the guard is really on or off)."""
        family = "bridge" if self.mode == "bridge" else "inet"
        from benchlib import run

        out = run(["ip", "netns", "exec", self.spaces.host, "nft", "-j", "list", "set", family, "cni_ignite_guard",
                   "ports"])
        if out.returncode:
            return 0
        return sum(len(i["set"].get("elem", [])) for i in json.loads(out.stdout)["nftables"] if "set" in i)

    def close(self) -> None:
        self.spaces.close()


def bench_mode(mode: str, plugin: str, n: int, root: str) -> dict[str, Any]:
    sides = {True: Side(mode, True, plugin, root), False: Side(mode, False, plugin, root)}
    try:
        for i in range(n + WARM_UP):
            order = (True, False) if i % 2 else (False, True)
            for guard in order:
                sides[guard].call("ADD", f"gb{i:04d}", i >= WARM_UP)
            if i == WARM_UP:  # the guard is on where it should be, and only there
                assert sides[True].guarded_ports() == 1 and sides[False].guarded_ports() == 0, mode
            for guard in order:
                sides[guard].call("DEL", f"gb{i:04d}", i >= WARM_UP)
        out: dict[str, Any] = {}
        for verb in ("ADD", "DEL"):
            on, off = sides[True].times[verb], sides[False].times[verb]
            out[verb] = {
                "on": {m: round(statistics.median(on[m]), 2) for m in ("wall", "cpu")},
                "off": {m: round(statistics.median(off[m]), 2) for m in ("wall", "cpu")},
                "cost": {m: round(statistics.median(a - b for a, b in zip(on[m], off[m], strict=True)), 2)
                         for m in ("wall", "cpu")},
            }
        return out
    finally:
        for side in sides.values():
            side.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--ours", default=str(REPO / "dist"))
    ap.add_argument("--modes", default="bridge,routed")
    opts = ap.parse_args()
    plugin = str(Path(opts.ours).resolve() / "ignite-bridge")
    load = os.getloadavg()[0]
    out: dict[str, Any] = {"n": opts.n, "load_before": round(load, 1)}
    with tempfile.TemporaryDirectory(prefix="guardbench-") as root:
        for mode in opts.modes.split(","):
            out[mode] = bench_mode(mode, plugin, opts.n, root)
    out["load_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out))
    for mode in opts.modes.split(","):
        for verb in ("ADD", "DEL"):
            r = out[mode][verb]
            print(f"{mode:6} {verb}: guard on {r['on']['wall']} ms wall / {r['on']['cpu']} ms CPU, off "
                  f"{r['off']['wall']} / {r['off']['cpu']}; cost (median of {opts.n} pair differences) "
                  f"{r['cost']['wall']:+} ms wall, {r['cost']['cpu']:+} ms CPU")
    print(f"load average {out['load_before']} -> {out['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
