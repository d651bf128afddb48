"""ignite-bridge in routed mode ("mode": "routed"): no bridge, a /32 (/128) host route per address through
the attachment's own host veth, the gateway held by every host veth. On the real kernel, in throwaway
namespaces: traffic between containers, from the host, masquerade, port mappings, VM mode both ways,
CHECK, DEL leaving nothing, and more attachments than a bridge takes ports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bridgeenv import HostEnv, container_ip, routed_conf
from portmap_util import connect, serve, stop, wire_outside
from test_bridge_vm import start_guest, vm_iface

pytestmark = pytest.mark.privileged
BACKENDS = ["iptables", "nftables"]
BULK = str(Path(__file__).resolve().parent / "routed_bulk.py")


def host_routes(env: HostEnv, version: int = 4) -> list[str]:
    return [ln.strip() for ln in env.host_sh("ip", f"-{version}", "route", "show", "table", "all").splitlines()
            if "10.62." in ln or "fd00:62:" in ln]


def assert_nothing_left(env: HostEnv, *ips: str) -> None:
    assert not [n for n in env.links() if n.startswith("veth")], env.links()
    assert "ignite0" not in env.links()
    assert host_routes(env) == [] and host_routes(env, 6) == []
    assert not [ln for ln in env.rules().splitlines() if any(ip in ln for ip in ips)]
    assert env.leases("routednet") == []


def test_two_containers_reach_each_other_and_the_host_without_a_bridge(netns):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    c1, c2 = env.container(), env.container()
    r1, r2 = env.add(conf, "rt-a", c1), env.add(conf, "rt-b", c2)
    a1, a2 = container_ip(r1), container_ip(r2)
    veth1 = r1["interfaces"][0]["name"]

    assert [i["name"] for i in r1["interfaces"]] == [veth1, "eth0"] and veth1.startswith("veth")
    assert r1["ips"] == [{"address": f"{a1}/16", "gateway": "10.62.0.1", "interface": 1}]
    assert r1["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.62.0.1"}]
    assert "ignite0" not in env.links() and not [n for n in env.links() if "br" in n]
    assert f"{a1} dev {veth1} scope link" in env.host_sh("ip", "route")
    host_addrs = env.host_sh("ip", "-o", "addr", "show", "dev", veth1)
    assert "10.62.0.1/32" in host_addrs
    for key, want in (("conf/{}/proxy_arp", "1"), ("neigh/{}/proxy_delay", "0"), ("conf/{}/rp_filter", "1")):
        assert env.host_sh("cat", f"/proc/sys/net/ipv4/{key.format(veth1)}").strip() == want
    cont_routes = env.ns_sh(c1, "ip", "route")
    assert "default via 10.62.0.1 dev eth0 onlink" in cont_routes
    assert "10.62.0.0/16 via 10.62.0.1 dev eth0 onlink" in cont_routes
    assert "proto kernel" not in cont_routes, "no on-link prefix route: the container never ARPs for a peer"
    assert f"{a1}/16" in env.ns_sh(c1, "ip", "-o", "addr", "show", "eth0")

    assert env.ping(c1, a2) and env.ping(c2, a1), "containers reach each other through the host"
    assert env.ping(env.host, a1) and env.ping(c1, "10.62.0.1")
    neigh = env.ns_sh(c1, "ip", "neigh", "show", "dev", "eth0")
    assert a2 not in neigh and "10.62.0.1" in neigh, neigh
    env.run("CHECK", {**conf, "prevResult": r1}, "rt-a", c1).ok()
    env.run("DEL", {**conf, "prevResult": r1}, "rt-a", c1).ok()
    env.run("DEL", {**conf, "prevResult": r2}, "rt-b", c2).ok()
    assert_nothing_left(env, a1, a2)
    env.run("DEL", {**conf, "prevResult": r1}, "rt-a", c1).ok()  # idempotent


def test_dual_stack_routes_ipv6_through_the_host_veth(netns):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    conf["ipam"] = {"type": "ignite-ipam", "dataDir": env.data_dir,
                    "ranges": [[{"subnet": "10.62.0.0/24"}], [{"subnet": "fd00:62::/64"}]]}
    c1, c2 = env.container(), env.container()
    r1, r2 = env.add(conf, "ds-a", c1), env.add(conf, "ds-b", c2)
    v6a, v6b = container_ip(r1, 6), container_ip(r2, 6)
    veth1 = r1["interfaces"][0]["name"]
    assert f"{v6a} dev {veth1}" in env.host_sh("ip", "-6", "route")
    assert "fd00:62::1/128" in env.host_sh("ip", "-o", "addr", "show", "dev", veth1)
    assert "default via fd00:62::1 dev eth0" in env.ns_sh(c1, "ip", "-6", "route")
    assert env.ping(c1, v6b) and env.ping(c2, v6a) and env.ping(env.host, v6a)
    assert env.ping(c1, container_ip(r2))
    env.run("CHECK", {**conf, "prevResult": r1}, "ds-a", c1).ok()
    for cid, ns, r in (("ds-a", c1, r1), ("ds-b", c2, r2)):
        env.run("DEL", {**conf, "prevResult": r}, cid, ns).ok()
    assert_nothing_left(env, v6a, v6b)


def test_check_reports_a_deleted_host_route_and_a_proxy_arp_switched_off(netns):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    c1 = env.container()
    r1 = env.add(conf, "chk", c1)
    veth, ip = r1["interfaces"][0]["name"], container_ip(r1)
    env.host_sh("ip", "route", "del", f"{ip}/32", "dev", veth)
    res = env.run("CHECK", {**conf, "prevResult": r1}, "chk", c1)
    assert res.rc != 0 and f"host route to {ip}/32 dev {veth} is missing" in res.out["msg"], res.out
    env.host_sh("ip", "route", "add", f"{ip}/32", "dev", veth)
    env.run("CHECK", {**conf, "prevResult": r1}, "chk", c1).ok()
    env.host_sh("sysctl", "-qw", f"net.ipv4.conf.{veth}.proxy_arp=0")
    res = env.run("CHECK", {**conf, "prevResult": r1}, "chk", c1)
    assert res.rc != 0 and "proxy_arp is 0" in res.out["msg"] + res.out.get("details", ""), res.out
    env.host_sh("sysctl", "-qw", f"net.ipv4.conf.{veth}.proxy_arp=1")
    env.ns_sh(c1, "ip", "route", "del", "10.62.0.0/16")
    res = env.run("CHECK", {**conf, "prevResult": r1}, "chk", c1)
    assert res.rc != 0 and "10.62.0.0/16 via 10.62.0.1" in res.out["msg"] + res.out.get("details", ""), res.out


@pytest.mark.parametrize("backend", BACKENDS)
def test_masquerade_and_port_mappings_from_outside_host_localhost_and_containers(netns, backend):
    env = HostEnv(netns)
    outside, c1, c2 = env.spaces.new("cnit-out"), env.container(), env.container()
    wire_outside(env.host, outside)
    state = env.data_dir + "/state"
    conf = routed_conf(env.data_dir, ipMasq=True, backend=backend, stateDir=state,
                       runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                                                       {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]})
    plain = routed_conf(env.data_dir, ipMasq=True, backend=backend, stateDir=state)
    r1, r2 = env.add(conf, "web", c1), env.add(plain, "other", c2)
    ip1, ip2 = container_ip(r1), container_ip(r2)
    veth1 = r1["interfaces"][0]["name"]
    assert env.host_sh("cat", f"/proc/sys/net/ipv4/conf/{veth1}/route_localnet").strip() == "1"
    tcp, udp = serve(c1, "tcp", "0.0.0.0", 80, "web"), serve(c1, "udp", "0.0.0.0", 53)
    out = serve(outside, "tcp", "192.0.2.2", 7000)
    try:
        assert connect(c2, "tcp", "192.0.2.2", 7000) == "hello peer=192.0.2.1", "masquerade to the outside"
        assert connect(outside, "tcp", "192.0.2.1", 8080).startswith("web peer=192.0.2.2")
        assert connect(outside, "udp", "192.0.2.1", 5353) == "echo:ping"
        assert connect(env.host, "tcp", "192.0.2.1", 8080).startswith("web")
        assert connect(env.host, "tcp", "127.0.0.1", 8080).startswith("web")
        assert connect(env.host, "udp", "10.62.0.1", 5353) == "echo:ping"
        assert connect(c2, "tcp", "192.0.2.1", 8080).startswith("web"), "another container via the host"
        assert connect(c2, "tcp", "10.62.0.1", 8080).startswith("web"), "another container via its gateway"
        assert connect(c1, "tcp", "10.62.0.1", 8080).startswith("web"), "hairpin to its own mapped port"
        assert connect(c2, "tcp", ip1, 80) == f"web peer={ip2}", "container to container is not masqueraded"
    finally:
        for proc in (tcp, udp, out):
            stop(proc)
    env.run("CHECK", {**conf, "prevResult": r1}, "web", c1).ok()
    env.run("DEL", {**plain, "prevResult": r1}, "web", c1).ok()
    env.run("DEL", {**plain, "prevResult": r2}, "other", c2).ok()
    assert_nothing_left(env, ip1, ip2)
    assert "8080" not in env.rules()


@pytest.mark.parametrize("mode", ["tc-redirect", "bridge"])
def test_vm_guest_is_reachable_from_host_and_other_containers(netns, mode):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir, vm={"mode": mode})
    vm_ns, other = env.container(), env.container()
    result = env.add(conf, "vm-1", vm_ns)
    idx, pseudo = vm_iface(result, "vm-1")
    assert idx == 3 and result["interfaces"][2]["name"] == "tap0"
    vm_ips = [ip for ip in result["ips"] if ip["interface"] == idx]
    assert len(vm_ips) == 1 and vm_ips[0]["gateway"] == "10.62.0.1", result  # vmconf's ip= needs it in the mask
    vm_ip = container_ip(result)
    guest = start_guest(vm_ns, "tap0", pseudo["mac"], vm_ip)
    try:
        r2 = env.add(routed_conf(env.data_dir), "ctr-2", other)
        assert env.ping(other, vm_ip, 2), "another container cannot reach the VM"
        assert env.ping(env.host, vm_ip, 2), "the host cannot reach the VM"
    finally:
        guest.kill()
        out = guest.communicate()[0]
    assert "answered icmp" in out, out
    env.run("CHECK", {**conf, "prevResult": result}, "vm-1", vm_ns).ok()
    env.run("DEL", {**conf, "prevResult": result}, "vm-1", vm_ns).ok()
    env.run("DEL", {**routed_conf(env.data_dir), "prevResult": r2}, "ctr-2", other).ok()
    assert "tap0" not in env.ns_sh(vm_ns, "ip", "-o", "link")
    assert_nothing_left(env, vm_ip)


def test_a_subnet_the_host_already_routes_is_refused_and_nothing_is_left(netns):
    """A bridge network on 10.61.0.0/16 and a routed network configured onto the same subnet."""
    env = HostEnv(netns)
    from bridgeenv import base_conf

    env.add(base_conf(env.data_dir), "bridged", env.container())  # 10.61.0.1/16 on ignite0
    conf = routed_conf(env.data_dir)
    conf["ipam"]["subnet"] = "10.61.0.0/16"
    res = env.run("ADD", conf, "clash", env.container())
    assert res.out["code"] == 7 and "already routed by the host (10.61.0.0/16 dev ignite0)" in res.out["msg"], res.out
    assert env.leases("routednet") == []
    assert len([n for n in env.links() if n.startswith("veth")]) == 1
    env.host_sh("ip", "route", "add", "blackhole", "10.62.0.0/16")  # advisable, and not an overlap
    ok = env.add(routed_conf(env.data_dir), "fine", env.container())
    assert env.ping(env.host, container_ip(ok))


@pytest.mark.parametrize("bad", [{"vlan": 10}, {"hairpinMode": True}, {"macspoofchk": True}, {"isGateway": False},
                                 {"bridge": "br9"}, {"mode": "l3"}])
def test_bridge_keys_in_routed_mode_are_refused_before_anything_is_made(netns, bad: dict[str, Any]):
    env = HostEnv(netns)
    res = env.run("ADD", routed_conf(env.data_dir, **bad), "bad", env.container())
    assert res.rc != 0 and res.out["code"] == 7, res.out
    assert env.leases("routednet") == [] and not [n for n in env.links() if n.startswith("veth")]


def test_failed_add_rolls_back_routes_addresses_and_the_lease(netns):
    """A port already taken makes the firewall step fail after the host routes were made."""
    env = HostEnv(netns)
    state = env.data_dir + "/state"
    mapping = {"portMappings": [{"hostPort": 9090, "containerPort": 80, "protocol": "tcp"}]}
    conf = routed_conf(env.data_dir, ipMasq=True, stateDir=state, runtimeConfig=mapping)
    first = env.add(conf, "first", env.container())
    second = env.run("ADD", conf, "second", env.container())
    assert second.rc != 0 and "9090" in second.out["msg"] + second.out.get("details", "")
    assert len(env.leases("routednet")) == 1
    veth = first["interfaces"][0]["name"]
    assert [r for r in host_routes(env) if "table local" not in r] == [f"{container_ip(first)} dev {veth} scope link"]
    assert len([n for n in env.links() if n.startswith("veth")]) == 1


def test_gc_removes_the_rules_and_leases_of_attachments_that_are_gone(netns):
    env = HostEnv(netns)
    state = env.data_dir + "/state"
    conf = routed_conf(env.data_dir, ipMasq=True, stateDir=state, cniVersion="1.1.0")
    c1, c2 = env.container(), env.container()
    r1, r2 = env.add(conf, "keep", c1), env.add(conf, "lost", c2)
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    env.run("GC", gc, "", None).ok()
    assert env.leases("routednet") == [container_ip(r1)]
    assert container_ip(r2) not in env.rules() and container_ip(r1) in env.rules()
    env.run("STATUS", conf, "", None).ok()


def test_more_attachments_than_a_bridge_has_ports(netns):
    """1,100 attachments in one host namespace (a bridge stops at 1,024 ports), one container namespace each
    (strict rp_filter wants a container's packets to leave by their own veth), made in-process by
    routed_bulk.py (the plugin's own ADD and DEL, without 2,200 process starts); then one more through the
    executable, timed against the first one; then all deleted: nothing left."""
    env = HostEnv(netns)
    count = 1100
    spaces = [env.container() for _ in range(count)]
    conf = routed_conf(env.data_dir)
    t0 = time.monotonic()
    env.add(conf, "exe-first", env.container())
    exe_first = time.monotonic() - t0
    added = bulk(env, "add", spaces)
    assert added["count"] == count and len(set(added["ips"])) == count
    assert len([r for r in host_routes(env) if "table local" not in r]) == count + 1
    first, last = added["ips"][0], added["ips"][-1]
    assert env.ping(spaces[0], last) and env.ping(spaces[-1], first) and env.ping(env.host, last)
    extra = env.container()
    t0 = time.monotonic()
    r_last = env.add(conf, "exe-last", extra)
    exe_last = time.monotonic() - t0
    assert env.ping(extra, first)
    env.run("CHECK", {**conf, "prevResult": r_last}, "exe-last", extra).ok()
    env.run("DEL", {**conf, "prevResult": r_last}, "exe-last", extra).ok()
    deleted = bulk(env, "del", spaces)
    print(f"\nrouted x{count}: in-process ADD median of the first 50 {added['first_ms']} ms, of the last 50 "
          f"{added['last_ms']} ms (all {added['total_s']} s); DEL {deleted['first_ms']} / {deleted['last_ms']} ms "
          f"(all {deleted['total_s']} s); executable ADD: 1st attachment {exe_first * 1000:.0f} ms, "
          f"{count + 2}th {exe_last * 1000:.0f} ms")
    assert added["last_ms"] < 2 * added["first_ms"] + 5, added  # nothing on the ADD path grows with the count
    assert deleted["last_ms"] < 2 * deleted["first_ms"] + 5, deleted
    assert len([r for r in host_routes(env) if "table local" not in r]) == 1  # exe-first's only
    assert len(env.leases("routednet")) == 1
    assert len([n for n in env.links() if n.startswith("veth")]) == 1


def bulk(env: HostEnv, verb: str, spaces: list[str]) -> dict[str, Any]:
    res = subprocess.run(["ip", "netns", "exec", env.host, sys.executable, BULK, verb, env.data_dir, *spaces],
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def shipped(name: str, data_dir: str) -> dict[str, Any]:
    """A conflist of conf/ as its single plugin's config, the paths moved into the test's temp folder."""
    doc = json.loads((Path(__file__).resolve().parents[2] / "conf" / name).read_text())
    conf = {"cniVersion": "1.0.0", "name": doc["name"], **doc["plugins"][0]}
    conf.pop("capabilities")
    conf["ipam"] = {**conf["ipam"], "dataDir": data_dir}
    return {**conf, "stateDir": f"{data_dir}/ignite-state"}


def test_shipped_bridge_and_routed_networks_coexist_on_one_host(netns):
    env = HostEnv(netns)
    outside = env.spaces.new("cnit-out")
    wire_outside(env.host, outside)
    bridged, routed = shipped("10-ignite.conflist", env.data_dir), shipped("20-ignite-routed.conflist", env.data_dir)
    assert bridged["name"] != routed["name"] and routed["mode"] == "routed"
    b_ns, r_ns = env.container(), env.container()
    rb, rr = env.add(bridged, "on-bridge", b_ns), env.add(routed, "on-routes", r_ns)
    ip_b, ip_r = container_ip(rb), container_ip(rr)
    assert ip_b.startswith("10.61.") and ip_r.startswith("10.62.")
    assert env.ping(b_ns, ip_r) and env.ping(r_ns, ip_b) and env.ping(env.host, ip_r)
    server = serve(outside, "tcp", "192.0.2.2", 7000)
    try:
        assert connect(r_ns, "tcp", "192.0.2.2", 7000) == "hello peer=192.0.2.1"
    finally:
        stop(server)
    env.run("DEL", {**routed, "prevResult": rr}, "on-routes", r_ns).ok()
    env.run("DEL", {**bridged, "prevResult": rb}, "on-bridge", b_ns).ok()
    assert host_routes(env) == [] and env.leases("ignite-cni-routed") == [] and env.leases("ignite-cni-bridge") == []
    assert ip_r not in env.rules()


def test_a_stack_that_believes_the_subnet_on_link_is_answered_by_proxy_arp_at_once(netns):
    """A guest configured with the subnet's netmask ARPs for its peers: the host veth answers for any
    address it routes through another veth, without the proxy delay (up to 0.8 s by default)."""
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    c1, c2 = env.container(), env.container()
    r1, r2 = env.add(conf, "arp-a", c1), env.add(conf, "arp-b", c2)
    a2 = container_ip(r2)
    env.ns_sh(c1, "ip", "route", "add", f"{a2}/32", "dev", "eth0")  # on-link, as a /16 netmask would make it
    t0 = time.monotonic()
    assert env.ping(c1, a2)
    assert time.monotonic() - t0 < 0.5
    host_mac = r1["interfaces"][0]["mac"]
    assert f"{a2} lladdr {host_mac}" in env.ns_sh(c1, "ip", "neigh", "show", "dev", "eth0")


def test_del_after_the_namespace_is_gone_removes_routes_rules_and_lease(netns):
    env = HostEnv(netns)
    state = env.data_dir + "/state"
    conf = routed_conf(env.data_dir, ipMasq=True, stateDir=state,
                       runtimeConfig={"portMappings": [{"hostPort": 8084, "containerPort": 80, "protocol": "tcp"}]})
    c1 = env.container()
    result = env.add(conf, "gone", c1)
    ip = container_ip(result)
    env.spaces.made.remove(c1)
    subprocess.run(["ip", "netns", "del", c1], check=True)
    plain = routed_conf(env.data_dir, ipMasq=True, stateDir=state)
    env.run("DEL", plain, "gone", c1).ok()
    assert_nothing_left(env, ip)
    assert "8084" not in env.rules()
