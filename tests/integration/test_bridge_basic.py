"""ignite-bridge end to end on the real kernel, inside throwaway namespaces."""

from __future__ import annotations

import ipaddress

import pytest
from bridgeenv import HostEnv, base_conf, container_ip

pytestmark = pytest.mark.privileged

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.mark.parametrize("version", VERSIONS)
def test_two_containers_reach_each_other_and_the_gateway(netns, version):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, version)
    c1, c2 = env.container(), env.container()
    r1 = env.add(conf, "ctr-a", c1)
    r2 = env.add(conf, "ctr-b", c2)

    assert r1["cniVersion"] == version
    names = [i["name"] for i in r1["interfaces"]]
    assert names[0] == "ignite0" and names[1].startswith("veth") and names[2] == "eth0"
    assert r1["interfaces"][2]["sandbox"] == f"/var/run/netns/{c1}"
    assert all("sandbox" not in i for i in r1["interfaces"][:2])
    ip = r1["ips"][0]
    assert ip["interface"] == 2 and ip["gateway"] == "10.61.0.1"
    assert ("version" in ip) == (version < "1.0.0")
    assert r1["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.61.0.1"}]

    a1, a2 = container_ip(r1), container_ip(r2)
    assert a1 != a2
    assert f"{a1}/16" in env.ns_sh(c1, "ip", "-o", "addr", "show", "eth0")
    assert "default via 10.61.0.1 dev eth0" in env.ns_sh(c1, "ip", "route")
    assert "10.61.0.1/16" in env.host_sh("ip", "-o", "addr", "show", "ignite0")
    mac = env.host_sh("cat", "/sys/class/net/ignite0/address").strip()
    assert r1["interfaces"][0]["mac"] == mac
    assert env.ping(c1, a2) and env.ping(c2, a1) and env.ping(c1, "10.61.0.1")


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_pre_0_3_results_carry_an_ip4_block(netns, version):
    env = HostEnv(netns)
    out = env.add(base_conf(env.data_dir, version), "old-runtime", env.container())
    assert out["cniVersion"] == version
    assert out["ip4"]["ip"].startswith("10.61.") and out["ip4"]["gateway"] == "10.61.0.1"
    assert "interfaces" not in out and "ips" not in out


def test_ipv6_dual_stack_gets_both_families_without_dad_wait(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    conf["ipam"] = {"type": "ignite-ipam", "dataDir": env.data_dir,
                    "ranges": [[{"subnet": "10.62.0.0/24"}], [{"subnet": "fd00:62::/64"}]]}
    c1, c2 = env.container(), env.container()
    r1 = env.add(conf, "ds-a", c1)
    env.add(conf, "ds-b", c2)
    v6 = container_ip(r1, 6)
    assert ipaddress.ip_address(v6) in ipaddress.ip_network("fd00:62::/64")
    out = env.ns_sh(c1, "ip", "-6", "-o", "addr", "show", "eth0")
    assert v6 in out and "tentative" not in out
    assert "default via fd00:62::1" in env.ns_sh(c1, "ip", "-6", "route")
    assert env.ping(c2, v6) and env.ping(c2, container_ip(r1))


def test_repeated_add_for_an_existing_interface_fails_without_leasing(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    c1 = env.container()
    env.add(conf, "dup", c1)
    second = env.run("ADD", conf, "dup", c1)
    assert second.rc != 0 and "already exists" in second.out["msg"]
    assert len(env.leases()) == 1


def test_check_passes_after_add_and_names_what_was_removed(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    c1 = env.container()
    result = env.add(conf, "chk", c1)
    conf_prev = {**conf, "prevResult": result}
    env.run("CHECK", conf_prev, "chk", c1).ok()
    addr = result["ips"][0]["address"]
    env.ns_sh(c1, "ip", "addr", "del", addr, "dev", "eth0")
    res = env.run("CHECK", conf_prev, "chk", c1)
    assert res.rc != 0 and addr in res.out["msg"] + res.out.get("details", "")


def test_check_without_prev_result_is_an_error(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    c1 = env.container()
    env.add(conf, "noprev", c1)
    res = env.run("CHECK", conf, "noprev", c1)
    assert res.rc != 0 and "prevResult" in res.out["msg"]


def test_delegated_ipam_host_local_is_executed_from_cni_path(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir)
    conf["ipam"] = {"type": "host-local", "subnet": "10.63.0.0/24", "dataDir": env.data_dir}
    c1 = env.container()
    out = env.run("ADD", conf, "go-ipam", c1, cni_path=f"{env.bin_dir}:/usr/lib/cni").ok().out
    assert out["ips"][0]["address"] == "10.63.0.2/24"
    assert env.leases() == ["10.63.0.2"]
    env.run("DEL", conf, "go-ipam", c1, cni_path=f"{env.bin_dir}:/usr/lib/cni").ok()
    assert env.leases() == []


def test_status_reports_code_50_when_the_range_is_full(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, "1.1.0")
    conf["ipam"] = {"type": "ignite-ipam", "subnet": "10.64.0.0/30", "dataDir": env.data_dir}
    env.run("STATUS", conf, "", None).ok()
    env.add(conf, "only-one", env.container())
    res = env.run("STATUS", conf, "", None)
    assert res.rc != 0 and res.out["code"] == 50
    full = env.run("ADD", conf, "no-room", env.container())
    assert full.rc != 0 and "10.64.0.1-10.64.0.2" in full.out["msg"]


def test_a_prev_result_from_an_earlier_plugin_is_kept(netns):
    env = HostEnv(netns)
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo", "sandbox": "/x"}],
            "ips": [{"address": "192.0.2.9/32", "interface": 0}], "routes": [{"dst": "192.0.2.0/24"}],
            "dns": {"nameservers": ["192.0.2.53"]}}
    out = env.add({**base_conf(env.data_dir), "prevResult": prev}, "chained", env.container())
    assert out["interfaces"][0] == {"name": "lo", "sandbox": "/x"}
    assert [i["name"] for i in out["interfaces"][1:4]][::2] == ["ignite0", "eth0"]
    assert out["ips"][0] == {"address": "192.0.2.9/32", "interface": 0}
    assert out["ips"][1]["interface"] == 3  # indexes shift past the earlier plugin's interfaces
    assert {"dst": "192.0.2.0/24"} in out["routes"] and out["dns"] == {"nameservers": ["192.0.2.53"]}
