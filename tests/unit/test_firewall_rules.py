# ruff: noqa: E501
"""Exact rule text of one attachment in both backends (like the reference's knftables fake tests)."""

from __future__ import annotations

import ipaddress

from cni_ignite.firewall.base import Attachment, FirewallConfig, Owner, PortMapping
from cni_ignite.firewall.rules import (
    entries_missing,
    entry_listings,
    iptables_add_text,
    iptables_delete_text,
    iptables_plan,
    iptables_repair_text,
    nft_add_text,
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
:CNI-IGM-{K} - [0:0]
:CNI-IGD-{K} - [0:0]
-A CNI-IGM-{K} -d 10.61.0.0/16 -j RETURN
-A CNI-IGM-{K} -d 224.0.0.0/4 -j RETURN
-A CNI-IGM-{K} -j MASQUERADE
-A CNI-IGNITE-POSTRT -s 10.61.0.2/32 {C} -j CNI-IGM-{K}
-A CNI-IGNITE-DNAT -p tcp -m multiport --dports 8080 {C} -j CNI-IGD-{K}
-A CNI-IGNITE-DNAT -p udp -m multiport --dports 5353 {C} -j CNI-IGD-{K}
-A CNI-IGD-{K} -s 10.61.0.0/16 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.61.0.2:80
-A CNI-IGD-{K} -s 10.61.0.0/16 -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -s 127.0.0.1/32 -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.61.0.2:53
-A CNI-IGNITE-POSTRT -d 10.61.0.2/32 -m mark --mark 0x2000/0x2000 {C} -j MASQUERADE
COMMIT
"""
    assert iptables_add_text(plan, "filter") == f"""*filter
-A CNI-IGNITE-FWD -d 10.61.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED {C} -j ACCEPT
-A CNI-IGNITE-FWD -d 10.61.0.2/32 -m conntrack --ctstate DNAT {C} -j ACCEPT
-A CNI-IGNITE-FWD -s 10.61.0.2/32 {C} -j ACCEPT
COMMIT
"""


def test_iptables_ipv6_skips_ipv4_host_ips_and_localhost() -> None:
    plan = iptables_plan(att(V4, V6), CFG._replace(forward=False), 6)
    assert iptables_add_text(plan, "nat") == f"""*nat
:CNI-IGM-{K} - [0:0]
:CNI-IGD-{K} - [0:0]
-A CNI-IGM-{K} -d fd00::/64 -j RETURN
-A CNI-IGM-{K} -d ff00::/8 -j RETURN
-A CNI-IGM-{K} -j MASQUERADE
-A CNI-IGNITE-POSTRT -s fd00::2/128 {C} -j CNI-IGM-{K}
-A CNI-IGNITE-DNAT -p tcp -m multiport --dports 8080 {C} -j CNI-IGD-{K}
-A CNI-IGD-{K} -s fd00::/64 -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x2000/0x2000
-A CNI-IGD-{K} -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00::2]:80
-A CNI-IGNITE-POSTRT -d fd00::2/128 -m mark --mark 0x2000/0x2000 {C} -j MASQUERADE
COMMIT
"""
    assert plan.tables() == ["nat"]


def test_iptables_no_addresses_of_a_family_means_no_rules() -> None:
    assert iptables_plan(att(V4), CFG, 6).rules == []


def test_iptables_external_mark_chain_masq_all_and_conditions() -> None:
    cfg = CFG._replace(ip_masq=False, forward=False, port_mappings=(TCP,), masq_all=True,
                  external_set_mark_chain="KUBE-MARK-MASQ", conditions_v4=("-i", "eth0"))
    assert iptables_add_text(iptables_plan(att(V4), cfg, 4), "nat") == f"""*nat
:CNI-IGD-{K} - [0:0]
-A CNI-IGNITE-DNAT -i eth0 -p tcp -m multiport --dports 8080 {C} -j CNI-IGD-{K}
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
    jumps = [r.spec for r in plan.rules if r.chain == "CNI-IGNITE-DNAT"]
    assert [j.split()[5] for j in jumps] == [",".join(str(1000 + i) for i in range(15)), "1015"]


