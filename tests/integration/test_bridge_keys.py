"""Each reference bridge config key, checked against the kernel."""

from __future__ import annotations

import pytest
from bridgeenv import HostEnv, base_conf, container_ip

pytestmark = pytest.mark.privileged


def host_veth(result: dict) -> str:
    return result["interfaces"][1]["name"]


def test_without_is_gateway_the_bridge_has_no_address_and_there_is_no_default_route(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, isGateway=False, isDefaultGateway=False)
    c1 = env.container()
    env.add(conf, "nogw", c1)
    assert "10.61.0.1" not in env.host_sh("ip", "-o", "addr", "show", "ignite0")
    assert "default" not in env.ns_sh(c1, "ip", "route")


def test_is_gateway_without_default_gateway_adds_no_default_route(netns):
    env = HostEnv(netns)
    c1 = env.container()
    env.add(base_conf(env.data_dir, isDefaultGateway=False), "gw-only", c1)
    assert "10.61.0.1/16" in env.host_sh("ip", "-o", "addr", "show", "ignite0")
    assert "default" not in env.ns_sh(c1, "ip", "route")
    assert env.host_sh("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"


def test_a_different_bridge_address_is_an_error_unless_force_address(netns):
    env = HostEnv(netns)
    env.host_sh("ip", "link", "add", "ignite0", "type", "bridge")
    env.host_sh("ip", "addr", "add", "10.99.9.1/24", "dev", "ignite0")
    res = env.run("ADD", base_conf(env.data_dir), "clash", env.container())
    assert res.rc != 0 and "already has an IP address" in res.out["msg"]
    assert env.leases() == [], "the failed ADD must release its lease"
    env.add(base_conf(env.data_dir, forceAddress=True), "forced", env.container())
    addrs = env.host_sh("ip", "-o", "-4", "addr", "show", "ignite0")
    assert "10.61.0.1/16" in addrs and "10.99.9.1" not in addrs


def test_mtu_applies_to_new_bridge_and_both_veth_ends(netns):
    env = HostEnv(netns)
    c1 = env.container()
    out = env.add(base_conf(env.data_dir, mtu=1400), "mtu", c1)
    assert env.host_sh("cat", "/sys/class/net/ignite0/mtu").strip() == "1400"
    assert env.host_sh("cat", f"/sys/class/net/{host_veth(out)}/mtu").strip() == "1400"
    assert env.ns_sh(c1, "cat", "/sys/class/net/eth0/mtu").strip() == "1400"


def test_hairpin_mode_and_port_isolation_are_set_on_the_host_port(netns):
    env = HostEnv(netns)
    out = env.add(base_conf(env.data_dir, promiscMode=False, hairpinMode=True, portIsolation=True), "hp",
                  env.container())
    info = env.host_sh("bridge", "-d", "link", "show", "dev", host_veth(out))
    assert "hairpin on" in info and "isolated on" in info


def test_promisc_mode_turns_promiscuity_on(netns):
    env = HostEnv(netns)
    env.add(base_conf(env.data_dir), "promisc", env.container())
    assert "PROMISC" in env.host_sh("ip", "link", "show", "ignite0")


def test_hairpin_with_promisc_is_an_invalid_config(netns):
    env = HostEnv(netns)
    res = env.run("ADD", base_conf(env.data_dir, hairpinMode=True), "bad", env.container())
    assert res.rc != 0 and res.out["code"] == 7


def test_bridge_mac_is_pinned_and_does_not_churn_when_ports_come_and_go(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    c1, c2 = env.container(), env.container()
    env.add(conf, "m1", c1)
    before = env.host_sh("cat", "/sys/class/net/ignite0/address").strip()
    env.add(conf, "m2", c2)
    env.run("DEL", conf, "m1", c1).ok()
    assert env.host_sh("cat", "/sys/class/net/ignite0/address").strip() == before


def vlan_filtering_supported(env: HostEnv) -> bool:
    probe = env.host_sh("ip", "link", "add", "vlanprobe0", "type", "bridge", "vlan_filtering", "1", check=False)
    ok = "vlanprobe0" in env.host_sh("ip", "-o", "link")
    env.host_sh("ip", "link", "del", "vlanprobe0", check=False)
    return ok and not probe


@pytest.mark.parametrize("preserve", [False, True])
def test_vlan_sets_pvid_untagged_and_removes_default_vlan_unless_preserved(netns, preserve):
    env = HostEnv(netns)
    if not vlan_filtering_supported(env):
        res = env.run("ADD", base_conf(env.data_dir, vlan=100), "vlan", env.container())
        assert res.rc != 0 and "VLAN filtering" in res.out["msg"]  # a clear error, and nothing left
        assert env.leases() == [] and "veth" not in env.host_sh("ip", "-o", "link")
        pytest.skip("this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING unset): "
                    "checked only that vlan gives a clear error and leaves nothing behind")
    out = env.add(base_conf(env.data_dir, vlan=100, preserveDefaultVlan=preserve,
                            vlanTrunk=[{"id": 200}, {"minID": 300, "maxID": 302}]), "vlan", env.container())
    vlans = env.host_sh("bridge", "vlan", "show", "dev", host_veth(out))
    assert "100 PVID Egress Untagged" in " ".join(vlans.split()).replace("PVID Egress", "PVID Egress")
    assert "200" in vlans and "300" in vlans and "302" in vlans
    lines = [ln.split() for ln in vlans.splitlines()[1:] if ln.strip()]
    vids = {parts[-1] if parts[0] != host_veth(out) else parts[1] for parts in lines}
    assert ("1" in " ".join(vids)) == preserve or ("1" in vids) == preserve
    assert env.host_sh("cat", "/sys/class/net/ignite0/bridge/vlan_filtering").strip() == "1"


def test_macspoofchk_drops_frames_with_a_foreign_source_mac(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, macspoofchk=True)
    c1, c2 = env.container(), env.container()
    r1 = env.add(conf, "spoof-a", c1)
    r2 = env.add(conf, "spoof-b", c2)
    assert env.ping(c1, container_ip(r2))
    assert "drop" in env.host_sh("nft", "list", "table", "bridge", "cni_ignite_spoofchk")
    env.ns_sh(c1, "ip", "link", "set", "eth0", "address", "02:00:00:00:be:ef")
    env.ns_sh(c1, "ip", "neigh", "flush", "all")
    env.ns_sh(c2, "ip", "neigh", "flush", "all")
    assert not env.ping(c1, container_ip(r2)), "a spoofed MAC got through"
    env.run("DEL", {**conf, "prevResult": r1}, "spoof-a", c1).ok()
    env.run("DEL", {**conf, "prevResult": r2}, "spoof-b", c2).ok()
    assert "mac-" not in env.host_sh("nft", "list", "table", "bridge", "cni_ignite_spoofchk")


def test_enabledad_turns_dad_on_in_the_container(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, enabledad=True)
    conf["ipam"] = {"type": "ignite-ipam", "dataDir": env.data_dir, "ranges": [[{"subnet": "fd00:65::/64"}]]}
    c1 = env.container()
    env.add(conf, "dad", c1)
    assert env.ns_sh(c1, "cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad").strip() == "1"
    assert env.ns_sh(c1, "cat", "/proc/sys/net/ipv6/conf/eth0/enhanced_dad").strip() == "1"


def test_disable_container_interface_leaves_it_down_and_refuses_ipam(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, disableContainerInterface=True)
    res = env.run("ADD", conf, "down-ipam", env.container())
    assert res.rc != 0 and res.out["code"] == 7
    del conf["ipam"]
    c1 = env.container()
    env.add(conf, "down", c1)
    assert "state DOWN" in env.ns_sh(c1, "ip", "link", "show", "eth0")


@pytest.mark.parametrize(("where", "mac"), [("runtimeConfig", "c2:11:22:33:44:01"),
                                            ("args", "c2:11:22:33:44:02"), ("CNI_ARGS", "c2:11:22:33:44:03")])
def test_container_mac_comes_from_capability_args_or_cni_args(netns, where, mac):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    cni_args = ""
    if where == "runtimeConfig":
        conf["runtimeConfig"] = {"mac": mac}
    elif where == "args":
        conf["args"] = {"cni": {"mac": mac}}
    else:
        cni_args = f"MAC={mac}"
    c1 = env.container()
    out = env.add(conf, "mac", c1, cni_args=cni_args)
    assert out["interfaces"][2]["mac"] == mac
    assert env.ns_sh(c1, "cat", "/sys/class/net/eth0/address").strip() == mac


def test_dns_in_the_config_replaces_the_ipam_dns(netns):
    env = HostEnv(netns)
    out = env.add(base_conf(env.data_dir, dns={"nameservers": ["10.61.0.53"], "search": ["vm.local"]}), "dns",
                  env.container())
    assert out["dns"] == {"nameservers": ["10.61.0.53"], "search": ["vm.local"]}
