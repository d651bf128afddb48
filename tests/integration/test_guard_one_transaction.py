"""One nftables transaction per verb for an attachment's whole nft side (issues 15 and 14): with the
nftables backend, ADD sends the guard's elements, macspoofchk's entry and the firewall's elements in one
``nft -f -``, and DEL removes them in one (a DEL pays the RCU grace period of a socket that deleted
elements once). When that transaction cannot go (the guard's table is gone, the iptables backend), each
part goes on its own and the result is the same; a failed ADD leaves nothing.

The rule programs are counted through wrappers first on PATH that log each call and its stdin, then run
the real program."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from bridgeenv import HostEnv, base_conf, container_ip
from cnirun import have

from cni_ignite.bridge.config import host_veth_name

pytestmark = pytest.mark.privileged

TOOLS = ("nft", "iptables-restore", "ip6tables-restore", "iptables", "ip6tables", "iptables-save",
         "ip6tables-save")


def tool_log(folder: Path) -> tuple[dict[str, str], Path]:
    """A PATH whose first folder holds logging wrappers of the rule programs, and the log."""
    log = folder / "calls.log"
    log.write_text("")
    for name in TOOLS:
        real = next((f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
                     if os.access(f"{d}/{name}", os.X_OK)), None)
        if real is None:
            continue
        tool = folder / name
        tool.write_text(f'#!/bin/sh\nt=$(mktemp -p "{folder}")\ncat > "$t"\n'
                        f'{{ echo "== {name} $*"; cat "$t"; }} >> "{log}"\nexec {real} "$@" < "$t"\n')
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{folder}:/usr/sbin:/usr/bin:/sbin:/bin"}, log


def calls(log: Path) -> list[tuple[str, str]]:
    """(program and arguments, stdin) per logged call; the log is emptied."""
    out: list[tuple[str, str]] = []
    for chunk in log.read_text().split("== ")[1:]:
        head, _, body = chunk.partition("\n")
        out.append((head, body))
    log.write_text("")
    return out


def whole_conf(env: HostEnv, **extra: object) -> dict:
    """Ignite's network (guard, ipMasq, a port mapping), backend auto as shipped."""
    conf = base_conf(env.data_dir, guard=True, ipMasq=True, capabilities={"portMappings": True},
                     runtimeConfig={"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]})
    conf.update(extra)
    return conf


def guard_ports(env: HostEnv) -> str:
    return env.host_sh("nft", "list", "set", "bridge", "cni_ignite_guard", "ports", check=False)


def spoof_ports(env: HostEnv) -> str:
    return env.host_sh("nft", "list", "map", "bridge", "cni_ignite_spoofchk", "ports", check=False)


def fw_ruleset(env: HostEnv) -> str:
    return env.host_sh("nft", "list", "table", "inet", "cni_ignite", check=False)


def warm_up(env: HostEnv, conf: dict) -> None:
    """A first ADD and DEL: the bridge, the guard's table and the rule table exist afterwards."""
    ns = env.container()
    env.add(conf, "warm", ns)
    env.run("DEL", conf, "warm", ns).ok()


@pytest.mark.parametrize("spoofchk", [False, True], ids=["guard", "guard+macspoofchk"])
def test_add_and_del_each_run_one_nft_transaction_for_guard_rules_and_macspoofchk(netns, tmp_path, spoofchk):
    env = HostEnv(netns)
    conf = whole_conf(env, macspoofchk=spoofchk)
    warm_up(env, conf)
    path, log = tool_log(tmp_path)
    ns = env.container()
    port = host_veth_name("testnet", "one", "eth0")

    result = env.add(conf, "one", ns, extra_env=path)
    ip = container_ip(result)
    made = calls(log)
    assert [c for c, _ in made] == ["nft -f -"], made  # no `nft list tables`, no second transaction
    text = made[0][1]
    assert "bridge cni_ignite_guard" in text and "inet cni_ignite" in text, text
    assert ("bridge cni_ignite_spoofchk" in text) == spoofchk, text
    assert f'"{port}"' in guard_ports(env)
    assert ip in fw_ruleset(env)
    assert (f'"{port}"' in spoof_ports(env)) == spoofchk
    env.run("CHECK", {**conf, "prevResult": result}, "one", ns).ok()

    env.run("DEL", {**conf, "prevResult": result}, "one", ns, extra_env=path).ok()
    made = calls(log)
    assert [c for c, _ in made] == ["nft -f -"], made  # one socket: one RCU grace period
    assert "delete element bridge cni_ignite_guard" in made[0][1] and "inet cni_ignite" in made[0][1]
    assert f'"{port}"' not in guard_ports(env)
    assert ip not in fw_ruleset(env)
    assert f'"{port}"' not in spoof_ports(env)
    assert port not in env.links() and not env.leases()


def test_del_without_state_record_or_prevresult_still_removes_guard_and_rules(netns):
    env = HostEnv(netns)
    conf = whole_conf(env)
    ns = env.container()
    result = env.add(conf, "lost", ns)
    port = host_veth_name("testnet", "lost", "eth0")
    for rec in Path(conf["stateDir"]).rglob("*"):  # the runtime lost everything: no records, no prevResult
        if rec.is_file() and "lost" in rec.read_text(errors="replace") + rec.name:
            rec.unlink()
    env.run("DEL", conf, "lost", ns).ok()
    assert f'"{port}"' not in guard_ports(env)
    assert container_ip(result) not in fw_ruleset(env)


def test_without_the_guard_table_each_part_goes_on_its_own_and_works(netns, tmp_path):
    """The joint transaction needs the guard's table (its lean script); when an admin deleted it, ADD
    falls back to the firewall's and the guard's own transactions, and DEL still removes everything."""
    env = HostEnv(netns)
    conf = whole_conf(env)
    warm_up(env, conf)
    env.host_sh("nft", "delete", "table", "bridge", "cni_ignite_guard")
    path, log = tool_log(tmp_path)
    ns = env.container()
    port = host_veth_name("testnet", "fallback", "eth0")

    result = env.add(conf, "fallback", ns, extra_env=path)
    assert len(calls(log)) > 1  # the joint failed: its parts went on their own
    assert f'"{port}"' in guard_ports(env)
    assert container_ip(result) in fw_ruleset(env)
    env.run("CHECK", {**conf, "prevResult": result}, "fallback", ns).ok()

    env.host_sh("nft", "delete", "table", "bridge", "cni_ignite_guard")  # gone again before the DEL
    env.run("DEL", {**conf, "prevResult": result}, "fallback", ns).ok()
    assert container_ip(result) not in fw_ruleset(env)
    assert f'"{port}"' not in guard_ports(env)


@pytest.mark.skipif(not have("iptables-restore"), reason="needs iptables-restore (iptables backend)")
def test_with_the_iptables_backend_the_guard_is_its_own_nft_batch(netns, tmp_path):
    env = HostEnv(netns)
    conf = whole_conf(env, backend="iptables")
    warm_up(env, conf)
    path, log = tool_log(tmp_path)
    ns = env.container()
    port = host_veth_name("testnet", "ipt", "eth0")

    result = env.add(conf, "ipt", ns, extra_env=path)
    made = [c for c, _ in calls(log)]
    assert made.count("nft -f -") == 1 and any(c.startswith("iptables-restore") for c in made), made
    assert f'"{port}"' in guard_ports(env)
    assert container_ip(result) in env.host_sh("iptables-save")

    env.run("DEL", {**conf, "prevResult": result}, "ipt", ns, extra_env=path).ok()
    made = [c for c, _ in calls(log)]
    assert made.count("nft -f -") == 1, made
    assert f'"{port}"' not in guard_ports(env)
    assert container_ip(result) not in env.host_sh("iptables-save")


def test_an_add_that_fails_after_the_joint_transaction_leaves_no_guard_rule_or_spoofchk(netns):
    """The VM tap cannot be made (its name is taken in the container): the ADD fails after the guard,
    macspoofchk and rules went in (one transaction), and its rollback removes all of them."""
    env = HostEnv(netns)
    conf = whole_conf(env, macspoofchk=True, vm={"mode": "tc-redirect", "tap": "tap0"})
    warm_up(env, conf)
    rules_before = fw_ruleset(env)
    ns = env.container()
    env.ns_sh(ns, "ip", "link", "add", "tap0", "type", "veth", "peer", "name", "tap0p")
    port = host_veth_name("testnet", "fails", "eth0")

    bad = env.run("ADD", conf, "fails", ns)
    assert bad.rc != 0 and bad.out is not None and "tap0" in json.dumps(bad.out), bad.stdout
    assert f'"{port}"' not in guard_ports(env)
    assert f'"{port}"' not in spoof_ports(env)
    assert fw_ruleset(env) == rules_before
    assert port not in env.links() and not env.leases()
