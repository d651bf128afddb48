"""VM mode owns its tap: ADD never takes over an existing one, a failed ADD leaves no tap behind, and DEL
removes only the tap (and in-namespace bridge) its own attachment made."""

from __future__ import annotations

import pytest
from bridgeenv import HostEnv, base_conf

pytestmark = pytest.mark.privileged


def ns_links(env: HostEnv, ns: str) -> set[str]:
    return {line.split()[1].split("@")[0].rstrip(":") for line in env.ns_sh(ns, "ip", "-o", "link").splitlines()}


@pytest.mark.parametrize("mode", ["tc-redirect", "bridge"])
def test_a_second_vm_attachment_does_not_take_over_the_first_ones_tap(netns, mode):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": mode})
    c1 = env.container()
    first = env.add(conf, "vm-excl", c1, ifname="eth0")
    index_before = env.ns_sh(c1, "cat", "/sys/class/net/tap0/ifindex")
    second = env.run("ADD", conf, "vm-excl", c1, ifname="eth1")
    assert second.rc != 0 and second.out is not None, second
    assert "tap0" in second.out["msg"] and "internal error" not in second.out["msg"], second.out
    assert "eth1" not in ns_links(env, c1), "the failed ADD was not rolled back"
    assert len(env.leases()) == 1
    assert env.ns_sh(c1, "cat", "/sys/class/net/tap0/ifindex") == index_before
    if mode == "tc-redirect":
        assert "mirred" in env.ns_sh(c1, "tc", "filter", "show", "dev", "tap0", "ingress")
        assert "eth1" not in env.ns_sh(c1, "tc", "filter", "show", "dev", "tap0", "ingress")

    env.run("DEL", conf, "vm-excl", c1, ifname="eth1").ok()  # the runtime's DEL after the failed ADD
    assert "tap0" in ns_links(env, c1), "DEL of the failed attachment deleted eth0's tap"
    assert mode != "bridge" or "br-tap0" in ns_links(env, c1)
    env.run("CHECK", {**conf, "prevResult": first}, "vm-excl", c1, ifname="eth0").ok()

    env.run("DEL", {**conf, "prevResult": first}, "vm-excl", c1, ifname="eth0").ok()
    assert not {"tap0", "br-tap0", "eth0"} & ns_links(env, c1)
    assert env.leases() == []


def test_del_leaves_a_tap_that_another_program_made_under_the_vm_tap_name(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": "tc-redirect"})
    c1 = env.container()
    env.ns_sh(c1, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap")
    res = env.run("ADD", conf, "vm-foreign", c1)
    assert res.rc != 0 and res.out is not None and "tap0" in res.out["msg"], res
    env.run("DEL", conf, "vm-foreign", c1).ok()
    assert "tap0" in ns_links(env, c1)
    assert "eth0" not in ns_links(env, c1) and env.leases() == []


def test_vm_mode_with_an_mtu_above_the_tap_maximum_is_a_config_error_that_changes_nothing(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, mtu=65535, vm={"mode": "tc-redirect"})
    c1 = env.container()
    res = env.run("ADD", conf, "vm-mtu", c1)
    assert res.rc != 0 and res.out is not None and res.out["code"] == 7, res
    assert "ignite0" not in env.links()
    assert ns_links(env, c1) == {"lo"}
    assert env.leases() == []


def test_a_vm_setup_failing_after_the_tap_exists_removes_the_tap(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": "bridge"})
    c1 = env.container()
    # the in-namespace bridge's name is taken (by a veth pair: this kernel may lack dummy)
    env.ns_sh(c1, "ip", "link", "add", "br-tap0", "type", "veth", "peer", "name", "xpeer0")
    res = env.run("ADD", conf, "vm-late", c1)
    assert res.rc != 0 and res.out is not None and "br-tap0" in res.out["msg"], res
    assert "Traceback" not in res.stdout + res.stderr
    assert ns_links(env, c1) == {"lo", "br-tap0", "xpeer0"}, "the tap (or veth) was left behind"
    assert env.leases() == []
    env.run("DEL", conf, "vm-late", c1).ok()
    assert ns_links(env, c1) == {"lo", "br-tap0", "xpeer0"}, "DEL removed a link it did not make"


def test_a_bridge_mtu_above_the_tap_maximum_fails_the_vm_add_without_leaving_a_tap(netns):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": "tc-redirect"})
    env.host_sh("ip", "link", "add", "ignite0", "mtu", "65535", "type", "bridge")
    c1 = env.container()
    res = env.run("ADD", conf, "vm-brmtu", c1)
    assert res.rc != 0 and res.out is not None and "Traceback" not in res.stdout + res.stderr, res
    assert "65521" in res.out["msg"] + res.out.get("details", ""), res.out
    assert ns_links(env, c1) == {"lo"}
    assert env.leases() == []


@pytest.mark.parametrize("owner", [2**31, 2**32 - 2])
def test_tap_owner_and_group_above_2_31_are_set(netns, owner):
    env = HostEnv(netns)
    conf = base_conf(env.data_dir, vm={"mode": "tc-redirect", "uid": owner, "gid": owner})
    c1 = env.container()
    env.add(conf, "vm-bigid", c1)
    assert env.ns_sh(c1, "cat", "/sys/class/net/tap0/owner").strip() == str(owner)
    assert env.ns_sh(c1, "cat", "/sys/class/net/tap0/group").strip() == str(owner)


@pytest.mark.parametrize("where", ["config", "cni_args"])
@pytest.mark.parametrize("owner", [2**32 - 1, 2**32, 2**40])
def test_tap_owner_or_group_out_of_range_is_a_config_error(netns, where, owner):
    env = HostEnv(netns)
    c1 = env.container()
    if where == "config":
        conf = base_conf(env.data_dir, vm={"mode": "tc-redirect", "gid": owner})
        res = env.run("ADD", conf, "vm-badid", c1)
    else:
        conf = base_conf(env.data_dir, vm={"mode": "tc-redirect"})
        res = env.run("ADD", conf, "vm-badid", c1, cni_args=f"IgnoreUnknown=1;TC_REDIRECT_TAP_UID={owner}")
    assert res.rc != 0 and res.out is not None and res.out["code"] == 7, res
    assert "ignite0" not in env.links() and ns_links(env, c1) == {"lo"} and env.leases() == []
