"""Host-side /proc/sys cost against how many *other* network namespaces hold a cached /proc/sys/net/ipv4
dentry (issue 14, benchmarks/DENSITY.md), and the same settings over rtnetlink beside it.

/proc/sys/net/ipv4 of every namespace is a dentry of the same name under the same parent, told apart by
``proc_sys_compare``, so a lookup walks all that are cached. The plugin before the rtnetlink change created
one per container (its arp_notify write inside the container); the Go reference plugins still do. Thread CPU
ms, median of 41, in a throwaway host netns beside N throwaway namespaces (all deleted at the end).

    sudo nice -n 10 .venv/bin/python benchmarks/density_procsys.py [N=1000]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any


def batch(verb: str, names: list[str]) -> None:
    subprocess.run(["ip", "-batch", "-"], input="".join(f"netns {verb} {n}\n" for n in names), text=True,
                   check=verb == "add")


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cni_ignite.netlink import sysctl
    from cni_ignite.netlink.netns import entered, open_netns
    from cni_ignite.netlink.rtnl import Rtnl

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    tag = uuid.uuid4().hex[:5]
    host, others = f"h1d-{tag}-host", [f"h1d-{tag}-{i}" for i in range(n)]
    batch("add", [host, *others])
    try:
        hfd = open_netns(f"/run/netns/{host}")
        subprocess.run(["ip", "-n", host, "link", "add", "hv", "type", "veth", "peer", "name", "hp"], check=True)

        def measure(label: str) -> None:
            with entered(hfd):
                nl = Rtnl()
                idx = nl.require("hv").index
                ops: dict[str, Any] = {
                    "ip_forward read /proc": lambda: sysctl.read("net/ipv4/ip_forward"),
                    "ip_forward read netlink": lambda: nl.forwarding(4),
                    "proxy_arp+rp_filter /proc": lambda: [sysctl.write(f"net/ipv4/conf/hv/{k}", "1")
                                                          for k in ("proxy_arp", "rp_filter")],
                    "proxy_arp+rp_filter netlink": lambda: nl.set_ipv4_conf(idx, {"proxy_arp": 1, "rp_filter": 1}),
                    "disable_ipv6 /proc": lambda: sysctl.write("net/ipv6/conf/hv/disable_ipv6", "1"),
                }
                out = {}
                for name, fn in ops.items():
                    xs = []
                    for _ in range(41):
                        c0 = time.thread_time()
                        fn()
                        xs.append((time.thread_time() - c0) * 1000)
                    out[name] = round(statistics.median(xs), 3)
                nl.close()
            print(label, out, flush=True)

        measure(f"{n} other netns, none with a /proc/sys/net dentry:")
        for name in others:
            fd = open_netns(f"/run/netns/{name}")
            with entered(fd):
                sysctl.read("net/ipv4/conf/lo/arp_notify")
            os.close(fd)
        measure(f"{n} other netns, each with /proc/sys/net/ipv4 looked up (as the old plugin's container write):")
    finally:
        batch("del", [host, *others])


if __name__ == "__main__":
    main()
