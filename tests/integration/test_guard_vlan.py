"""The isolation guard (issue 15) on VLAN-tagged frames, on the real kernel, at the guard's level.

This kernel has no CONFIG_BRIDGE_VLAN_FILTERING, so ignite-bridge refuses ``vlan``/``vlanTrunk`` (test_bridge_keys
skips those tests). The guard is tested here without the plugin: a throwaway host namespace with a bridge (no
VLAN filtering) and two ports, A (a trunk: ``trunk=True``, what the plugin passes for ``vlanTrunk``) and B (an
access port), guarded by the guard modules' own ``nft.apply`` (the same text the plugin sends when the
firewall's transaction does not carry it). A sends 802.1Q-tagged frames with an AF_PACKET raw socket (the tag
in the frame's bytes) and B counts what arrives. Every case runs with the veths' 802.1Q offloads
(``rxvlan``/``txvlan``) on and off, and once without the guard, where every attack arrives (so a 0 with the
guard is the guard's doing, not the topology's).

What the bridge hook sees (test_what_the_bridge_hook_sees_of_a_tagged_frame): the receive path moves the outer
tag into the skb's metadata whatever the offloads (``skb_vlan_untag`` in ``__netif_receive_skb_core``), so
nftables' bridge family reads ``ether type 8021q`` and ``vlan id``/``vlan type`` (link-header loads rebuild
the tag) while ``meta protocol``, the network header and the L4 header are the inner packet's. A second tag
(QinQ) stays in the payload: ``meta protocol 8021q``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attack
from attack import A6, A_LL, A_MAC, B6, B_MAC, EVIL_MAC, GW, GW6, GW_MAC, A, B
from nsutil import in_ns

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nsutil import Namespaces

pytestmark = pytest.mark.privileged

ATTACK = str(Path(attack.__file__).resolve())
REPO = str(Path(__file__).resolve().parents[2])
VID = 100
ALL_NODES = "33:33:00:00:00:01"


class Lan(NamedTuple):
    host: str
    a: str  # the trunk port's container
    b: str  # the access port's container
    guarded: bool


def host_py(host: str, code: str) -> str:
    return in_ns(host, [sys.executable, "-c", code], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                             "PYTHONPATH": REPO}).stdout.decode()


def guard(host: str, port: str, mac: str, v4: str, v6: str, *, trunk: bool) -> None:
    host_py(host, "import ipaddress as i; from cni_ignite.guard import rules, nft; "
                  f"nft.apply(rules.attachment({port!r}, [{mac!r}], [i.ip_address({v4!r}), i.ip_address({v6!r})], "
                  f"trunk={trunk!r}))")


def offload(ns: str, iface: str, on: bool) -> None:
    state = "on" if on else "off"
    got = json.loads(in_ns(ns, [sys.executable, ATTACK, "vlan-offload", iface, f"rxvlan={state}",
                                f"txvlan={state}"]).stdout)
    assert got == {"rxvlan": on, "txvlan": on}, got


def build(netns: Namespaces, *, guarded: bool, offloads: bool) -> Lan:
    host, a, b = netns.new("cnit-vhost"), netns.new("cnit-va"), netns.new("cnit-vb")
    in_ns(host, ["ip", "link", "add", "ignite0", "address", GW_MAC, "type", "bridge"])
    in_ns(host, ["ip", "addr", "add", f"{GW}/16", "dev", "ignite0"])
    in_ns(host, ["ip", "link", "set", "ignite0", "up"])
    for ns, port, mac, v4, v6, trunk in ((a, "vethva", A_MAC, A, A6, True), (b, "vethvb", B_MAC, B, B6, False)):
        in_ns(host, ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        in_ns(ns, ["ip", "link", "set", "eth0", "address", mac])
        offload(ns, "eth0", offloads)
        offload(host, port, offloads)
        in_ns(ns, ["ip", "link", "set", "eth0", "up"])
        if guarded:
            guard(host, port, mac, v4, v6, trunk=trunk)
        in_ns(host, ["ip", "link", "set", port, "master", "ignite0", "up"])
    return Lan(host, a, b, guarded)


@pytest.fixture(params=[(True, True), (True, False), (False, True)],
                ids=["guard-offload-on", "guard-offload-off", "no-guard"])
def lan(request: pytest.FixtureRequest, netns: Namespaces) -> Iterator[Lan]:
    guarded, offloads = request.param
    yield build(netns, guarded=guarded, offloads=offloads)


def arrived(lan: Lan, frame: bytes, marker: bytes, *, sender: str = "a") -> int:
    """How many copies of `frame` (sent twice) B's eth0 receives (A's, when B sends), by `marker`."""
    src, dst = (lan.a, lan.b) if sender == "a" else (lan.b, lan.a)
    return attack.count_around(dst, "eth0", marker,
                               lambda: in_ns(src, [sys.executable, ATTACK, "send", "eth0", frame.hex(), frame.hex()]))


def tag(inner: bytes, vid: int = VID) -> bytes:
    return attack.tagged(inner, vid)


# The attacks, each a tagged frame from the trunk port A and the bytes that identify it at B (its L3 packet).
def _ip_forged_source() -> tuple[bytes, bytes]:
    pkt = attack.udp4(B, GW, 4000, 9, b"MARK-v-sip4")
    return tag(attack.eth(B_MAC, A_MAC, attack.ETH_IP, pkt)), pkt


def _ip6_forged_source() -> tuple[bytes, bytes]:
    pkt = attack.udp6(B6, GW6, 4000, 9, b"MARK-v-sip6")
    return tag(attack.eth(B_MAC, A_MAC, attack.ETH_IP6, pkt)), pkt


def _arp_gateway_is_at_a() -> tuple[bytes, bytes]:
    pkt = attack.arp(2, A_MAC, GW, B_MAC, B)
    return tag(attack.eth(B_MAC, A_MAC, attack.ETH_ARP, pkt)), pkt


def _arp_b_is_at_a() -> tuple[bytes, bytes]:
    pkt = attack.arp(2, A_MAC, B, GW_MAC, GW)
    return tag(attack.eth(attack.BROADCAST, A_MAC, attack.ETH_ARP, pkt)), pkt


def _gratuitous_arp_for_b() -> tuple[bytes, bytes]:
    pkt = attack.arp(1, A_MAC, B, "00:00:00:00:00:00", B)
    return tag(attack.eth(attack.BROADCAST, A_MAC, attack.ETH_ARP, pkt)), pkt


def _neighbour_advert_for_b() -> tuple[bytes, bytes]:
    pkt = attack.neighbor_advert(A6, "ff02::1", B6, A_MAC)  # from A's own address: only the target check stops it
    return tag(attack.eth(ALL_NODES, A_MAC, attack.ETH_IP6, pkt)), pkt


def _router_advert() -> tuple[bytes, bytes]:
    pkt = attack.router_advert(A_LL, A_MAC, "2001:db8:bad::/64")  # from A's own link-local
    return tag(attack.eth(ALL_NODES, A_MAC, attack.ETH_IP6, pkt)), pkt


def _dhcp_offer() -> tuple[bytes, bytes]:
    pkt = attack.udp4(A, "255.255.255.255", 67, 68, attack.bootp(2, B_MAC, b"MARK-v-offer", yiaddr="10.61.9.9",
                                                                 msg_type=2))
    return tag(attack.eth(attack.BROADCAST, A_MAC, attack.ETH_IP, pkt)), pkt


def _dhcpv6_advertise() -> tuple[bytes, bytes]:
    pkt = attack.udp6(A_LL, "ff02::1", 547, 546, b"\x02\x12\x34\x56MARK-v-adv6")
    return tag(attack.eth(ALL_NODES, A_MAC, attack.ETH_IP6, pkt)), pkt


def _forged_source_mac() -> tuple[bytes, bytes]:
    pkt = attack.udp4(A, B, 4000, 9, b"MARK-v-smac")
    return tag(attack.eth(B_MAC, EVIL_MAC, attack.ETH_IP, pkt)), pkt


def _qinq() -> tuple[bytes, bytes]:
    pkt = attack.udp4(A, B, 4000, 9, b"MARK-v-qinq")  # A's own addresses, but under a second tag
    return tag(tag(attack.eth(B_MAC, A_MAC, attack.ETH_IP, pkt), 200)), pkt


def _qinq_forged_source() -> tuple[bytes, bytes]:
    pkt = attack.udp4(B, GW, 4000, 9, b"MARK-v-qinq-sip")
    return tag(tag(attack.eth(B_MAC, A_MAC, attack.ETH_IP, pkt), 200)), pkt


def _s_tag() -> tuple[bytes, bytes]:
    pkt = attack.udp4(A, B, 4000, 9, b"MARK-v-8021ad")  # A's own addresses, under an 802.1ad tag
    return attack.tagged(attack.eth(B_MAC, A_MAC, attack.ETH_IP, pkt), VID, attack.ETH_QINQ), pkt


def _other_inner_ethertype() -> tuple[bytes, bytes]:
    pkt = b"MARK-v-rarp" + bytes(30)
    return tag(attack.eth(attack.BROADCAST, A_MAC, 0x8035, pkt)), pkt  # RARP


ATTACKS = {f.__name__.lstrip("_"): f for f in (
    _ip_forged_source, _ip6_forged_source, _arp_gateway_is_at_a, _arp_b_is_at_a, _gratuitous_arp_for_b,
    _neighbour_advert_for_b, _router_advert, _dhcp_offer, _dhcpv6_advertise, _forged_source_mac, _qinq,
    _qinq_forged_source, _s_tag, _other_inner_ethertype)}


@pytest.mark.parametrize("name", ATTACKS)
def test_tagged_attack_from_a_trunk_port(lan: Lan, name: str) -> None:
    frame, marker = ATTACKS[name]()
    got = arrived(lan, frame, marker)
    assert (got == 0) is lan.guarded, f"{name}: {got} arrived (guard {'on' if lan.guarded else 'off'})"


# What a trunk port may send inside a tag: the same as untagged.
def _own_ip() -> bytes:
    return attack.eth(B_MAC, A_MAC, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-v-own4"))


def _own_arp_request() -> bytes:
    return attack.eth(attack.BROADCAST, A_MAC, attack.ETH_ARP, attack.arp(1, A_MAC, A, "00:00:00:00:00:00", B))


def _own_arp_reply() -> bytes:
    return attack.eth(B_MAC, A_MAC, attack.ETH_ARP, attack.arp(2, A_MAC, A, B_MAC, B))


def _own_ip6() -> bytes:
    return attack.eth(B_MAC, A_MAC, attack.ETH_IP6, attack.udp6(A6, B6, 4000, 9, b"MARK-v-own6"))


def _own_link_local() -> bytes:
    return attack.eth(B_MAC, A_MAC, attack.ETH_IP6, attack.udp6(A_LL, "fe80::61:ff:fe00:3", 4000, 9, b"MARK-v-ll"))


def _own_neighbour_advert() -> bytes:
    return attack.eth(B_MAC, A_MAC, attack.ETH_IP6, attack.neighbor_advert(A6, B6, A6, A_MAC))


def _dad_probe() -> bytes:
    probe = attack.neighbor_solicit("::", "ff02::1:ff00:2", A6, None)
    return attack.eth("33:33:ff:00:00:02", A_MAC, attack.ETH_IP6, probe)


def _dhcp_discover() -> bytes:
    return attack.eth(attack.BROADCAST, A_MAC, attack.ETH_IP, attack.udp4(
        "0.0.0.0", "255.255.255.255", 68, 67, attack.bootp(1, A_MAC, b"MARK-v-disc")))


LEGIT = {f.__name__.lstrip("_"): f for f in (
    _own_ip, _own_arp_request, _own_arp_reply, _own_ip6, _own_link_local, _own_neighbour_advert, _dad_probe,
    _dhcp_discover)}


@pytest.mark.parametrize("name", LEGIT)
def test_tagged_own_traffic_from_a_trunk_port_passes(lan: Lan, name: str) -> None:
    inner = LEGIT[name]()
    assert arrived(lan, tag(inner), inner[14:]) > 0, name


def test_tagged_frame_from_an_access_port(lan: Lan) -> None:
    pkt = attack.udp4(B, A, 4000, 9, b"MARK-v-access")  # B's own addresses: only the tag is wrong
    frame = tag(attack.eth(A_MAC, B_MAC, attack.ETH_IP, pkt))
    got = arrived(lan, frame, pkt, sender="b")
    assert (got == 0) is lan.guarded, got
    untagged = attack.eth(A_MAC, B_MAC, attack.ETH_IP, pkt)
    assert arrived(lan, untagged, pkt, sender="b") > 0


COUNTERS = {  # name: the match (iifname "vethva" first), as in the bridge family's prerouting hook
    "ether-8021q": "ether type 8021q", "ether-8021ad": "ether type 8021ad", "ether-ip": "ether type ip",
    "vlan-id": f"vlan id {VID}", "vlan-type-ip": "vlan type ip", "vlan-type-8021q": "vlan type 8021q",
    "meta-ip": "meta protocol ip", "meta-8021q": "meta protocol 8021q", "l4-udp": "meta l4proto udp",
    "saddr": f"meta protocol ip ip saddr {A}",
}


@pytest.mark.parametrize("offloads", [True, False], ids=["offload-on", "offload-off"])
def test_what_the_bridge_hook_sees_of_a_tagged_frame(netns: Namespaces, offloads: bool) -> None:
    """The facts the guard's rules rest on (rules.CHAINS): the outer tag, whether the veth's offloads are on or
    off, is seen by link-header matches while meta protocol, the network and the transport header are the
    inner packet's; a second tag stays in the payload. Counted by a table before the guard's (none here)."""
    lan = build(netns, guarded=False, offloads=offloads)
    rules = "".join(f'iifname "vethva" {match} counter comment "{name}"\n' for name, match in COUNTERS.items())
    in_ns(lan.host, ["nft", "-f", "-"], input=(
        "table bridge probe {\nchain pre {\ntype filter hook prerouting priority -400; policy accept;\n"
        f"{rules}}}\n}}\n").encode())

    def seen(frame: bytes) -> set[str]:
        before = counts()
        in_ns(lan.a, [sys.executable, ATTACK, "send", "eth0", frame.hex()])
        return {name for name, n in counts().items() if n > before[name]}

    def counts() -> dict[str, int]:
        listed = json.loads(in_ns(lan.host, ["nft", "-j", "list", "table", "bridge", "probe"]).stdout)
        out = {}
        for item in listed["nftables"]:
            rule = item.get("rule")
            if rule:
                packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
                out[rule["comment"]] = packets
        return out

    own = attack.eth(B_MAC, A_MAC, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-probe"))
    assert seen(tag(own)) == {"ether-8021q", "vlan-id", "vlan-type-ip", "meta-ip", "l4-udp", "saddr"}
    assert seen(attack.tagged(own, VID, attack.ETH_QINQ)) == {"ether-8021ad", "meta-ip", "l4-udp", "saddr"}
    assert seen(tag(tag(own, 200))) == {"ether-8021q", "vlan-id", "vlan-type-8021q", "meta-8021q"}
    assert seen(own) == {"ether-ip", "meta-ip", "l4-udp", "saddr"}


def test_protocol_chains_never_read_the_outer_ethertype(netns: Namespaces) -> None:
    """nft's bytecode of the skeleton: only prerouting and guard_vlan load the link header's ethertype (offset
    12); every other chain depends on meta protocol or the L4 protocol, which are a tagged frame's inner
    ones. A rule added later with an implicit ``ether type`` dependency would fail here (and let a tagged
    frame skip it)."""
    from cni_ignite.guard import rules

    ns = netns.new("cnit-vbc")
    out = in_ns(ns, ["nft", "--debug=netlink", "-f", "-"], input=rules.skeleton().encode()).stdout.decode()
    chain, reads = "", set()
    for line in out.splitlines():
        if line.startswith(f"{rules.TABLE} "):
            chain = line.split()[2]
        elif "@ link header + 12" in line:
            reads.add(chain)
    assert reads == {"prerouting", "guard_vlan"}, reads


def test_check_of_a_trunk_port_and_a_layout_of_another_version(netns: Namespaces) -> None:
    lan = build(netns, guarded=True, offloads=True)
    att = ("import ipaddress as i; from cni_ignite.guard import rules, nft; a = rules.attachment('vethva', "
           f"[{A_MAC!r}], [i.ip_address({A!r}), i.ip_address({A6!r})], trunk=True); ")
    assert host_py(lan.host, att + "print(nft.check(a))").strip() == "[]"  # the listing matches rules.CHAINS
    from cni_ignite.guard import rules

    in_ns(lan.host, ["nft", "delete", "chain", "bridge", "cni_ignite_guard", rules.MARK])
    assert "another version" in host_py(lan.host, att + "print(nft.check(a))")
    host_py(lan.host, att + "nft.remove('vethva', a)")  # DEL of a trunk port removes its trunks element too
    trunks = in_ns(lan.host, ["nft", "list", "set", "bridge", "cni_ignite_guard", "trunks"]).stdout.decode()
    assert "vethva" not in trunks


def test_next_add_replaces_an_older_layout(netns: Namespaces) -> None:
    """A host whose guard table is an older version (here: the trunk's tagged frames accepted unchecked, as
    before this layout, and no mark of this version): the next ADD's lean script fails on the missing mark,
    the full one refills the fixed chains, CHECK is clean and a trunk's tagged forgery is dropped again."""
    from cni_ignite.guard import rules

    lan = build(netns, guarded=True, offloads=True)
    t = rules.TABLE
    old = f"flush chain {t} guard_vlan\nadd rule {t} guard_vlan iifname @trunks accept\ndelete chain {t} {rules.MARK}\n"
    in_ns(lan.host, ["nft", "-f", "-"], input=old.encode())
    frame, marker = _ip_forged_source()
    assert arrived(lan, frame, marker) > 0  # the old layout's hole
    att = ("import ipaddress as i; from cni_ignite.guard import rules, nft; a = rules.attachment('vethva', "
           f"[{A_MAC!r}], [i.ip_address({A!r}), i.ip_address({A6!r})], trunk=True); ")
    assert "another version" in host_py(lan.host, att + "print(nft.check(a))")
    host_py(lan.host, att + "nft.apply(a)")  # an ADD again (the port is guarded already: purged, re-applied)
    assert host_py(lan.host, att + "print(nft.check(a))").strip() == "[]"
    assert arrived(lan, frame, marker) == 0
