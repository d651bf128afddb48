# ruff: noqa: E501
"""Exact rule text of one attachment in both backends (like the reference's knftables fake tests)."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

from cni_ignite.firewall.base import Attachment, FirewallConfig, Owner, PortMapping
from cni_ignite.firewall.rules import (
    iptables_add_text,
    iptables_delete_text,
    iptables_plan,
    iptables_repair_text,
    nft_add_text,
    nft_bootstrap_text,
    nft_delete_text,
    nft_plan,
)

OWNER = Owner(network="net1", container_id="c1", ifname="eth0")
K = OWNER.key
V4 = ipaddress.ip_interface("10.61.0.2/16")
V6 = ipaddress.ip_interface("fd00::2/64")
TCP = PortMapping(host_port=8080, container_port=80, protocol="tcp")
UDP_LO = PortMapping(host_port=5353, container_port=53, protocol="udp", host_ip="127.0.0.1")
CFG = FirewallConfig(ip_masq=True, state_dir="/tmp/s", port_mappings=(TCP, UDP_LO))
C = f"-m comment --comment cni-ignite:{K}"


def att(*addrs: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> Attachment:
    return Attachment(owner=OWNER, addresses=addrs, host_iface="br0")


def test_iptables_ipv4_nat_and_filter() -> None:
    plan = iptables_plan(att(V4), CFG, 4)
    assert iptables_add_text(plan, "nat") == f"""*nat
-N CNI-IGM-{K}
-N CNI-IGD-{K}
-C POSTROUTING -j CNI-IGNITE-POSTRT
-C PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-C OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-A CNI-IGM-{K} -d 10.61.0.0/16 -j RETURN
-A CNI-IGM-{K} -d 224.0.0.0/4 -j RETURN
-A CNI-IGM-{K} -j MASQUERADE
-A CNI-IGNITE-POSTRT-4 -s 10.61.0.2/32 {C} -j CNI-IGM-{K}
-A CNI-IGNITE-DNAT-4 -p tcp -m multiport --dports 8080 {C} -j CNI-IGD-{K}
-A CNI-IGNITE-DNAT-4 -p udp -m multiport --dports 5353 {C} -j CNI-IGD-{K}
-A CNI-IGD-{K} -s 10.61.0.0/16 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.61.0.2:80
-A CNI-IGD-{K} -s 10.61.0.0/16 -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -s 127.0.0.1/32 -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.61.0.2:53
-A CNI-IGNITE-POSTRT-4 -d 10.61.0.2/32 -m mark --mark 0x2000/0x2000 {C} -j MASQUERADE
COMMIT
"""
    assert iptables_add_text(plan, "filter") == f"""*filter
-C FORWARD -j CNI-IGNITE-FWD
-C INPUT -j CNI-IGNITE-INPUT
-A CNI-IGNITE-FWD-4 -d 10.61.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED {C} -j ACCEPT
-A CNI-IGNITE-FWD-4 -d 10.61.0.2/32 -m conntrack --ctstate DNAT {C} -j ACCEPT
-A CNI-IGNITE-FWD-4 -s 10.61.0.2/32 {C} -j ACCEPT
COMMIT
"""


def test_iptables_ipv6_skips_ipv4_host_ips_and_localhost() -> None:
    plan = iptables_plan(att(V4, V6), CFG._replace(forward=False), 6)
    assert iptables_add_text(plan, "nat") == f"""*nat
