"""Per-port kernel state that made ADD and DEL grow with the number of attachments (issue 14), on the real
kernel in throwaway namespaces:

- a bridge port (and an IPv4-only routed port) has IPv6 off: no link-local address and no fe80::/64 and
  ff00::/8 routes per port, which made every IPv6 packet the host received walk one route entry per port
  and every veth delete walk them all; IPv6 between containers is still bridged through such ports;
- an IPv6 routed port's link-local address skips DAD, so the host can solicit the container's address
  (which needs a link-local address that is not tentative) from the first forwarded packet on: the first
  IPv6 ping between two containers right after their ADDs crosses, instead of being lost for 1-2 s.
"""

from __future__ import annotations

from typing import Any

import pytest
from bridgeenv import HostEnv, base_conf, container_ip, routed_conf

pytestmark = pytest.mark.privileged


def dual_stack(conf: dict[str, Any], data_dir: str, v4: str, v6: str) -> dict[str, Any]:
    conf["ipam"] = {"type": "ignite-ipam", "dataDir": data_dir, "ranges": [[{"subnet": v4}], [{"subnet": v6}]]}
    return conf


def port_ipv6_routes(env: HostEnv) -> list[str]:
    """The host's IPv6 routes (all tables) through a veth: one fe80::/64 and one ff00::/8 per port if IPv6 is on."""
    return [ln for ln in env.host_sh("ip", "-6", "route", "show", "table", "all").splitlines() if " dev veth" in ln]


def ping1(env: HostEnv, ns: str, target: str) -> bool:
    """One echo request, one second: the first packet must cross."""
    return env.ns_sh(ns, "ping", "-c", "1", "-W", "1", target, check=False).count(" 0% packet loss") == 1


def test_bridge_ports_carry_no_ipv6_routes_and_still_bridge_ipv6(netns):
    env = HostEnv(netns)
    conf = dual_stack(base_conf(env.data_dir), env.data_dir, "10.61.0.0/24", "fd00:61::/64")
    spaces = [env.container() for _ in range(3)]
    results = [env.add(conf, f"dp-{i}", ns) for i, ns in enumerate(spaces)]
    ports = [r["interfaces"][1]["name"] for r in results]
    assert all(p.startswith("veth") for p in ports), ports

    assert port_ipv6_routes(env) == [], "a bridge port needs no IPv6 routes of its own"
    for port in ports:
        assert env.host_sh("cat", f"/proc/sys/net/ipv6/conf/{port}/disable_ipv6").strip() == "1"
        assert "inet6" not in env.host_sh("ip", "-6", "addr", "show", "dev", port)
    assert "fd00:61::1/64" in env.host_sh("ip", "-6", "addr", "show", "dev", "ignite0"), "the bridge keeps its gateway"
    v6 = [container_ip(r, 6) for r in results]
    assert env.ns_sh(spaces[0], "ping", "-c", "2", "-W", "2", v6[1], check=False).count(" 0% packet loss") == 1, \
        "IPv6 between containers is bridged through ports without IPv6"
    assert env.ping(spaces[2], v6[0]) and env.ping(spaces[1], container_ip(results[2]))
    assert env.ping(spaces[0], "fd00:61::1"), "the bridge's IPv6 gateway answers"
    for i, (ns, r) in enumerate(zip(spaces, results, strict=True)):
        env.run("DEL", {**conf, "prevResult": r}, f"dp-{i}", ns).ok()
    assert not [n for n in env.links() if n.startswith("veth")]


def test_an_ipv4_routed_port_carries_no_ipv6_routes(netns):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    c1, c2 = env.container(), env.container()
    r1, r2 = env.add(conf, "r4-a", c1), env.add(conf, "r4-b", c2)
    assert port_ipv6_routes(env) == []
    assert env.ping(c1, container_ip(r2)) and env.ping(env.host, container_ip(r1))
    env.run("CHECK", {**conf, "prevResult": r1}, "r4-a", c1).ok()
    for cid, ns, r in (("r4-a", c1, r1), ("r4-b", c2, r2)):
        env.run("DEL", {**conf, "prevResult": r}, cid, ns).ok()


@pytest.mark.parametrize("attempt", range(3))
def test_the_first_forwarded_ipv6_packet_after_a_routed_add_crosses(netns, attempt):
    env = HostEnv(netns)
    conf = dual_stack(routed_conf(env.data_dir), env.data_dir, "10.62.0.0/24", "fd00:62::/64")
    c1, c2 = env.container(), env.container()
    r1, r2 = env.add(conf, "f6-a", c1), env.add(conf, "f6-b", c2)
    assert ping1(env, c2, container_ip(r1, 6)), f"attempt {attempt}: the first IPv6 packet c2 -> c1 was lost"
    veth1 = r1["interfaces"][0]["name"]
    lladdr = env.host_sh("ip", "-6", "addr", "show", "dev", veth1, "scope", "link")
    assert "fe80::" in lladdr and "tentative" not in lladdr, lladdr
    assert ping1(env, c1, container_ip(r2, 6)) and ping1(env, c1, container_ip(r2))
    for cid, ns, r in (("f6-a", c1, r1), ("f6-b", c2, r2)):
        env.run("DEL", {**conf, "prevResult": r}, cid, ns).ok()
