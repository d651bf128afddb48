"""Entry jumps from the built-in chains into ours (and the CVE-2020-8558 localnet guard) are restored by
every ADD after someone flushed the built-in chains, and CHECK reports each missing one; the nft base
chains' constant rules are reported by CHECK when missing. Real kernel, throwaway host namespace."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from nsutil import in_ns

if TYPE_CHECKING:
    from firewallenv import Topo

pytestmark = pytest.mark.privileged
MAPS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
ADDRS = ("10.99.0.2/24", "fd99::2/64")
JUMPS4 = ["-A POSTROUTING -j CNI-IGNITE-POSTRT", "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT",
          "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT", "-A FORWARD -j CNI-IGNITE-FWD",
          "-A INPUT -j CNI-IGNITE-INPUT",
          "-A CNI-IGNITE-INPUT -d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"]
JUMPS6 = JUMPS4[:4]


def _save(topo: Topo, tool: str) -> list[str]:
    return in_ns(topo.host, [tool]).stdout.decode().splitlines()


def _flush_builtins(topo: Topo) -> None:
    for tool in ("iptables", "ip6tables"):
        in_ns(topo.host, [tool, "-F", "INPUT"])
        in_ns(topo.host, [tool, "-F", "FORWARD"])
        for chain in ("PREROUTING", "OUTPUT", "POSTROUTING"):
            in_ns(topo.host, [tool, "-t", "nat", "-F", chain])


def test_add_restores_entry_jumps_after_the_builtin_chains_were_flushed(topo: Topo) -> None:
    conf = topo.conf("iptables", runtimeConfig={"portMappings": MAPS})
    topo.add(conf, cid="first", addrs=("10.99.0.5/24", "fd99::5/64"))  # creates our chains and jumps
    _flush_builtins(topo)
    out = topo.add(conf | {"runtimeConfig": {"portMappings": [{**MAPS[0], "hostPort": 8081}]}}, addrs=ADDRS)
    assert out["routeLocalnet"] == ["br0"]
    v4, v6 = _save(topo, "iptables-save"), _save(topo, "ip6tables-save")
    assert [j for j in JUMPS4 if v4.count(j) != 1] == []
    assert [j for j in JUMPS6 if v6.count(j) != 1] == []
    assert not any("CNI-IGNITE-INPUT" in line for line in v6)  # the guard is IPv4 only
    checks = topo.fw(topo.req("check", conf | {"runtimeConfig": {"portMappings": [{**MAPS[0], "hostPort": 8081}]}},
                              addrs=ADDRS), topo.req("check", conf, cid="first", addrs=("10.99.0.5/24", "fd99::5/64")))
    assert [c["problems"] for c in checks] == [[], []]
    # and the guard works again: an outside packet to 127.x is dropped, the host port still answers
    topo.serve(topo.host, "tcp", 7000)
    topo.serve(topo.c1, "tcp", 80)
    in_ns(topo.outside, ["ip", "route", "add", "127.1.0.0/16", "via", "192.0.2.1"])
    in_ns(topo.host, ["sysctl", "-qw", "net.ipv4.conf.up0.route_localnet=1"])
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 7000) == "192.0.2.2"
    assert topo.reach(topo.outside, "tcp", "127.1.0.1", 7000) is None
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8081) == "192.0.2.2"


def test_repeated_add_keeps_one_copy_of_each_entry_jump(topo: Topo) -> None:
    conf = topo.conf("iptables", runtimeConfig={"portMappings": MAPS})
    for cid in ("a", "b", "a"):
        topo.add(conf | {"runtimeConfig": {"portMappings": [{**MAPS[0], "hostPort": 8080 + ord(cid)}]}},
                 cid=cid, addrs=(f"10.99.0.{ord(cid) - 90}/24",))
    v4 = _save(topo, "iptables-save")
    assert [j for j in JUMPS4 if v4.count(j) != 1] == []


@pytest.mark.parametrize("remove", [
    (["iptables", "-D", "INPUT", "-j", "CNI-IGNITE-INPUT"], "missing jump INPUT -> CNI-IGNITE-INPUT (iptables, IPv4)"),
    (["iptables", "-F", "CNI-IGNITE-INPUT"],
     "missing localnet guard (CVE-2020-8558) in CNI-IGNITE-INPUT (iptables, IPv4)"),
    (["iptables", "-D", "FORWARD", "-j", "CNI-IGNITE-FWD"], "missing jump FORWARD -> CNI-IGNITE-FWD (iptables, IPv4)"),
    (["iptables", "-t", "nat", "-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-IGNITE-DNAT"],
     "missing jump OUTPUT -> CNI-IGNITE-DNAT (iptables, IPv4)"),
    (["iptables", "-D", "CNI-IGNITE-FWD", "-j", "CNI-IGNITE-ADMIN"],
     "missing jump CNI-IGNITE-FWD -> CNI-IGNITE-ADMIN (iptables, IPv4)"),
], ids=["input-jump", "guard", "forward-jump", "output-jump", "admin-jump"])
def test_check_reports_each_missing_entry_jump(topo: Topo, remove: tuple[list[str], str]) -> None:
    conf = topo.conf("iptables", runtimeConfig={"portMappings": MAPS})
    topo.add(conf)
    assert topo.fw(topo.req("check", conf))[0]["problems"] == []
    in_ns(topo.host, remove[0])
    assert topo.fw(topo.req("check", conf))[0]["problems"] == [remove[1]]
    if "ADMIN" in remove[1] or "guard" in remove[1]:  # ADD lists built-in chains only: repaired by the next repair
        in_ns(topo.host, ["iptables", "-F", "INPUT"])
    topo.add(conf)  # a repeated ADD repairs it
    assert topo.fw(topo.req("check", conf))[0]["problems"] == []


def test_check_without_port_mappings_does_not_ask_for_the_localnet_guard(topo: Topo) -> None:
    conf = topo.conf("iptables")
    topo.add(conf)
    in_ns(topo.host, ["iptables", "-F", "INPUT"])
    assert topo.fw(topo.req("check", conf))[0]["problems"] == []


@pytest.mark.parametrize("chain", ["filter-forward", "nat-postrouting", "nat-prerouting", "nat-output", "filter-input"])
def test_nft_check_reports_a_flushed_base_chain(topo: Topo, chain: str) -> None:
    conf = topo.conf("nftables", runtimeConfig={"portMappings": MAPS})
    topo.add(conf)
    in_ns(topo.host, ["nft", "flush", "chain", "inet", "cni_ignite", chain])
    problems = topo.fw(topo.req("check", conf))[0]["problems"]
    assert len(problems) == 1 and f"base chain {chain} " in problems[0], problems


def test_nft_check_reports_one_deleted_base_rule(topo: Topo) -> None:
    conf = topo.conf("nftables", runtimeConfig={"portMappings": MAPS})
    topo.add(conf)
    listing = in_ns(topo.host, ["nft", "-a", "list", "chain", "inet", "cni_ignite", "filter-forward"]).stdout.decode()
    line = next(ln for ln in listing.splitlines() if "ip saddr @accept4" in ln)
    in_ns(topo.host, ["nft", "delete", "rule", "inet", "cni_ignite", "filter-forward", "handle", line.split()[-1]])
    problems = topo.fw(topo.req("check", conf))[0]["problems"]
    assert len(problems) == 1 and "base chain filter-forward " in problems[0], problems