-N CNI-IGM-{K}
-N CNI-IGD-{K}
-C POSTROUTING -j CNI-IGNITE-POSTRT
-C PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-C OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-A CNI-IGM-{K} -d fd00::/64 -j RETURN
-A CNI-IGM-{K} -d ff00::/8 -j RETURN
-A CNI-IGM-{K} -j MASQUERADE
-A CNI-IGNITE-POSTRT-4 -s fd00::2/128 {C} -j CNI-IGM-{K}
-A CNI-IGNITE-DNAT-4 -p tcp -m multiport --dports 8080 {C} -j CNI-IGD-{K}
-A CNI-IGD-{K} -s fd00::/64 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80
-A CNI-IGNITE-POSTRT-4 -d fd00::2/128 -m mark --mark 0x2000/0x2000 {C} -j MASQUERADE
COMMIT
"""
    assert plan.tables() == ["nat"]


def test_iptables_no_addresses_of_a_family_means_no_rules() -> None:
    assert iptables_plan(att(V4), CFG, 6).rules == []


def test_iptables_external_mark_chain_masq_all_and_conditions() -> None:
    cfg = CFG._replace(ip_masq=False, forward=False, port_mappings=(TCP,), masq_all=True,
                  external_set_mark_chain="KUBE-MARK-MASQ", conditions_v4=("-i", "eth0"))
    assert iptables_add_text(iptables_plan(att(V4), cfg, 4), "nat") == f"""*nat
