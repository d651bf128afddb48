"""DEL, rollback and concurrency: whatever happens, an attachment leaves no link, rule or lease behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from bridgeenv import HostEnv, base_conf, container_ip
from nsutil import path

pytestmark = pytest.mark.privileged


def masq_conf(env: HostEnv, **extra: object) -> dict:
    return base_conf(env.data_dir, ipMasq=True, **extra)


def state(env: HostEnv) -> tuple[set[str], str, list[str]]:
    """Links, rule text mentioning our attachments, and leases: what an attachment could leave behind."""
    rules = "\n".join(line for line in env.rules().splitlines()
                      if "10.61." in line)
    return {n for n in env.links() if n.startswith("veth")}, rules, env.leases()


def test_del_after_the_namespace_is_deleted_leaves_no_rule_link_or_lease(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    before = state(env)
    result = env.add(conf, "gone", c1)
    assert state(env) != before
    env.spaces.made.remove(c1)
    subprocess.run(["ip", "netns", "del", c1], check=True)
    env.run("DEL", {**conf, "prevResult": result}, "gone", c1).ok()
    assert state(env) == before


@pytest.mark.parametrize("netns_arg", ["empty", "gone-without-prevresult"])
def test_del_without_namespace_or_prev_result_still_removes_everything(netns, netns_arg):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    before = state(env)
    env.add(conf, "ctr-style", c1)
    if netns_arg == "empty":  # containerd's ctr sends CNI_NETNS="" on DEL
        env.run("DEL", conf, "ctr-style", None).ok()
    else:
        env.spaces.made.remove(c1)
        subprocess.run(["ip", "netns", "del", c1], check=True)
        env.run("DEL", conf, "ctr-style", c1).ok()
    assert state(env) == before


def test_del_twice_and_del_of_something_never_added_succeed(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    result = env.add(conf, "twice", c1)
    env.run("DEL", {**conf, "prevResult": result}, "twice", c1).ok()
    env.run("DEL", {**conf, "prevResult": result}, "twice", c1).ok()
    env.run("DEL", conf, "never-added", env.container()).ok()
    assert env.leases() == []


def test_del_when_the_interface_was_removed_by_hand_still_releases_everything(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    before = state(env)
    result = env.add(conf, "no-iface", c1)
    env.ns_sh(c1, "ip", "link", "del", "eth0")
    env.run("DEL", {**conf, "prevResult": result}, "no-iface", c1).ok()
    assert state(env) == before


def test_a_failing_add_after_the_lease_rolls_back_link_rules_and_lease(netns):
    env = HostEnv(netns)
    conf = masq_conf(env, vm={"mode": "tc-redirect", "tap": "taken0"})
    c1 = env.container()
    env.ns_sh(c1, "ip", "link", "add", "taken0", "type", "veth", "peer", "name", "taken1")  # tap name taken
    before = state(env)
    res = env.run("ADD", conf, "late-fail", c1)
    assert res.rc != 0 and res.out is not None and "code" in res.out
    assert state(env) == before
    assert "eth0" not in env.ns_sh(c1, "ip", "-o", "link")


def test_an_add_killed_at_any_point_is_cleaned_up_by_the_del_that_follows(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    before = state(env)
    for delay in (0.02, 0.05, 0.08, 0.12):
        c = env.container()
        envv = {**os.environ, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"killed-{delay}", "CNI_NETNS": path(c),
                "CNI_IFNAME": "eth0", "CNI_PATH": str(env.bin_dir)}
        proc = subprocess.Popen(["ip", "netns", "exec", env.host, str(env.plugin)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=envv)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        env.run("DEL", conf, f"killed-{delay}", c).ok()  # the runtime's DEL after a failed ADD
        assert state(env) == before, f"killed after {delay}s"


def test_32_concurrent_adds_then_dels_on_one_bridge_are_all_correct(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    spaces = [env.container() for _ in range(32)]
    before_links = {n for n in env.links() if n.startswith("veth")}

    def add(i: int) -> dict:
        return env.add(conf, f"par-{i}", spaces[i])

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(add, range(32)))
    ips = [container_ip(r) for r in results]
    assert len(set(ips)) == 32
    assert len(env.leases()) == 32
    for i in (0, 13, 31):
        assert env.ping(spaces[i], "10.61.0.1")
    assert env.ping(spaces[0], ips[31])
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: env.run("DEL", {**conf, "prevResult": results[i]}, f"par-{i}", spaces[i]).ok(),
                      range(32)))
    assert env.leases() == []
    assert {n for n in env.links() if n.startswith("veth")} == before_links
    assert "10.61.0." not in "\n".join(ln for ln in env.rules().splitlines() if "-s" in ln or "saddr" in ln)


def test_gc_releases_leases_and_rules_of_attachments_not_in_the_valid_list(netns):
    env = HostEnv(netns)
    conf = masq_conf(env, cniVersion="1.1.0")
    keep_ns, drop_ns = env.container(), env.container()
    keep = env.add(conf, "keep", keep_ns)
    dropped = env.add(conf, "drop", drop_ns)
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    env.run("GC", gc, "", None).ok()
    assert env.leases() == [container_ip(keep)]
    rules = env.rules()
    assert container_ip(dropped) not in rules and container_ip(keep) in rules
