"""A host running the real flanneld (vxlan backend, etcd, no kube) joins the network of hosts running our agent.

Three hosts on one underlay with a real etcd (multinode.Cluster): host1 runs flanneld (inside its namespace, started
and stopped by PID, subnet file in the test's temp folder), host2 and host3 run `cni-ignite node`. All share etcd
prefix /coreos.com/network and the one config there. A container on host1 is attached by OUR plugins with the
shipped multi-node conflist, reading the subnet.env flanneld wrote; it reaches containers on host2 and host3 and
back (ping, TCP) on their own addresses; each side programmed the other's route, neighbour and FDB entry.

flanneld is found at $FLANNELD or build/flannel/flanneld (tools/build-flanneld.sh builds it offline from a flannel
tree that vendors its deps, e.g. v0.20.2; see tests/node/FLANNEL-INTEROP.md). Without one those tests skip: CI's
fresh machines have no flannel source. The tests without `needs_flanneld` reproduce what the real flanneld wrote
(captured here) and run everywhere: they guard the fixes this interop found.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cnirun import call
from flannelbin import SKIP_FLANNEL_CNI, SKIP_FLANNELD, flanneld
from multinode import OUTSIDE_ADDR, PREFIX, ping, tcp_roundtrip, wait_until
from nsutil import in_ns, path
from test_node_flannel import plugin_dir

if TYPE_CHECKING:
    from multinode import Cluster, Host

pytestmark = pytest.mark.privileged

FLANNELD = flanneld()
needs_flanneld = pytest.mark.skipif(FLANNELD is None, reason=SKIP_FLANNELD)


def start_flanneld(host: Host, *extra: str) -> None:
    """flanneld in the host's namespace, as host.proc (so Cluster.stop kills it by PID and its log is printed)."""
    assert FLANNELD is not None
    argv = ["ip", "netns", "exec", host.ns, str(FLANNELD), f"--etcd-endpoints={host.cluster.etcd.url}",
            f"--etcd-prefix={PREFIX}", "--iface=eth0", f"--subnet-file={host.subnet_file}", "--ip-masq",
            "--healthz-port=0", "-v=1", *extra]
    with host.log.open("ab") as out:
        host.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def vxlan_peers(host: Host, dev: str = "flannel.1") -> dict[str, tuple[str, str, str]]:
    """Per peer subnet on the VXLAN device, whoever programmed it: subnet -> (route gateway, neighbour MAC of that
    gateway, FDB remote of that MAC). Empty strings where a piece is missing."""
    routes = json.loads(host.sh("ip", "-j", "-4", "route", "show", "dev", dev, check=False) or "[]")
    neigh = {n["dst"]: n.get("lladdr", "") for n in
             json.loads(host.sh("ip", "-j", "-4", "neigh", "show", "dev", dev, check=False) or "[]")}
    fdb = {f["mac"]: f.get("dst", "") for f in
           json.loads(host.sh("bridge", "-j", "fdb", "show", "dev", dev, check=False) or "[]") if f.get("dst")}
    found = {}
    for r in routes:
        gw = r.get("gateway", "")
        if "onlink" in r.get("flags", []) and "/" in r["dst"]:
            mac = neigh.get(gw, "")
            found[r["dst"]] = (gw, mac, fdb.get(mac, ""))
    return found