-N CNI-IGD-{K}
-C PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-C OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-A CNI-IGNITE-DNAT-4 -i eth0 -p tcp -m multiport --dports 8080 {C} -j CNI-IGD-{K}
-A CNI-IGD-{K} -p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ
-A CNI-IGD-{K} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.61.0.2:80
COMMIT
"""


def test_iptables_no_snat_means_no_marks_and_no_hairpin_masquerade() -> None:
    cfg = CFG._replace(ip_masq=False, forward=False, port_mappings=(TCP,), snat=False, mark_masq_bit=3)
    text = iptables_add_text(iptables_plan(att(V4), cfg, 4), "nat")
    assert "MARK" not in text and "MASQUERADE" not in text


def test_iptables_multiport_splits_every_15_ports() -> None:
    maps = tuple(PortMapping(host_port=1000 + i, container_port=80, protocol="tcp") for i in range(16))
    plan = iptables_plan(att(V4), CFG._replace(port_mappings=maps), 4)
    jumps = [r.spec for r in plan.rules if r.chain == "CNI-IGNITE-DNAT-4"]
    assert [j.split()[5] for j in jumps] == [",".join(str(1000 + i) for i in range(15)), "1015"]


def test_iptables_delete_text_removes_shared_rules_then_our_chains() -> None:
    assert iptables_delete_text("nat", ["CNI-IGNITE-POSTRT -s 10.61.0.2/32 -j X"], ["X"]) == \
        "*nat\n:X - [0:0]\n-D CNI-IGNITE-POSTRT -s 10.61.0.2/32 -j X\n-X X\nCOMMIT\n"


def test_iptables_repair_creates_admin_before_forward_jumps_to_it() -> None:
    text = iptables_repair_text(4, "filter", "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    buckets = "0123456789abcdef"
    assert text == "\n".join(["*filter", "-N CNI-IGNITE-ADMIN", "-N CNI-IGNITE-FWD", "-N CNI-IGNITE-INPUT",
                              *(f"-N CNI-IGNITE-FWD-{b}" for b in buckets),
                              "-I CNI-IGNITE-FWD 1 -j CNI-IGNITE-ADMIN", "-I FORWARD 1 -j CNI-IGNITE-FWD",
                              *(f"-A CNI-IGNITE-FWD -j CNI-IGNITE-FWD-{b}" for b in buckets),
                              "-I INPUT 1 -j CNI-IGNITE-INPUT",
                              "-A CNI-IGNITE-INPUT -d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate "
                              "RELATED,ESTABLISHED,DNAT -j DROP", "COMMIT", ""])
    assert ":" not in text.replace("127.0.0.0/8", "")  # shared chains are never declared (that flushes them)


def test_iptables_repair_adds_only_the_missing_entry_rules() -> None:
    saved = "\n".join(["*nat", ":PREROUTING ACCEPT [0:0]", ":CNI-IGNITE-POSTRT - [0:0]", ":CNI-IGNITE-DNAT - [0:0]",
                       *(f":CNI-IGNITE-{c}-{b} - [0:0]" for c in ("POSTRT", "DNAT") for b in "0123456789abcdef"),
                       *(f"-A CNI-IGNITE-{c} -j CNI-IGNITE-{c}-{b}" for c in ("POSTRT", "DNAT")
                         for b in "0123456789abcdef"),
                       "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT",
                       "-A POSTROUTING -j CNI-IGNITE-POSTRT", "COMMIT", ""])
    assert iptables_repair_text(6, "nat", saved) == \
        "*nat\n-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT\nCOMMIT\n"
    full = saved + "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT\n"
    assert iptables_repair_text(4, "nat", full) == ""


def test_iptables_add_checks_its_entry_rules_in_the_batch_and_lists_nothing() -> None:
    plan = iptables_plan(att(V4), CFG, 4)
    checks = [line for t in plan.tables() for line in iptables_add_text(plan, t).splitlines() if line[:3] == "-C "]
    assert checks == ["-C POSTROUTING -j CNI-IGNITE-POSTRT",
                      "-C PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT",
                      "-C OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT",
                      "-C FORWARD -j CNI-IGNITE-FWD", "-C INPUT -j CNI-IGNITE-INPUT"]
    # the guard only where route_localnet is asked for: IPv4 with port mappings, snat and a bridge
    assert not any(e.serves == "CNI-IGNITE-INPUT" for e in iptables_plan(att(V4, V6), CFG, 6).entries)
    assert not any(e.serves == "CNI-IGNITE-INPUT" for e in iptables_plan(att(V4), CFG._replace(snat=False), 4).entries)
    no_maps = iptables_plan(att(V4), CFG._replace(port_mappings=(), forward=False), 4)
    assert iptables_add_text(no_maps, "nat").splitlines()[:3] == ["*nat", f"-N CNI-IGM-{K}",
                                                                   "-C POSTROUTING -j CNI-IGNITE-POSTRT"]
    assert no_maps.tables() == ["nat"]
    # CHECK (not ADD) sees the jumps inside our own chains: the admin jump and the key's buckets
    assert {e.spec for e in plan.entries if not e.on_add} >= {"-j CNI-IGNITE-ADMIN", "-j CNI-IGNITE-POSTRT-4",
                                                               "-j CNI-IGNITE-DNAT-4", "-j CNI-IGNITE-FWD-4"}


def test_iptables_layout_1_records_are_removed_from_the_shared_chains_themselves() -> None:
    old = iptables_plan(att(V4), CFG, 4, layout=1)
    assert {r.chain for r in old.rules} == {f"CNI-IGM-{K}", f"CNI-IGD-{K}", "CNI-IGNITE-POSTRT", "CNI-IGNITE-DNAT",
                                            "CNI-IGNITE-FWD"}


def shared(prefix: str, *rules: str) -> str:
    """The name of a chain shared by content: prefix-sha256(its rules)[:20]."""
    return f"{prefix}-{hashlib.sha256(chr(10).join(rules).encode()).hexdigest()[:20]}"


def test_nft_attachment_is_elements_keyed_by_family_interface_and_port() -> None:
    t = "inet cni_ignite"
    c = f'comment "cni-ignite:{K}"'
    m4, m6 = shared("m", "ip daddr != 10.61.0.0/16 masquerade"), shared("m", "ip6 daddr != fd00::/64 masquerade")
    h4 = shared("h", "ip saddr 10.61.0.0/16 masquerade", "ip saddr 127.0.0.1 masquerade")
    h6 = shared("h", "ip6 saddr fd00::/64 masquerade")
    assert nft_add_text(nft_plan(att(V4, V6), CFG)) == f"""add chain {t} {m4}
