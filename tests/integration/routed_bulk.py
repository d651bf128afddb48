"""Many routed attachments in-process, for test_routed_mode's "more than a bridge has ports" test.

    python routed_bulk.py add|del DATA_DIR NS...

Run inside the host namespace. ``add`` makes one attachment (eth0) in each NS through
``cni_ignite.bridge.plugin.add`` (the same code as the executable, without a process start per call)
and prints one JSON line: the addresses in order and the median time of the first and last 50 ADDs;
``del`` deletes them all the same way and prints the median times of the first and last 50 DELs.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cni_ignite.bridge import plugin
from cni_ignite.netconf import parse_netconf
from cni_ignite.skel import CmdArgs


def conf(data_dir: str) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "routednet", "type": "ignite-bridge", "mode": "routed",
                       "isDefaultGateway": True,
                       "stateDir": f"{data_dir}/ignite-state",  # never the machine's /run/cni/ignite
                       "ipam": {"type": "ignite-ipam", "subnet": "10.62.0.0/16", "dataDir": data_dir}}).encode()


def main() -> int:
    verb, data_dir = sys.argv[1], sys.argv[2]
    stdin = conf(data_dir)
    netconf = parse_netconf(stdin)
    times: list[float] = []
    ips: list[str] = []
    for ns in sys.argv[3:]:
        cmd = CmdArgs(command=verb.upper(), container_id=ns, netns=f"/var/run/netns/{ns}", ifname="eth0",
                      args="", path="", stdin=stdin, conf=netconf)
        t0 = time.perf_counter()
        if verb == "add":
            result = plugin.add(cmd)
            ips.append(str(result.ips[0].address.ip))
        else:
            plugin.delete(cmd)
        times.append(time.perf_counter() - t0)
    ms = [t * 1000 for t in times]
    print(json.dumps({"count": len(times), "ips": ips, "first_ms": round(statistics.median(ms[:50]), 2),
                      "last_ms": round(statistics.median(ms[-50:]), 2), "total_s": round(sum(times), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