def leases(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return cluster.etcd.subnets()


def meshed(hosts: list[Host], cluster: Cluster) -> bool:
    """Every host has route + neighbour + FDB to every other host's lease, matching etcd's values."""
    values = leases(cluster)
    if len(values) != len(hosts):
        return False
    by_ip = {v["PublicIP"]: (k, v) for k, v in values.items()}
    for h in hosts:
        want = {}
        for o in hosts:
            if o is h or o.ip not in by_ip:
                continue
            key, v = by_ip[o.ip]
            net = ipaddress.IPv4Network(key.split("&")[0].replace("-", "/"))
            want[str(net)] = (str(net.network_address), v["BackendData"]["VtepMAC"], o.ip)
        if vxlan_peers(h) != want:
            return False
    return True


HAND_CONFIG = '{"Network": "10.62.0.0/16", "Backend": {"Type": "vxlan"}}'


def lease_id(cluster: Cluster, key: str) -> str:
    out = cluster.etcd.ctl("get", key, "-w", "json").stdout
    return format(json.loads(out)["kvs"][0]["lease"], "x")


@needs_flanneld
@pytest.mark.parametrize("first", ["flanneld", "agent"])
def test_flanneld_host_joins_our_agents_network(cluster: Cluster, first: str) -> None:
    a, b, c = (cluster.add_host() for _ in range(3))
    agent_ttl = 4
    for h in (a, b, c):  # Docker-like hosts: flanneld sets its policy to ACCEPT, our agents add forward rules
        h.sh("iptables", "-w", "-P", "FORWARD", "DROP")
    if first == "flanneld":
        # flanneld never writes the config: its admin does (flannel's docs), minimal, and our agents adopt it
        cluster.etcd.ctl("put", f"{PREFIX}/config", HAND_CONFIG)
        start_flanneld(a)
        a.wait_subnet(timeout=30)
        # one at a time: flanneld v0.20 re-opens its etcd watch after each event "from now" and so misses a
        # lease written in that gap (fixed in flannel v0.21.3; FLANNEL-INTEROP.md)
        for h in (b, c):
            h.start_agent(ttl=agent_ttl)
            subnet = str(h.wait_subnet().subnet)
            wait_until(f"flanneld to program {h.name}", lambda subnet=subnet: subnet in vxlan_peers(a), 15)
    else:
        for h in (b, c):
            h.start_agent(ttl=agent_ttl)
        b.wait_subnet()
        c.wait_subnet()
        start_flanneld(a)
    network = "10.62.0.0/16" if first == "flanneld" else "10.61.0.0/16"
    subnets = {h.name: h.wait_subnet(timeout=30) for h in (a, b, c)}
    for s in subnets.values():
        assert str(s.network) == network
        assert s.subnet.prefixlen == 24 and s.mtu == 1450
    assert len({s.subnet for s in subnets.values()}) == 3
    text = a.subnet_file.read_text()
    print(f"flanneld's subnet file:\n{text}flanneld's lease: {cluster.etcd.get_prefix(f'{PREFIX}/subnets/')}")
    if first == "flanneld":  # adopted, not rewritten
        assert cluster.etcd.get_prefix(f"{PREFIX}/config") == {f"{PREFIX}/config": HAND_CONFIG}
    assert f"FLANNEL_NETWORK={network}\n" in text and "FLANNEL_IPMASQ=true\n" in text, text

    # flanneld's lease: key and value in the format our agents parse; its device as ours (flannel.1, .0/32)
    values = leases(cluster)
    a_key = f"{subnets['host1'].subnet.network_address}-24"
    a_mac = json.loads(a.sh("ip", "-j", "link", "show", "flannel.1"))[0]["address"]
    assert values[a_key]["PublicIP"] == a.ip and values[a_key]["BackendType"] == "vxlan"
    assert values[a_key]["BackendData"] == {"VNI": 1, "VtepMAC": a_mac}
    addr = json.loads(a.sh("ip", "-j", "-4", "addr", "show", "dev", "flannel.1"))[0]["addr_info"][0]
    assert (addr["local"], addr["prefixlen"]) == (str(subnets["host1"].subnet.network_address), 32)

    # flanneld programmed ours on host1, our agents programmed flanneld's on host2 and host3
    wait_until("route + neighbour + FDB from every host to every other", lambda: meshed([a, b, c], cluster), 30)

    # a container on host1, networked by OUR plugins from flanneld's subnet.env, and one on each agent host
    (ca, ipa), (cb, ipb), (cc, ipc) = a.add_container(), b.add_container(), c.add_container()
    assert ipaddress.IPv4Address(ipa) in subnets["host1"].subnet
    for src, dst_ip in ((ca, ipb), (ca, ipc), (cb, ipa), (cc, ipa), (cb, ipc)):
        assert ping(src, dst_ip, count=2), f"{src} cannot ping {dst_ip}"
    # TCP both ways across the flanneld host, source addresses kept (no masquerade inside the network)
    for (src, src_ip), (dst, dst_ip) in (((ca, ipa), (cb, ipb)), ((cc, ipc), (ca, ipa)), ((ca, ipa), (cc, ipc))):
        out = tcp_roundtrip(src, dst, dst_ip)
        assert out.startswith(f"echo from {dst_ip} to {src_ip}: xxx"), out
    # host1 itself reaches a container on host3 directly
    assert ping(a.ns, ipc)
    # leaving the network from host1: flanneld's --ip-masq rules masquerade (our plugin's ipMasq is false)
    outside = cluster.add_outside()
    out = tcp_roundtrip(ca, outside, OUTSIDE_ADDR)
    assert out.startswith(f"echo from {OUTSIDE_ADDR} to {a.ip}: xxx"), out

    # host3 leaves (agent stopped, its lease expires after our short TTL): flanneld drops it from host1
    gone = str(subnets["host3"].subnet)
    assert c.stop_agent() == 0
    t0 = time.monotonic()
    wait_until("flanneld to drop host3", lambda: gone not in vxlan_peers(a), timeout=agent_ttl + 10)
    print(f"flanneld removed the expired lease in {time.monotonic() - t0:.1f} s (TTL {agent_ttl} s)")
    assert not any(mac == "" or remote == c.ip for _gw, mac, remote in vxlan_peers(a).values())
    assert ping(ca, ipb)

    # host1's flanneld stops: its data plane stays (as ours); flannel's lease TTL is a 24 h constant (subnetTTL,
    # no flag), so its expiry is produced by revoking the lease it holds: host2 forgets host1
    assert a.stop_agent(signal.SIGTERM) is not None
    assert ping(ca, ipb)
    cluster.etcd.ctl("lease", "revoke", lease_id(cluster, f"{PREFIX}/subnets/{a_key}"))
    gone = str(subnets["host1"].subnet)
    wait_until("host2 to drop host1", lambda: gone not in vxlan_peers(b), timeout=10)
    assert not b.routes() and not b.neighbours() and not b.fdb()
    assert not ping(cb, ipa, wait=1)


@needs_flanneld
def test_a_host_switches_between_flanneld_and_our_agent_and_keeps_its_subnet(cluster: Cluster) -> None:
    a, b = cluster.add_host(), cluster.add_host()
    b.start_agent()
    b.wait_subnet()
    start_flanneld(a)
    subnet = a.wait_subnet(timeout=30).subnet
    wait_until("meshed", lambda: meshed([a, b], cluster), 30)
    (ca, ipa), (cb, ipb) = a.add_container(), b.add_container()
    assert ping(ca, ipb)

    # flanneld -> our agent, same subnet file: our agent reclaims flanneld's lease (same PublicIP) and device
    mac = json.loads(a.sh("ip", "-j", "link", "show", "flannel.1"))[0]["address"]
    flanneld_lease = lease_id(cluster, f"{PREFIX}/subnets/{subnet.network_address}-24")
    a.stop_agent()
    assert ping(ca, ipb)  # the data plane stayed
    a.start_agent()
    wait_until("our agent to reclaim", lambda: "reclaimed" in a.log.read_text(), 15)
    assert a.wait_subnet().subnet == subnet
    assert json.loads(a.sh("ip", "-j", "link", "show", "flannel.1"))[0]["address"] == mac
    wait_until("meshed", lambda: meshed([a, b], cluster), 15)
    assert ping(ca, ipb) and ping(cb, ipa)
    # flanneld's 24 h lease was replaced by ours and revoked (it does not linger)
    key = f"{PREFIX}/subnets/{subnet.network_address}-24"
    assert lease_id(cluster, key) != flanneld_lease
    assert "already expired" in cluster.etcd.ctl("lease", "timetolive", flanneld_lease).stdout.decode()

    # our agent -> flanneld again: flanneld finds the lease with its PublicIP and keeps the subnet
    assert a.stop_agent() == 0
    start_flanneld(a)
    wait_until("flanneld to reuse the lease", lambda: "reusing" in a.log.read_text().rsplit("CLI flags", 1)[-1], 30)
    assert a.wait_subnet().subnet == subnet
    wait_until("meshed", lambda: meshed([a, b], cluster), 15)
    out = tcp_roundtrip(cb, ca, ipa)
    assert out.startswith(f"echo from {ipa} to {ipb}: xxx"), out


@needs_flanneld
def test_flannels_cni_plugin_on_the_flanneld_host_delegates_to_ignite_bridge(cluster: Cluster,
                                                                             flannel_plugin: Path | None) -> None:
    """Ignite's Flannel setup (tools/ignite-flannel.sh) with ignite-bridge as the delegate, on a real flanneld's
    subnet.env: flannel's own CNI plugin renders the delegate config, ignite-bridge + ignite-ipam attach the VM."""
    if flannel_plugin is None:
        pytest.skip(SKIP_FLANNEL_CNI)
    a, b = cluster.add_host(), cluster.add_host()
    b.start_agent()
    start_flanneld(a)
    env = a.wait_subnet(timeout=30)
    wait_until("meshed", lambda: meshed([a, b], cluster), 30)
    cb, ipb = b.add_container()
    conf = {"cniVersion": "0.4.0", "name": "cbr0", "type": "flannel", "subnetFile": str(a.subnet_file),
            "dataDir": str(a.state / "flannel"),
            "delegate": {"type": "ignite-bridge", "hairpinMode": True, "isDefaultGateway": True,
                         "stateDir": str(a.state / "bridge-state")},
            "ipam": {"type": "ignite-ipam", "dataDir": str(a.state / "ipam")}}
    ctr = cluster.spaces.new("cnit-ctr")
    cni_path = plugin_dir(a.state, flannel_plugin)
    res = call(Path(cni_path) / "flannel", "ADD", conf, host_ns=a.ns, container_id="vm-1", netns=path(ctr),
               cni_path=cni_path).ok()
    assert res.out is not None
    ipa = res.out["ips"][0]["address"].split("/")[0]
    assert ipaddress.IPv4Address(ipa) in env.subnet
    link = json.loads(in_ns(ctr, ["ip", "-j", "link", "show", "eth0"]).stdout)[0]
    assert link["mtu"] == env.mtu == 1450  # FLANNEL_MTU through flannel's delegate config
    delegate = json.loads((a.state / "flannel" / "vm-1").read_text())
    assert delegate["ipMasq"] is False  # flanneld --ip-masq: FLANNEL_IPMASQ=true, so the delegate does not
    assert ping(ctr, ipb) and ping(cb, ipa)
    out = tcp_roundtrip(cb, ctr, ipa)
    assert out.startswith(f"echo from {ipa} to {ipb}: xxx"), out
    call(Path(cni_path) / "flannel", "DEL", conf, host_ns=a.ns, container_id="vm-1", netns=path(ctr),
         cni_path=cni_path).ok()
    assert not (a.state / "flannel" / "vm-1").exists()
    assert not [p for p in (a.state / "ipam" / "cbr0").iterdir() if p.name[0].isdigit()]


# What a dual-stack flanneld v0.20.2 wrote (EnableIPv6, IPv6Network fd62::/56), captured from the real run below:
DUAL_CONFIG = ('{"EnableIPv6": true, "Network": "10.62.0.0/16", "IPv6Network": "fd62::/56", '
               '"Backend": {"Type": "vxlan"}}')
DUAL_KEY = "10.62.50.0-24&fd62:0:0:39::-64"
DUAL_VALUE = ('{"PublicIP":"192.168.61.11","PublicIPv6":"fd61::11","BackendType":"vxlan","BackendData":{"VNI":1,'
              '"VtepMAC":"16:dd:07:d3:81:85"},"BackendV6Data":{"VNI":1,"VtepMAC":"1a:da:9d:51:79:09"}}')


def test_our_agent_takes_a_dual_stack_flanneld_lease_as_a_peer(cluster: Cluster) -> None:
    """No flanneld needed: its lease as it wrote it. Our IPv4 agent routes to the IPv4 half, and never leases the
    same IPv4 subnet (before the fix it skipped such keys: no route, and the subnet counted as free)."""
    cluster.etcd.ctl("put", f"{PREFIX}/config", DUAL_CONFIG.replace('"Backend"', '"SubnetMin": "10.62.50.0", '
                                                                    '"SubnetMax": "10.62.51.0", "Backend"'))
    # from a host that is not one of ours (the captured one was host1's address: our host1 would reclaim it)
    cluster.etcd.ctl("put", f"{PREFIX}/subnets/{DUAL_KEY}", DUAL_VALUE.replace("192.168.61.11", "192.168.61.99"))
    hosts = [cluster.add_host() for _ in range(2)]
    for h in hosts:
        h.start_agent()
    # SubnetMin..SubnetMax holds two /24s; 10.62.50.0 is flanneld's: one of us gets 10.62.51.0, the other none
    def tried(h: Host) -> bool:
        text = h.log.read_text() if h.log.exists() else ""
        return "leased" in text or "no free" in text

    wait_until("both agents to try", lambda: all(tried(h) for h in hosts), 15)
    subnets = [str(h.wait_subnet().subnet) for h in hosts if h.subnet_file.exists()]
    assert subnets == ["10.62.51.0/24"], subnets
    host = next(h for h in hosts if h.subnet_file.exists())
    want = {"10.62.50.0/24": ("10.62.50.0", "16:dd:07:d3:81:85", "192.168.61.99")}
    wait_until("a route, neighbour and FDB entry to the dual-stack lease", lambda: vxlan_peers(host) == want, 10)
    cluster.etcd.ctl("del", f"{PREFIX}/subnets/{DUAL_KEY}")
    wait_until("the dual-stack peer to go", lambda: not vxlan_peers(host), 10)


@needs_flanneld
def test_dual_stack_flanneld_joins_our_agents_ipv4_network(cluster: Cluster) -> None:
    a, b = cluster.add_host(), cluster.add_host()
    cluster.etcd.ctl("put", f"{PREFIX}/config", DUAL_CONFIG)
    a.sh("ip", "addr", "add", "fd61::11/64", "dev", "eth0", "nodad")
    start_flanneld(a)
    text = (a.wait_subnet(timeout=30), a.subnet_file.read_text())[1]
    assert "FLANNEL_IPV6_SUBNET=" in text, text
    b.start_agent()
    keys = [k.rsplit("/", 1)[1] for k in cluster.etcd.get_prefix(f"{PREFIX}/subnets/")]
    assert any("&" in k for k in keys), keys  # flanneld's dual-stack key
    wait_until("meshed", lambda: meshed([a, b], cluster), 30)
    (ca, ipa), (cb, ipb) = a.add_container(), b.add_container()  # our plugins: the IPv4 half of flanneld's file
    assert ping(ca, ipb) and ping(cb, ipa)
    out = tcp_roundtrip(cb, ca, ipa)
    assert out.startswith(f"echo from {ipa} to {ipb}: xxx"), out


@needs_flanneld
@pytest.mark.parametrize("cluster", ["host-gw"], indirect=True)
def test_flanneld_host_gw_joins_our_agents_host_gw_network(cluster: Cluster) -> None:
    a, b, c = (cluster.add_host() for _ in range(3))
    for h in (b, c):
        h.start_agent()  # our agent writes {"Backend": {"Type": "host-gw"}}; flanneld adopts it
        h.wait_subnet()
    start_flanneld(a)
    subnets = {h.name: str(h.wait_subnet(timeout=30).subnet) for h in (a, b, c)}
    assert all(s.mtu == 1500 for s in (a.wait_subnet(), b.wait_subnet()))  # host-gw: the underlay's MTU
    lease = json.loads(cluster.etcd.get_prefix(f"{PREFIX}/subnets/")[f"{PREFIX}/subnets/"
                                                                      + subnets["host1"].replace("/", "-")])
    assert lease["PublicIP"] == a.ip and lease["BackendType"] == "host-gw"

    def routed(h: Host) -> dict[str, str]:
        return {r["dst"]: r.get("gateway", "") for r in json.loads(h.sh("ip", "-j", "-4", "route", "show", "dev",
                                                                        "eth0")) if r["dst"] in subnets.values()}

    for h in (a, b, c):
        want = {subnets[o.name]: o.ip for o in (a, b, c) if o is not h}
        wait_until(f"{h.name}'s routes via the peers' underlay addresses", lambda h=h, w=want: routed(h) == w, 30)
    (ca, ipa), (cb, ipb), (cc, ipc) = a.add_container(), b.add_container(), c.add_container()
    assert ping(ca, ipb) and ping(ca, ipc) and ping(cb, ipa) and ping(cc, ipa)
    out = tcp_roundtrip(cc, ca, ipa)
    assert out.startswith(f"echo from {ipa} to {ipc}: xxx"), out


DIRECT_CONFIG = '{"Network": "10.62.0.0/16", "Backend": {"Type": "vxlan", "DirectRouting": true}}'


def strict_rp_filter(h: Host) -> None:
    for conf in ("all", "default", "eth0"):
        h.sh("sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=1")


def direct_routes(h: Host, subnets: dict[str, str]) -> dict[str, str]:
    return {r["dst"]: r.get("gateway", "") for r in json.loads(h.sh("ip", "-j", "-4", "route", "show", "dev", "eth0"))
            if r["dst"] in subnets.values()}


def test_our_agent_routes_directly_with_flannels_direct_routing(cluster: Cluster) -> None:
    """No flanneld needed: vxlan with Backend.DirectRouting (as flanneld's admin writes it). Peers on the same
    underlay segment are routed via their underlay address, no VXLAN neighbour or FDB entry (flanneld does that;
    before, our agent encapsulated anyway: with a flanneld peer the paths were asymmetric and strict rp_filter
    dropped everything)."""
    cluster.etcd.ctl("put", f"{PREFIX}/config", DIRECT_CONFIG)
    hosts = [cluster.add_host() for _ in range(2)]
    for h in hosts:
        strict_rp_filter(h)
        h.start_agent()
    subnets = {h.name: str(h.wait_subnet().subnet) for h in hosts}
    for h in hosts:
        want = {subnets[o.name]: o.ip for o in hosts if o is not h}
        wait_until(f"{h.name}: direct routes", lambda h=h, w=want: direct_routes(h, subnets) == w, 15)
        assert not vxlan_peers(h) and not h.neighbours() and not h.fdb()
    (c1, ip1), (c2, ip2) = hosts[0].add_container(), hosts[1].add_container()
    assert ping(c1, ip2) and ping(c2, ip1)
    # a full reconcile (restart) keeps them as they are
    assert hosts[0].stop_agent() == 0
    hosts[0].start_agent()
    wait_until("reconciled", lambda: "reconciled 1 peer" in hosts[0].log.read_text())
    assert direct_routes(hosts[0], subnets) == {subnets["host2"]: hosts[1].ip}
    assert not hosts[0].neighbours() and not hosts[0].fdb()
    assert ping(c1, ip2)


@needs_flanneld
def test_flanneld_with_direct_routing_and_our_agent_take_the_same_path(cluster: Cluster) -> None:
    a, b = cluster.add_host(), cluster.add_host()
    cluster.etcd.ctl("put", f"{PREFIX}/config", DIRECT_CONFIG)
    for h in (a, b):
        strict_rp_filter(h)
    start_flanneld(a)
    b.start_agent()
    subnets = {h.name: str(h.wait_subnet(timeout=30).subnet) for h in (a, b)}
    wait_until("flanneld's direct route", lambda: direct_routes(a, subnets) == {subnets["host2"]: b.ip}, 30)
    wait_until("our direct route", lambda: direct_routes(b, subnets) == {subnets["host1"]: a.ip}, 15)
    (ca, ipa), (cb, ipb) = a.add_container(), b.add_container()
    assert ping(ca, ipb) and ping(cb, ipa)
    out = tcp_roundtrip(ca, cb, ipb)
    assert out.startswith(f"echo from {ipb} to {ipa}: xxx"), out