flush chain {t} {m4}
add rule {t} {m4} ip daddr != 10.61.0.0/16 masquerade comment "masquerade unless to 10.61.0.0/16"
add chain {t} {h4}
flush chain {t} {h4}
add rule {t} {h4} ip saddr 10.61.0.0/16 masquerade comment "hairpin masquerade from 10.61.0.0/16"
add rule {t} {h4} ip saddr 127.0.0.1 masquerade comment "localhost masquerade"
add chain {t} {m6}
flush chain {t} {m6}
add rule {t} {m6} ip6 daddr != fd00::/64 masquerade comment "masquerade unless to fd00::/64"
add chain {t} {h6}
flush chain {t} {h6}
add rule {t} {h6} ip6 saddr fd00::/64 masquerade comment "hairpin masquerade from fd00::/64"
add element {t} masq4 {{ "br0" . 10.61.0.2 {c} : jump {m4} }}
add element {t} dnat4 {{ tcp . 8080 {c} : 10.61.0.2 . 80 }}
add element {t} hostdnat4 {{ 127.0.0.1 . udp . 5353 {c} : 10.61.0.2 . 53 }}
add element {t} hairpin4 {{ "br0" . 10.61.0.2 {c} : jump {h4} }}
add element {t} accept4 {{ "br0" . 10.61.0.2 {c} }}
add element {t} acceptdnat4 {{ "br0" . 10.61.0.2 {c} }}
add element {t} masq6 {{ "br0" . fd00::2 {c} : jump {m6} }}
add element {t} dnat6 {{ tcp . 8080 {c} : fd00::2 . 80 }}
add element {t} hairpin6 {{ "br0" . fd00::2 {c} : jump {h6} }}
add element {t} accept6 {{ "br0" . fd00::2 {c} }}
add element {t} acceptdnat6 {{ "br0" . fd00::2 {c} }}
"""


def test_nft_attachments_of_one_subnet_share_its_masquerade_chains() -> None:
    other = nft_plan(Attachment(owner=Owner("net1", "c2", "eth0"), addresses=(ipaddress.ip_interface("10.61.0.3/16"),),
                                host_iface="br0"), CFG)
    assert other.shared == nft_plan(att(V4), CFG).shared
    assert nft_plan(att(V4), CFG._replace(snat=False)).shared.keys() < other.shared.keys()


def test_nft_uses_no_interval_set() -> None:
    # nft 1.0.6 fetches every element of an interval set to delete one: DEL would grow with attachments
    assert "interval" not in nft_bootstrap_text()


def test_nft_any_address_mappings_of_two_families_go_to_two_maps() -> None:
    v4 = nft_plan(att(V4), CFG._replace(port_mappings=(TCP._replace(host_ip="0.0.0.0"),)))
    v6 = nft_plan(att(V6), CFG._replace(port_mappings=(TCP._replace(host_ip="::"),)))
    assert [e for e in v4.elements if e.set.startswith("dnat")] == [("dnat4", "tcp . 8080", "10.61.0.2 . 80")]
    assert [e for e in v6.elements if e.set.startswith("dnat")] == [("dnat6", "tcp . 8080", "fd00::2 . 80")]


def test_nft_bootstrap_declares_everything_and_never_flushes_admin() -> None:
    text = nft_bootstrap_text()
    assert "add chain inet cni_ignite admin\n" in text
    assert "flush chain inet cni_ignite admin" not in text
    assert text.index("filter-forward jump admin") < text.index("filter-forward ct state established")
    for name in ("masq", "hairpin", "hairpinall", "accept", "acceptdnat", "dnat", "hostdnat", "cdnat", "chostdnat"):
        for family in (4, 6):
            assert f" {name}{family} {{ type " in text, (name, family)
    # layout 1's base chains and maps are not touched: its attachments keep working until their DEL
    for old in (" prerouting {", " postrouting {", " forward {", " post4 ", " fwd4 ", " ports "):
        assert old not in text, old


def test_nft_conditions_keep_a_small_chain_reached_by_a_verdict_map() -> None:
    cfg = CFG._replace(ip_masq=False, forward=False, port_mappings=(TCP,), masq_all=True,
                       conditions_v4=("iifname", '"eth0"'))
    plan = nft_plan(att(V4), cfg)
    assert plan.chains == {f"c-{K}": [('meta nfproto ipv4 iifname "eth0" tcp dport 8080 dnat ip to 10.61.0.2:80',
                                       "DNAT tcp *:8080 -> 10.61.0.2:80")]}
    assert plan.elements == [("cdnat4", "tcp . 8080", f"jump c-{K}"), ("hairpinall4", '"br0" . 10.61.0.2', "")]
    assert plan.shared == {}


def test_nft_needs_a_plain_host_interface_name() -> None:
    from cni_ignite.errors import InvalidConfig

    for bad in ("", 'br"0', "br 0", "a" * 16):
        with pytest.raises(InvalidConfig):
            nft_plan(Attachment(owner=OWNER, addresses=(V4,), host_iface=bad), CFG)


def test_nft_delete_text_adds_before_deleting_so_absent_items_do_not_fail() -> None:
    plan = nft_plan(att(V4), CFG._replace(port_mappings=(TCP,), forward=False, snat=False))
    m4 = shared("m", "ip daddr != 10.61.0.0/16 masquerade")
    assert nft_delete_text(plan.elements, list(plan.chains), ensure=True) == f"""add element inet cni_ignite masq4 {{ "br0" . 10.61.0.2 : jump {m4} }}
