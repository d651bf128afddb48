"""The multi-node demo (`make multinode-demo`): three hosts, one network, real guests, step by step.

    sudo .venv/bin/python tests/node/demo.py [--backend vxlan|host-gw] [--no-vm]

Everything runs in throwaway namespaces (an underlay bridge, etcd, three "hosts", their containers and QEMU
guests), with state in a temp folder, and is removed at the end; the root namespace is not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from multinode import OUTSIDE_ADDR, Cluster, ping, tcp_roundtrip, wait_until  # noqa: E402
from nsutil import Namespaces, in_ns  # noqa: E402


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("vxlan", "host-gw"), default="vxlan")
    ap.add_argument("--no-vm", action="store_true", help="containers only (no QEMU guests)")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        print("multinode demo: needs root (network namespaces)", file=sys.stderr)
        return 2
    spaces = Namespaces()
    vms = []
    with tempfile.TemporaryDirectory(prefix="mndemo-") as tmp:
        cluster = Cluster(spaces, Path(tmp), backend=opts.backend)
        try:
            step("etcd 3.4 in its own namespace on the underlay 192.168.61.0/24")
            cluster.etcd.start()
            print(f"   {cluster.etcd.url}")
            step(f"three hosts, each running `cni-ignite node` ({opts.backend})")
            hosts = [cluster.add_host() for _ in range(3)]
            t0 = time.monotonic()
            for h in hosts:
                h.start_agent("--log-level", "info")
            subs = [h.wait_subnet() for h in hosts]
            for h, s in zip(hosts, subs, strict=True):
                print(f"   {h.name} {h.ip}: subnet {s.subnet} (gateway {s.subnet.network_address + 1}), mtu {s.mtu}")
            want = {str(s.subnet) for s in subs}
            for h, s in zip(hosts, subs, strict=True):
                wait_until(f"{h.name}'s routes", lambda h=h, s=s: set(h.routes()) == want - {str(s.subnet)}, 30)
            print(f"   every host routes to the others after {time.monotonic() - t0:.1f} s:")
            print("   " + hosts[0].sh("ip", "route", "show", "proto", "61").strip().replace("\n", "\n   "))

            step("containers attached by ignite-bridge with conf/30-ignite-multinode.conflist")
            ctrs = [h.add_container() for h in hosts]
            for h, (_ns, ip) in zip(hosts, ctrs, strict=True):
                print(f"   {h.name}: container {ip}")
            ok = ping(ctrs[0][0], ctrs[2][1])
            print(f"   container on host1 pings container on host3: {'ok' if ok else 'FAILED'}")
            out = tcp_roundtrip(ctrs[0][0], ctrs[1][0], ctrs[1][1])
            print(f"   TCP host1 container -> host2 container: {out.split(':')[0]}  (its own address, no NAT)")
            outside = cluster.add_outside()
            out = tcp_roundtrip(ctrs[0][0], outside, OUTSIDE_ADDR)
            print(f"   TCP host1 container -> outside {OUTSIDE_ADDR}: {out.split(':')[0]}  (masqueraded by the agent)")

            if not opts.no_vm:
                from test_node_vm import add_vm, vm_guest_module

                step("QEMU guests (tests/vm) on host1 and host2, tc-redirect taps from ignite-bridge")
                guest = vm_guest_module()
                image = guest.prepare_guest()
                nets = [add_vm(h, guest, f"demo-vm{i + 1}") for i, h in enumerate(hosts[:2])]
                for i, (_ns, net) in enumerate(nets):
                    vms.append(guest.boot(net.netns_path, net.tap_name, net.vm_mac, net.ip_boot_param(),
                                          Path(tmp) / f"console-{i + 1}.log", image=image))
                ips = [vm.wait_ready(120) for vm in vms]
                for h, ip, vm in zip(hosts[:2], ips, vms, strict=True):
                    print(f"   {h.name}: guest {ip} up in {vm.boot_seconds or 0:.1f} s ({vm.accel})")
                body = guest.http_get(hosts[0].ns, guest.guest_ping_url(ips[0], ips[1]), timeout=20)
                print(f"   guest on host1 pings guest on host2: {body.strip().splitlines()[-1]}")

            step("cni-ignite status on host1")
            conf_dir = Path(tmp) / "net.d"
            conf_dir.mkdir()
            doc = hosts[0].network_conf()
            conflist = {"cniVersion": doc.pop("cniVersion"), "name": doc.pop("name"), "plugins": [doc]}
            (conf_dir / "30-ignite-multinode.conflist").write_text(json.dumps(conflist))
            res = in_ns(hosts[0].ns, [str(Path(sys.executable).parent / "cni-ignite"), "status", "--bin-dir",
                                      str(Path(tmp) / "bin"), "--conf-dir", str(conf_dir)], check=False)
            print("   " + res.stdout.decode().strip().replace("\n", "\n   "))
        finally:
            step("teardown: guests, agents, etcd and every namespace")
            for vm in vms:
                vm.stop()
            cluster.stop()
            made = list(spaces.made)
            spaces.cleanup()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
    print(f"   {len(made)} namespaces made, {sum(n in left for n in made)} left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