def test_iptables_delete_text_removes_shared_rules_then_our_chains() -> None:
    assert iptables_delete_text("nat", ["CNI-IGNITE-POSTRT -s 10.61.0.2/32 -j X"], ["X"]) == \
        "*nat\n:X - [0:0]\n-D CNI-IGNITE-POSTRT -s 10.61.0.2/32 -j X\n-X X\nCOMMIT\n"


def test_iptables_repair_creates_admin_before_forward_jumps_to_it() -> None:
    text = iptables_repair_text(4, "filter", "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
    assert text == """*filter
-N CNI-IGNITE-ADMIN
-N CNI-IGNITE-FWD
-N CNI-IGNITE-INPUT
-I CNI-IGNITE-FWD 1 -j CNI-IGNITE-ADMIN
-I FORWARD 1 -j CNI-IGNITE-FWD
-I INPUT 1 -j CNI-IGNITE-INPUT
-A CNI-IGNITE-INPUT -d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
"""
    assert ":" not in text.replace("127.0.0.0/8", "")  # shared chains are never declared (that flushes them)


def test_iptables_repair_adds_only_the_missing_entry_rules() -> None:
    saved = """*nat
:PREROUTING ACCEPT [0:0]
:CNI-IGNITE-POSTRT - [0:0]
:CNI-IGNITE-DNAT - [0:0]
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-A POSTROUTING -j CNI-IGNITE-POSTRT
COMMIT
"""
    assert iptables_repair_text(6, "nat", saved) == \
        "*nat\n-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT\nCOMMIT\n"
    full = saved + "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT\n"
    assert iptables_repair_text(4, "nat", full) == ""


def test_iptables_add_verifies_the_entry_rules_it_needs_by_listing_constant_chains() -> None:
    plan = iptables_plan(att(V4), CFG, 4)
    assert entry_listings(plan) == [("nat", "POSTROUTING"), ("nat", "PREROUTING"), ("nat", "OUTPUT"),
                                    ("filter", "FORWARD"), ("filter", "INPUT")]
    listed = {
        ("nat", "POSTROUTING"): "-P POSTROUTING ACCEPT\n-A POSTROUTING -j CNI-IGNITE-POSTRT\n",
        ("nat", "PREROUTING"): "-P PREROUTING ACCEPT\n-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT\n",
        ("nat", "OUTPUT"): "-P OUTPUT ACCEPT\n-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT\n",
        ("filter", "FORWARD"): "-P FORWARD DROP\n-A FORWARD -j OTHER\n-A FORWARD -j CNI-IGNITE-FWD\n",
        ("filter", "INPUT"): "-P INPUT ACCEPT\n-A INPUT -j CNI-IGNITE-INPUT\n",
        ("filter", "CNI-IGNITE-INPUT"): "-N CNI-IGNITE-INPUT\n-A CNI-IGNITE-INPUT -d 127.0.0.0/8 ! -i lo -m conntrack "
                                        "! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n",
    }
    assert not entries_missing(plan, listed)
    assert entries_missing(plan, {**listed, ("filter", "INPUT"): "-P INPUT ACCEPT\n"})
    assert entries_missing(plan, {**listed, ("nat", "OUTPUT"): None})
    # the guard only where route_localnet is asked for: IPv4 with port mappings, snat and a bridge
    assert not any(e.serves == "CNI-IGNITE-INPUT" for e in iptables_plan(att(V4, V6), CFG, 6).entries)
    assert not any(e.serves == "CNI-IGNITE-INPUT" for e in iptables_plan(att(V4), CFG._replace(snat=False), 4).entries)
    no_maps = iptables_plan(att(V4), CFG._replace(port_mappings=(), forward=False), 4)
    assert entry_listings(no_maps) == [("nat", "POSTROUTING")]
    assert no_maps.tables() == ["nat"]


def test_nft_attachment_chains_and_elements() -> None:
    text = nft_add_text(nft_plan(att(V4, V6), CFG))
    own = text[text.index(f"add chain inet cni_ignite p-{K}"):]
    t = "inet cni_ignite"
    assert own == f"""add chain {t} p-{K}
flush chain {t} p-{K}
add rule {t} p-{K} ip saddr 10.61.0.2 ip daddr != 10.61.0.0/16 ip daddr != 224.0.0.0/4 masquerade comment "masquerade of 10.61.0.2"
add rule {t} p-{K} ct status dnat ip daddr 10.61.0.2 ip saddr 10.61.0.0/16 masquerade comment "hairpin masquerade to 10.61.0.2"
add rule {t} p-{K} ct status dnat ip daddr 10.61.0.2 ip saddr 127.0.0.1 masquerade comment "localhost masquerade to 10.61.0.2"
add rule {t} p-{K} ip6 saddr fd00::2 ip6 daddr != fd00::/64 ip6 daddr != ff00::/8 masquerade comment "masquerade of fd00::2"
add rule {t} p-{K} ct status dnat ip6 daddr fd00::2 ip6 saddr fd00::/64 masquerade comment "hairpin masquerade to fd00::2"
add chain {t} d-{K}
flush chain {t} d-{K}
add rule {t} d-{K} meta nfproto ipv4 tcp dport 8080 dnat ip to 10.61.0.2:80 comment "DNAT tcp *:8080 -> 10.61.0.2:80"
add rule {t} d-{K} ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.61.0.2:53 comment "DNAT udp 127.0.0.1:5353 -> 10.61.0.2:53"
add rule {t} d-{K} meta nfproto ipv6 tcp dport 8080 dnat ip6 to [fd00::2]:80 comment "DNAT tcp *:8080 -> [fd00::2]:80"
add chain {t} f-{K}
flush chain {t} f-{K}
add rule {t} f-{K} ip daddr 10.61.0.2 ct state established,related accept comment "forward accept to 10.61.0.2"
add rule {t} f-{K} ip daddr 10.61.0.2 ct status dnat accept comment "forward accept of DNAT to 10.61.0.2"
add rule {t} f-{K} ip saddr 10.61.0.2 accept comment "forward accept from 10.61.0.2"
add rule {t} f-{K} ip6 daddr fd00::2 ct state established,related accept comment "forward accept to fd00::2"
add rule {t} f-{K} ip6 daddr fd00::2 ct status dnat accept comment "forward accept of DNAT to fd00::2"
add rule {t} f-{K} ip6 saddr fd00::2 accept comment "forward accept from fd00::2"
add element {t} post4 {{ 10.61.0.2 : jump p-{K} }}
add element {t} ports {{ tcp . 8080 : jump d-{K} }}
add element {t} hostports4 {{ 127.0.0.1 . udp . 5353 : jump d-{K} }}
add element {t} fwd4 {{ 10.61.0.2 : jump f-{K} }}
add element {t} post6 {{ fd00::2 : jump p-{K} }}
add element {t} fwd6 {{ fd00::2 : jump f-{K} }}
"""


def test_nft_base_chains_are_rewritten_but_admin_never_flushed() -> None:
    text = nft_add_text(nft_plan(att(V4), CFG))
    assert "add chain inet cni_ignite admin\n" in text
    assert "flush chain inet cni_ignite admin" not in text
    assert "add rule inet cni_ignite forward jump admin\n" in text
    assert text.index("forward jump admin") < text.index("forward ip daddr vmap @fwd4")


def test_nft_conditions_and_masq_all() -> None:
    cfg = CFG._replace(ip_masq=False, forward=False, port_mappings=(TCP,), masq_all=True,
                  conditions_v4=("iifname", '"eth0"'))
    plan = nft_plan(att(V4), cfg)
    assert plan.chains[f"d-{K}"][0][0] == 'meta nfproto ipv4 iifname "eth0" tcp dport 8080 dnat ip to 10.61.0.2:80'
    assert [r for r, _ in plan.chains[f"p-{K}"]] == ["ct status dnat ip daddr 10.61.0.2 masquerade"]


def test_nft_delete_text_adds_before_deleting_so_absent_items_do_not_fail() -> None:
    plan = nft_plan(att(V4), CFG._replace(port_mappings=(), forward=False))
    assert nft_delete_text(plan.elements, [f"p-{K}"], ensure=True) == f"""add chain inet cni_ignite p-{K}
add element inet cni_ignite post4 {{ 10.61.0.2 : jump p-{K} }}
delete element inet cni_ignite post4 {{ 10.61.0.2 }}
flush chain inet cni_ignite p-{K}
delete chain inet cni_ignite p-{K}
"""
