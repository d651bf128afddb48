"""Joining at once, restarting, leaving and etcd outages, on throwaway hosts with a real etcd and kernel."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest
from multinode import PREFIX, ping, wait_until

if TYPE_CHECKING:
    from multinode import Cluster, Host

pytestmark = pytest.mark.privileged


def peers_seen(host: Host, others: list[Host]) -> bool:
    want = {str(o.wait_subnet().subnet) for o in others}
    return set(host.routes()) == want and len(host.neighbours()) == len(want) and len(host.fdb()) == len(want)


def reconciled(host: Host, times: int = 1) -> bool:
    return host.log.read_text().count("reconciled ") >= times


def test_hosts_joining_at_once_get_different_subnets(cluster: Cluster) -> None:
    # Four /30s fit between SubnetMin and SubnetMax: four hosts starting together must collide on the random
    # pick (all distinct by chance: 4!/4^4 = 9 %), and the compare-and-swap must sort them out.
    config = {"Network": "10.61.0.0/26", "SubnetLen": 30, "SubnetMin": "10.61.0.4", "SubnetMax": "10.61.0.16",
              "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}
    cluster.etcd.ctl("put", f"{PREFIX}/config", json.dumps(config))
    hosts = [cluster.add_host() for _ in range(4)]
    for h in hosts:
        h.start_agent()
    subnets = [str(h.wait_subnet().subnet) for h in hosts]
    assert sorted(subnets) == ["10.61.0.12/30", "10.61.0.16/30", "10.61.0.4/30", "10.61.0.8/30"]
    assert sorted(cluster.etcd.subnets()) == ["10.61.0.12-30", "10.61.0.16-30", "10.61.0.4-30", "10.61.0.8-30"]
    # the config written by hand was adopted, not overwritten
    assert json.loads(cluster.etcd.get_prefix(f"{PREFIX}/config")[f"{PREFIX}/config"]) == config
    for h in hosts:
        wait_until(f"{h.name} to see its peers", lambda h=h: peers_seen(h, [o for o in hosts if o is not h]))


def loss_during(src_ns: str, target: str, action: object, seconds: float = 5) -> tuple[int, int]:
    """Ping every 50 ms for `seconds` while action() runs; returns (sent, received)."""
    proc = subprocess.Popen(["ip", "netns", "exec", src_ns, "ping", "-i", "0.05", "-w", str(seconds), "-W", "1",
                             target], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        action()  # type: ignore[operator]
        out, _ = proc.communicate(timeout=seconds + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    m = re.search(rb"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m[1]), int(m[2])


def test_restarted_agent_keeps_its_subnet_and_traffic_flows(cluster: Cluster) -> None:
    h1, h2 = cluster.add_host(), cluster.add_host()
    h1.start_agent()
    h2.start_agent()
    wait_until("both peers", lambda: peers_seen(h1, [h2]) and peers_seen(h2, [h1]))
    before = h2.wait_subnet()
    lease_before = cluster.etcd.subnets()
    (c1, _ip1), (_c2, ip2) = h1.add_container(), h2.add_container()
    assert ping(c1, ip2)

    def restart() -> None:
        assert h2.stop_agent() == 0  # SIGTERM: clean exit
        assert peers_seen(h2, [h1])  # data plane left in place
        h2.start_agent()

    sent, received = loss_during(c1, ip2, restart)
    assert received == sent, f"lost {sent - received} of {sent} pings across the restart"
    wait_until("h2 reconciled again", lambda: reconciled(h2, 2))
    assert h2.wait_subnet() == before
    assert "reclaimed" in h2.log.read_text()
    assert cluster.etcd.subnets() == lease_before  # same subnet, same VtepMAC (device kept)
    assert peers_seen(h1, [h2]) and peers_seen(h2, [h1])

    # The lease itself vanished while the agent was down: the subnet file brings the same subnet back.
    assert h2.stop_agent() == 0
    cluster.etcd.ctl("del", f"{PREFIX}/subnets/{before.subnet.network_address}-{before.subnet.prefixlen}")
    h2.start_agent()
    wait_until("h2 leased again", lambda: reconciled(h2, 3))
    assert h2.wait_subnet() == before
    wait_until("h1 sees h2 again", lambda: peers_seen(h1, [h2]))
    assert ping(c1, ip2)


def test_leaving_host_is_removed_within_ttl_and_foreign_entries_stay(cluster: Cluster) -> None:
    hosts = [cluster.add_host() for _ in range(3)]
    ttl = 3
    for h in hosts:
        h.start_agent(ttl=ttl)
    for h in hosts:
        wait_until(f"{h.name} converged", lambda h=h: peers_seen(h, [o for o in hosts if o is not h]))
    h1, _h2, h3 = hosts
    # Entries the agent did not create: a route on flannel.1, a neighbour and an FDB entry, a route on eth0.
    h1.sh("ip", "route", "add", "10.61.250.0/24", "via", "10.61.250.0", "dev", "flannel.1", "onlink")
    h1.sh("ip", "neigh", "add", "10.61.250.0", "lladdr", "02:00:00:00:00:fa", "dev", "flannel.1", "nud", "permanent")
    h1.sh("bridge", "fdb", "add", "02:00:00:00:00:fa", "dev", "flannel.1", "dst", "192.168.61.250", "self",
          "permanent")
    h1.sh("ip", "route", "add", "10.61.251.0/24", "via", "192.168.61.99", "dev", "eth0")
    foreign = h1.sh("ip", "route") + h1.sh("ip", "neigh", "show", "dev", "flannel.1") + h1.sh(
        "bridge", "fdb", "show", "dev", "flannel.1")

    gone = str(h3.wait_subnet().subnet)
    assert h3.stop_agent() == 0
    t0 = time.monotonic()
    for h in hosts[:2]:
        wait_until(f"{h.name} to drop {gone}", lambda h=h: gone not in h.routes(), timeout=ttl + 5)
    elapsed = time.monotonic() - t0
    print(f"leave converged in {elapsed:.2f} s (TTL {ttl} s)")
    for h in hosts[:2]:
        assert peers_seen(h, [o for o in hosts[:2] if o is not h])  # neighbour + FDB gone too, the rest intact
    assert "10.61.250.0/24 via 10.61.250.0 dev flannel.1 onlink" in h1.sh("ip", "route")
    assert "10.61.251.0/24 via 192.168.61.99 dev eth0" in h1.sh("ip", "route")
    assert "10.61.250.0 lladdr 02:00:00:00:00:fa PERMANENT" in h1.sh("ip", "neigh", "show", "dev", "flannel.1")
    assert "02:00:00:00:00:fa dst 192.168.61.250" in h1.sh("bridge", "fdb", "show", "dev", "flannel.1")
    # ... and also after a full reconcile (restart)
    assert h1.stop_agent() == 0
    h1.start_agent(ttl=ttl)
    wait_until("h1 reconciled again", lambda: reconciled(h1, 2))
    after = h1.sh("ip", "route") + h1.sh("ip", "neigh", "show", "dev", "flannel.1") + h1.sh(
        "bridge", "fdb", "show", "dev", "flannel.1")
    for line in ("10.61.250.0/24 via 10.61.250.0 dev flannel.1 onlink", "10.61.251.0/24 via 192.168.61.99 dev eth0",
                 "10.61.250.0 lladdr 02:00:00:00:00:fa PERMANENT", "02:00:00:00:00:fa dst 192.168.61.250"):
        assert line in foreign and line in after
    # the host that left still has its own data plane (agent stopped, nothing torn down)
    assert h3.sh("ip", "-br", "link", "show", "flannel.1")


def test_etcd_outage_keeps_traffic_and_a_new_host_joins_after(cluster: Cluster) -> None:
    h1, h2 = cluster.add_host(), cluster.add_host()
    for h in (h1, h2):
        h.start_agent(ttl=5)
    wait_until("both peers", lambda: peers_seen(h1, [h2]) and peers_seen(h2, [h1]))
    (c1, ip1), (c2, ip2) = h1.add_container(), h2.add_container()

    def etcd_down() -> None:
        cluster.etcd.stop()

    sent, received = loss_during(c1, ip2, etcd_down, seconds=8)  # longer than the lease TTL
    assert received == sent, f"lost {sent - received} of {sent} pings with etcd down"
    assert peers_seen(h1, [h2]) and peers_seen(h2, [h1])
    assert h1.proc is not None and h1.proc.poll() is None  # still running, retrying
    assert "retrying" in h1.log.read_text()

    cluster.etcd.start()  # same data dir: the leases come back (etcd restarts their TTL)
    h3 = cluster.add_host()
    h3.start_agent(ttl=5)
    hosts = [h1, h2, h3]
    t0 = time.monotonic()
    for h in hosts:
        wait_until(f"{h.name} converged", lambda h=h: peers_seen(h, [o for o in hosts if o is not h]), timeout=20)
    print(f"after etcd came back, 3 hosts converged in {time.monotonic() - t0:.2f} s")
    _c3, ip3 = h3.add_container()
    assert ping(c1, ip3) and ping(c2, ip3) and ping(_c3, ip1)
    assert len({h.wait_subnet().subnet for h in hosts}) == 3


def test_sigterm_exits_cleanly_while_etcd_is_unreachable(cluster: Cluster) -> None:
    cluster.etcd.stop()
    h1 = cluster.add_host()
    h1.start_agent()
    wait_until("a retry", lambda: "retrying" in h1.log.read_text(), timeout=10)
    assert h1.stop_agent(signal.SIGTERM) == 0
    assert not h1.subnet_file.exists()


def test_running_agent_leases_its_subnet_again_when_its_key_is_deleted(cluster: Cluster) -> None:
    h1, h2 = cluster.add_host(), cluster.add_host()
    h1.start_agent()
    h2.start_agent()
    wait_until("both peers", lambda: peers_seen(h1, [h2]) and peers_seen(h2, [h1]))
    sub = h2.wait_subnet().subnet
    key = f"{sub.network_address}-{sub.prefixlen}"
    cluster.etcd.ctl("del", f"{PREFIX}/subnets/{key}")
    wait_until("the key back", lambda: key in cluster.etcd.subnets())
    assert cluster.etcd.subnets()[key]["PublicIP"] == h2.ip
    assert h2.wait_subnet().subnet == sub
    wait_until("h1 routes to h2 again", lambda: peers_seen(h1, [h2]))
