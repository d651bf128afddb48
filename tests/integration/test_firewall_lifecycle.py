"""DEL, GC, CHECK, conflicts and concurrency against the real kernel, both backends: rules are read
back with iptables-save / nft inside the throwaway host namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from firewallenv import PY, Topo
from nsutil import in_ns

from cni_ignite.firewall.base import Owner

pytestmark = pytest.mark.privileged
BACKENDS = ["iptables", "nftables"]
MAPS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.1"}]


def key(cid: str, network: str = "net1") -> str:
    return Owner(network=network, container_id=cid, ifname="eth0").key


def with_maps(topo: Topo, backend: str, maps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return topo.conf(backend, runtimeConfig={"portMappings": MAPS if maps is None else maps})


def prime(topo: Topo, backend: str) -> str:
    """Create our shared chains/table with one throwaway attachment, then return the ruleset."""
    topo.add(with_maps(topo, backend), cid="primer", addrs=("10.99.0.9/24", "fd99::9/64"))
    topo.fw(topo.req("del", topo.conf(backend), cid="primer"))
    return topo.ruleset()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["no-addresses", "with-addresses", "state-lost", "twice"])
def test_del_removes_every_rule_of_the_attachment(topo: Topo, backend: str, how: str) -> None:
    before = prime(topo, backend)
    addrs = ("10.99.0.2/24", "fd99::2/64")
    topo.add(with_maps(topo, backend), addrs=addrs)
    assert key("c1") in topo.ruleset()
    if how == "state-lost":
        shutil.rmtree(os.path.join(topo.state_dir, "net1"))
    dels = 2 if how == "twice" else 1
    for _ in range(dels):  # DEL as runtimes send it: no portMappings, maybe no addresses
        topo.fw(topo.req("del", topo.conf(backend), addrs=addrs if how == "with-addresses" else ()))
    assert topo.ruleset() == before
    assert not os.path.exists(os.path.join(topo.state_dir, "net1", key("c1")))


@pytest.mark.parametrize("backend", BACKENDS)
def test_del_of_something_never_added_succeeds_and_creates_nothing(topo: Topo, backend: str) -> None:
    before = topo.ruleset()
    topo.fw(topo.req("del", topo.conf(backend), cid="never"), topo.req("del", topo.conf(backend), cid="never"))
    assert topo.ruleset() == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_add_does_not_duplicate_rules(topo: Topo, backend: str) -> None:
    before = prime(topo, backend)
    topo.add(with_maps(topo, backend))
    once = topo.ruleset()
    topo.add(with_maps(topo, backend))
    assert topo.ruleset() == once
    topo.fw(topo.req("del", topo.conf(backend)))
    assert topo.ruleset() == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_add_after_a_half_failed_add_works(topo: Topo, backend: str) -> None:
    before = prime(topo, backend)
    bad = topo.conf(backend, externalSetMarkChain="NO-SUCH-CHAIN") if backend == "iptables" else \
        topo.conf(backend, conditionsV4=["meta", "nosuchkey", "1"])
    out = topo.fw(topo.req("add", {**bad, "runtimeConfig": {"portMappings": MAPS}}), check=False)
    assert "error" in out[0]
    assert topo.ruleset() == before  # the failed ADD removed what it had done
    assert not os.listdir(os.path.join(topo.state_dir, "ports")) or \
        all(not os.listdir(os.path.join(topo.state_dir, "ports", d))
            for d in os.listdir(os.path.join(topo.state_dir, "ports")) if d != "lock")
    topo.add(with_maps(topo, backend))
    assert topo.fw(topo.req("check", with_maps(topo, backend)))[0]["problems"] == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_gc_removes_only_attachments_outside_the_valid_set(topo: Topo, backend: str) -> None:
    conf = topo.conf(backend)
    topo.add(with_maps(topo, backend, MAPS[:1]), cid="a", addrs=("10.99.0.2/24",))
    topo.add(conf, cid="b", addrs=("10.99.0.3/24",))
    topo.add(conf, cid="c", addrs=("10.99.0.4/24",), network="net2")
    topo.fw({**topo.req("gc", conf), "valid": [["b", "eth0"]]})
    rules = topo.ruleset()
    assert key("a") not in rules and key("b") in rules and key("c", "net2") in rules
    listed = topo.fw({"verb": "list", "conf": conf})[0]["attachments"]
    assert sorted(line.split()[0] for line in listed) == ["b", "c"]
    # the freed host port can be mapped again by someone else
    topo.add(with_maps(topo, backend, MAPS[:1]), cid="d", addrs=("10.99.0.5/24",))


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_when_a_host_port_is_already_mapped(topo: Topo, backend: str) -> None:
    topo.add(with_maps(topo, backend), cid="a", addrs=("10.99.0.2/24",))
    before = topo.ruleset()
    out = topo.fw(topo.req("add", with_maps(topo, backend, MAPS[:1]), cid="b", addrs=("10.99.0.3/24",)), check=False)
    assert out[0]["code"] == 100
    assert "tcp/8080" in out[0]["error"] and key("a") in out[0]["error"]
    assert topo.ruleset() == before
    # another protocol, or another host address for 5353/udp, is fine
    other = [{"hostPort": 8080, "containerPort": 80, "protocol": "udp"},
             {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.99.0.1"}]
    topo.add(with_maps(topo, backend, other), cid="b", addrs=("10.99.0.3/24",))


def _drop_dnat_rule(topo: Topo, backend: str) -> None:
    k = key("c1")
    if backend == "iptables":
        in_ns(topo.host, ["iptables", "-t", "nat", "-D", f"CNI-IGD-{k}", "-p", "tcp", "-m", "tcp", "--dport", "8080",
                          "-j", "DNAT", "--to-destination", "10.99.0.2:80"])
        return
    in_ns(topo.host, ["nft", "delete", "element", "inet", "cni_ignite", "dnat4", "{ tcp . 8080 }"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_reports_a_rule_removed_by_hand(topo: Topo, backend: str) -> None:
    conf = with_maps(topo, backend)
    topo.add(conf)  # IPv4 only: CHECK must not ask for IPv6 rules
    assert topo.fw(topo.req("check", conf))[0]["problems"] == []
    _drop_dnat_rule(topo, backend)
    problems = topo.fw(topo.req("check", conf))[0]["problems"]
    where = f"{backend}, IPv4" if backend == "iptables" else backend
    assert problems == [f"missing DNAT tcp *:8080 -> 10.99.0.2:80 ({where})"]


def test_check_reports_a_missing_map_element_and_shared_jump(topo: Topo) -> None:
    topo.add(with_maps(topo, "nftables"))
    in_ns(topo.host, ["nft", "delete", "element", "inet", "cni_ignite", "accept4", '{ "br0" . 10.99.0.2 }'])
    problems = topo.fw(topo.req("check", with_maps(topo, "nftables")))[0]["problems"]
    assert problems == ["missing forward accept to and from 10.99.0.2 (nftables)"]
    other = with_maps(topo, "iptables", [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}])
    topo.add(other, cid="c2", addrs=("10.99.0.3/24",))
    in_ns(topo.host, ["iptables", "-t", "nat", "-D", "POSTROUTING", "-j", "CNI-IGNITE-POSTRT"])
    problems = topo.fw(topo.req("check", other, cid="c2", addrs=("10.99.0.3/24",)))[0]["problems"]
    assert problems == ["missing jump POSTROUTING -> CNI-IGNITE-POSTRT (iptables, IPv4)"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_32_concurrent_adds_all_leave_their_rules(topo: Topo, backend: str) -> None:
    # Fresh namespace: the shared chains / table do not exist yet, so the ADDs also race to create them.
    import json

    procs, reqs = [], []
    for i in range(32):
        mapping = [{"hostPort": 9000 + i, "containerPort": 80, "protocol": "tcp"}]
        req = topo.req("add", with_maps(topo, backend, mapping), cid=f"ctr{i}", addrs=(f"10.99.1.{i + 10}/24",))
        reqs.append(json.dumps(req).encode())
        procs.append(subprocess.Popen(["ip", "netns", "exec", topo.host, PY, "-m", "cni_ignite.firewall"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p, data in zip(procs, reqs, strict=True):  # all 32 get their request before any answer is read
        assert p.stdin is not None
        p.stdin.write(data)
        p.stdin.close()
    outs = []
    for p in procs:
        assert p.stdout is not None and p.stderr is not None
        outs.append((p.stdout.read().decode(), p.stderr.read().decode()))
        p.stdout.close()
        p.stderr.close()
        p.wait(timeout=120)
    assert all('"ok": true' in o for o, _ in outs), outs
    checks = topo.fw(*(topo.req("check", with_maps(topo, backend, [{"hostPort": 9000 + i, "containerPort": 80,
                                                                     "protocol": "tcp"}]),
                                cid=f"ctr{i}", addrs=(f"10.99.1.{i + 10}/24",)) for i in range(32)))
    assert [c["problems"] for c in checks] == [[]] * 32
    rules = topo.ruleset()
    if backend == "iptables":  # shared chains were created exactly once
        assert rules.count("-A POSTROUTING -j CNI-IGNITE-POSTRT") == 1
        assert rules.count("-A CNI-IGNITE-FWD -j CNI-IGNITE-ADMIN") == 1
