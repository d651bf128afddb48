"""The per-interface sysctls the bridge plugin sets over rtnetlink (IPv4 devconf through IFLA_INET_CONF,
proxy_delay through RTM_SETNEIGHTBL) instead of /proc: after a real ADD the values are there, in the right
namespace and on the right interface only, and they act (the container announces itself by gratuitous ARP when
its interface comes up: arp_notify). The IPv6 ones, which the kernel does not take over rtnetlink, are still
set through /proc for an IPv6 attachment."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from bridgeenv import HostEnv, base_conf, container_ip, routed_conf

pytestmark = pytest.mark.privileged

# Prints "ready", then "garp" as soon as an ARP request for argv[2] from argv[2] (gratuitous) arrives on the
# interface argv[1], or "none" after 4 s.
SNIFF = r"""
import socket, sys, time
ifname, ip = sys.argv[1], socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL: a bridge port's frames too
s.bind((ifname, 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.monotonic() + 4
while time.monotonic() < end:
    try:
        frame = s.recv(2048)
    except TimeoutError:
        continue
    arp = frame[14:]
    is_arp_request = frame[12:14] == b"\x08\x06" and len(arp) >= 28 and arp[6:8] == b"\x00\x01"
    if is_arp_request and arp[14:18] == ip and arp[24:28] == ip:
        print("garp", flush=True)
        break
else:
    print("none", flush=True)
"""


def sysctl(env: HostEnv, ns: str, key: str) -> str:
    return env.ns_sh(ns, "cat", f"/proc/sys/net/{key}").strip()


def garp_on_up(env: HostEnv, cont: str, host_veth: str, ip: str) -> str:
    sniff = subprocess.Popen(["ip", "netns", "exec", env.host, sys.executable, "-c", SNIFF, host_veth, ip],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert sniff.stdout is not None and sniff.stdout.readline().strip() == "ready"
        env.ns_sh(cont, "ip", "link", "set", "eth0", "down")
        time.sleep(0.1)
        env.ns_sh(cont, "ip", "link", "set", "eth0", "up")
        return sniff.stdout.readline().strip()
    finally:
        sniff.kill()
        sniff.communicate()


@pytest.mark.parametrize("mode", ["bridge", "routed"])
def test_container_arp_notify_is_set_over_netlink_and_announces_the_container(netns, mode):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir) if mode == "routed" else base_conf(env.data_dir)
    c1 = env.container()
    other = env.container()  # a second namespace's eth0 keeps its default: the value went to c1's link only
    env.ns_sh(other, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    res = env.add(conf, "an-1", c1)
    # the host veth: the result lists the bridge first in bridge mode
    (veth,) = [i["name"] for i in res["interfaces"] if "sandbox" not in i and i["name"] != "ignite0"]
    ip = container_ip(res)
    assert sysctl(env, c1, "ipv4/conf/eth0/arp_notify") == "1"
    assert sysctl(env, other, "ipv4/conf/eth0/arp_notify") == "0"
    assert sysctl(env, env.host, "ipv4/conf/all/arp_notify") == "0"
    assert sysctl(env, c1, "ipv4/conf/default/arp_notify") == "0", "only the interface's own value"
    assert garp_on_up(env, c1, veth, ip) == "garp"
    env.run("DEL", {**conf, "prevResult": res}, "an-1", c1).ok()


def test_routed_host_veth_settings_are_set_per_interface_over_netlink(netns):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    env.host_sh("ip", "link", "add", "bystander", "type", "veth", "peer", "name", "bystander1")
    c1 = env.container()
    res = env.add(conf, "hv-1", c1)
    veth = res["interfaces"][0]["name"]
    for key, want in (("ipv4/conf/{}/proxy_arp", "1"), ("ipv4/conf/{}/rp_filter", "1"),
                      ("ipv4/neigh/{}/proxy_delay", "0")):
        assert sysctl(env, env.host, key.format(veth)) == want, key
    # per interface: the host's other links and its defaults keep theirs (proxy_delay's default is 80 ticks)
    assert [sysctl(env, env.host, f"ipv4/conf/bystander/{k}") for k in ("proxy_arp", "rp_filter")] == ["0", "0"]
    assert sysctl(env, env.host, "ipv4/neigh/bystander/proxy_delay") == sysctl(
        env, env.host, "ipv4/neigh/lo/proxy_delay") != "0"
    assert sysctl(env, env.host, "ipv4/conf/default/proxy_arp") == "0"
    # an IPv4-only port keeps IPv6 off (still /proc: the kernel takes no IPv6 devconf over rtnetlink)
    assert sysctl(env, env.host, f"ipv6/conf/{veth}/disable_ipv6") == "1"
    env.run("CHECK", {**conf, "prevResult": res}, "hv-1", c1).ok()
    env.run("DEL", {**conf, "prevResult": res}, "hv-1", c1).ok()


def test_ipv6_settings_still_go_through_proc_for_an_ipv6_attachment(netns):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    conf["ipam"] = {"type": "ignite-ipam", "dataDir": env.data_dir,
                    "ranges": [[{"subnet": "10.62.0.0/24"}], [{"subnet": "fd00:62::/64"}]]}
    c1 = env.container()
    env.ns_sh(c1, "sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1")
    res = env.add(conf, "v6-1", c1)
    veth = res["interfaces"][0]["name"]
    assert sysctl(env, c1, "ipv4/conf/eth0/arp_notify") == "1"
    assert [sysctl(env, c1, k) for k in ("ipv6/conf/lo/disable_ipv6", "ipv6/conf/eth0/disable_ipv6",
                                         "ipv6/conf/eth0/keep_addr_on_down")] == ["0", "0", "1"]
    assert [sysctl(env, env.host, f"ipv6/conf/{veth}/{k}") for k in ("disable_ipv6", "accept_dad", "accept_ra")] \
        == ["0", "0", "0"]
    assert env.ping(env.host, container_ip(res, 6))
    env.run("DEL", {**conf, "prevResult": res}, "v6-1", c1).ok()


def test_forwarding_is_read_over_netlink_and_switched_on_when_off(netns):
    env = HostEnv(netns)
    conf = routed_conf(env.data_dir)
    conf["ipam"] = {"type": "ignite-ipam", "dataDir": env.data_dir,
                    "ranges": [[{"subnet": "10.62.0.0/24"}], [{"subnet": "fd00:62::/64"}]]}
    assert [sysctl(env, env.host, k) for k in ("ipv4/ip_forward", "ipv6/conf/all/forwarding")] == ["0", "0"]
    c1, c2 = env.container(), env.container()
    r1 = env.add(conf, "fw-1", c1)
    assert [sysctl(env, env.host, k) for k in ("ipv4/ip_forward", "ipv6/conf/all/forwarding")] == ["1", "1"]
    r2 = env.add(conf, "fw-2", c2)  # on already: read, not written
    assert env.ping(c1, container_ip(r2)) and env.ping(c2, container_ip(r1, 6))
    for cid, c, r in (("fw-1", c1, r1), ("fw-2", c2, r2)):
        env.run("DEL", {**conf, "prevResult": r}, cid, c).ok()