delete element inet cni_ignite masq4 {{ "br0" . 10.61.0.2 }}
add element inet cni_ignite dnat4 {{ tcp . 8080 : 10.61.0.2 . 80 }}
delete element inet cni_ignite dnat4 {{ tcp . 8080 }}
"""  # the shared chain stays: other attachments of the subnet may jump to it


def test_nft_layout_1_text_is_what_the_earlier_code_made() -> None:
    # pinned: DEL rebuilds a layout-1 attachment's elements and chains from its state record with it
    from cni_ignite.firewall import nft_legacy

    plan = nft_legacy.nft_plan(att(V4), CFG._replace(port_mappings=(TCP,)))
    t = "inet cni_ignite"
    text = nft_legacy.nft_add_text(plan, bootstrap=False)
    assert text == f"""add chain {t} p-{K}
flush chain {t} p-{K}
add rule {t} p-{K} ip saddr 10.61.0.2 ip daddr != 10.61.0.0/16 ip daddr != 224.0.0.0/4 masquerade comment "masquerade of 10.61.0.2"
add rule {t} p-{K} ct status dnat ip daddr 10.61.0.2 ip saddr 10.61.0.0/16 masquerade comment "hairpin masquerade to 10.61.0.2"
add rule {t} p-{K} ct status dnat ip daddr 10.61.0.2 ip saddr 127.0.0.1 masquerade comment "localhost masquerade to 10.61.0.2"
add chain {t} d-{K}
flush chain {t} d-{K}
add rule {t} d-{K} meta nfproto ipv4 tcp dport 8080 dnat ip to 10.61.0.2:80 comment "DNAT tcp *:8080 -> 10.61.0.2:80"
add chain {t} f-{K}
flush chain {t} f-{K}
add rule {t} f-{K} ip daddr 10.61.0.2 ct state established,related accept comment "forward accept to 10.61.0.2"
add rule {t} f-{K} ip daddr 10.61.0.2 ct status dnat accept comment "forward accept of DNAT to 10.61.0.2"
add rule {t} f-{K} ip saddr 10.61.0.2 accept comment "forward accept from 10.61.0.2"
add element {t} post4 {{ 10.61.0.2 : jump p-{K} }}
add element {t} ports {{ tcp . 8080 : jump d-{K} }}
add element {t} fwd4 {{ 10.61.0.2 : jump f-{K} }}
"""
    assert nft_legacy.nft_delete_text(plan.elements[:1], [f"p-{K}"], ensure=True) == f"""add chain {t} p-{K}
add element {t} post4 {{ 10.61.0.2 : jump p-{K} }}
delete element {t} post4 {{ 10.61.0.2 }}
flush chain {t} p-{K}
delete chain {t} p-{K}
"""
