"""DEL removes what the attachment owns, rules and links first and the lease last; it never touches a
link that is not the attachment's, and an unusable container namespace does not block the host side."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from bridgeenv import HostEnv, base_conf

from cni_ignite.bridge.config import host_veth_name

pytestmark = pytest.mark.privileged


def masq_conf(env: HostEnv) -> dict:
    return base_conf(env.data_dir, ipMasq=True)


def our_rules(env: HostEnv) -> list[str]:
    return [line for line in env.rules().splitlines() if "10.61." in line]


def failing_rule_tools(folder: str) -> dict[str, str]:
    """A PATH whose first folder holds rule programs that always fail, as a broken iptables would."""
    for name in ("iptables-restore", "ip6tables-restore", "nft"):
        tool = Path(folder) / name
        tool.write_text("#!/bin/sh\necho 'simulated failure' >&2\nexit 1\n")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{folder}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}


def test_a_del_whose_rule_delete_fails_keeps_the_lease_until_a_retry_succeeds(netns, tmp_path):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    result = env.add(conf, "rules-fail", c1)
    leased = env.leases()
    assert leased and our_rules(env)

    broken = env.run("DEL", {**conf, "prevResult": result}, "rules-fail", c1,
                     extra_env=failing_rule_tools(str(tmp_path)))
    assert broken.rc != 0 and broken.out is not None and broken.out["code"] == 11, broken  # try again later
    assert "Traceback" not in broken.stdout + broken.stderr
    assert env.leases() == leased, "the address was released while its rules may still forward to it"
    assert our_rules(env), "the rules were removed although the tools failed?"

    # the next ADD must not get the address whose old rules are still in place
    c2 = env.container()
    other = env.add(conf, "newcomer", c2)
    assert other["ips"][0]["address"] != result["ips"][0]["address"]

    env.run("DEL", {**conf, "prevResult": result}, "rules-fail", c1).ok()  # the runtime retries
    assert leased[0] not in env.leases()
    assert not any(result["ips"][0]["address"].split("/")[0] in line for line in our_rules(env))
    assert host_veth_name("testnet", "rules-fail", "eth0") not in env.links()


def test_del_with_a_netns_path_that_is_not_a_namespace_still_cleans_the_host_side(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    veths_before = {n for n in env.links() if n.startswith("veth")}
    result = env.add(conf, "stale-file", c1)
    with tempfile.NamedTemporaryFile(prefix="cnit-not-a-netns-") as leftover:
        res = env.run("DEL", {**conf, "prevResult": result}, "stale-file", c1, netns_path=leftover.name)
        assert res.rc == 0, res
        # a repeated DEL with the same leftover file is fine too
        env.run("DEL", {**conf, "prevResult": result}, "stale-file", c1, netns_path=leftover.name).ok()
    assert {n for n in env.links() if n.startswith("veth")} == veths_before
    assert env.leases() == []
    assert our_rules(env) == []
    assert "eth0" not in env.ns_sh(c1, "ip", "-o", "link"), "the host veth's peer went with it"


def test_del_leaves_a_foreign_link_that_holds_the_host_veth_name_alone(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    name = host_veth_name("testnet", "collides", "eth0")
    env.host_sh("ip", "link", "add", name, "type", "veth", "peer", "name", "foreignpeer")
    c1 = env.container()
    env.run("DEL", conf, "collides", c1).ok()
    env.run("DEL", conf, "collides", None).ok()
    assert name in env.links() and "foreignpeer" in env.links(), "DEL deleted a link it does not own"


def test_del_removes_the_host_veth_it_made_even_when_the_namespace_still_holds_its_peer(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    env.add(conf, "ours", c1)
    name = host_veth_name("testnet", "ours", "eth0")
    assert name in env.links()
    env.run("DEL", conf, "ours", None).ok()  # no netns: only the host side can be reached
    assert name not in env.links()
    assert "eth0" not in env.ns_sh(c1, "ip", "-o", "link")
    assert env.leases() == []


def test_check_reports_a_host_veth_that_carries_another_attachments_tag(netns):
    env = HostEnv(netns)
    conf = masq_conf(env)
    c1 = env.container()
    result = env.add(conf, "tagged", c1)
    env.run("CHECK", {**conf, "prevResult": result}, "tagged", c1).ok()
    name = host_veth_name("testnet", "tagged", "eth0")
    env.host_sh("ip", "link", "set", "dev", name, "alias", "cni-ignite:someone-else")
    res = env.run("CHECK", {**conf, "prevResult": result}, "tagged", c1)
    assert res.rc != 0 and res.out is not None and "another attachment" in res.stdout, res
