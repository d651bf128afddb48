"""The isolation guard (issue 15) against crafted frames on the real kernel.

A throwaway host namespace holds a Linux bridge ``ignite0`` (gateway 10.61.0.1, fd00:61::1) and two
attachments, veth pairs into container namespaces A (10.61.0.2) and B (10.61.0.3). The guard is installed
by calling ``cni_ignite.guard`` inside the host namespace (it is not hooked into ignite-bridge yet). Each
attack is sent from A with an AF_PACKET raw socket and is run twice: with the guard it fails (the frame
never arrives, the neighbour tables stay right), without it the same frame succeeds, which proves the
test would see the attack.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


class Lan(NamedTuple):
    host: str
    a: str
    b: str
    guarded: bool


def host_py(lan: Lan, code: str) -> str:
    """Run Python with cni_ignite inside the host namespace (where the guard lives)."""
    return in_ns(lan.host, [sys.executable, "-c", code], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                  "PYTHONPATH": REPO}).stdout.decode()


def guard_code(port: str, mac: str, v4: str, v6: str, *, trunk: bool = False, extra_macs: tuple[str, ...] = ()) -> str:
    return ("import ipaddress as i; from cni_ignite.guard import rules, nft; "
            f"nft.apply(rules.attachment({port!r}, {[mac, *extra_macs]!r}, "
            f"[i.ip_address({v4!r}), i.ip_address({v6!r})], trunk={trunk!r}))")


def build(netns: Namespaces, *, guarded: bool, trunk: bool = False) -> Lan:
    host, a, b = netns.new("cnit-ghost"), netns.new("cnit-ga"), netns.new("cnit-gb")
    lan = Lan(host, a, b, guarded)
    for ns in (host, a, b):
        for key in ("all", "default"):
            in_ns(ns, ["sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0"])
    in_ns(host, ["ip", "link", "add", "ignite0", "address", GW_MAC, "type", "bridge"])
    in_ns(host, ["ip", "addr", "add", f"{GW}/16", "dev", "ignite0"])
    in_ns(host, ["ip", "addr", "add", f"{GW6}/64", "dev", "ignite0"])
    in_ns(host, ["ip", "link", "set", "ignite0", "up"])
    for ns, port, mac, v4, v6 in ((a, "vethga", A_MAC, A, A6), (b, "vethgb", B_MAC, B, B6)):
        in_ns(host, ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        in_ns(ns, ["ip", "link", "set", "eth0", "address", mac])
        in_ns(ns, ["ip", "addr", "add", f"{v4}/16", "dev", "eth0"])
        in_ns(ns, ["ip", "addr", "add", f"{v6}/64", "dev", "eth0"])
        in_ns(ns, ["ip", "link", "set", "eth0", "up"])
        in_ns(ns, ["ip", "route", "add", "default", "via", GW])
        if guarded:
            host_py(lan, guard_code(port, mac, v4, v6, trunk=trunk))
        in_ns(host, ["ip", "link", "set", port, "master", "ignite0", "up"])
    show = ("ip", "-6", "addr", "show", "dev", "eth0")
    for ns in (a, b):
        wait_for(lambda ns=ns: "tentative" not in in_ns(ns, show).stdout.decode())
    return lan


def wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(params=[True, False], ids=["guard", "no-guard"])
def lan(request: pytest.FixtureRequest, netns: Namespaces) -> Iterator[Lan]:
    yield build(netns, guarded=request.param)


def send(ns: str, *frames: bytes) -> None:
    in_ns(ns, [sys.executable, ATTACK, "send", "eth0", *(f.hex() for f in frames)])


def delivered(lan: Lan, target_ns: str, iface: str, marker: bytes, *frames: bytes) -> int:
    """How many frames carrying `marker` arrive on `iface` in `target_ns` while A sends `frames`."""
    return attack.count_around(target_ns, iface, marker, lambda: send(lan.a, *frames))


def neigh_mac(ns: str, ip: str, dev: str) -> str:
    out = in_ns(ns, ["ip", "-j", "neigh", "show", ip, "dev", dev]).stdout.decode()
    entries = json.loads(out or "[]")
    return entries[0].get("lladdr", "") if entries else ""


def ping(ns: str, target: str) -> bool:
    return in_ns(ns, ["ping", "-c", "1", "-W", "2", target], check=False).returncode == 0


def expect(lan: Lan, attack_succeeded: bool) -> None:
    assert attack_succeeded is not lan.guarded, "guard on: the attack must fail; off: it must succeed"


# ------------------------------------------------------------------------------------ the attacks

def test_forged_source_mac(lan: Lan) -> None:
    frame = attack.eth(B_MAC, EVIL_MAC, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-smac"))
    expect(lan, delivered(lan, lan.b, "eth0", b"MARK-smac", frame, frame) > 0)


@pytest.mark.parametrize("target", ["B", "gateway"])
def test_b_source_ipv4_with_a_mac(lan: Lan, target: str) -> None:
    dst_mac, dst, ns, dev = (B_MAC, B, lan.b, "eth0") if target == "B" else (GW_MAC, GW, lan.host, "ignite0")
    frame = attack.eth(dst_mac, A_MAC, attack.ETH_IP, attack.udp4(B, dst, 4000, 9, b"MARK-sip4"))
    expect(lan, delivered(lan, ns, dev, b"MARK-sip4", frame, frame) > 0)


def test_b_source_ipv6_with_a_mac(lan: Lan) -> None:
    frame = attack.eth(GW_MAC, A_MAC, attack.ETH_IP6, attack.udp6(B6, GW6, 4000, 9, b"MARK-sip6"))
    expect(lan, delivered(lan, lan.host, "ignite0", b"MARK-sip6", frame, frame) > 0)


def test_arp_reply_gateway_is_at_a_does_not_poison_b(lan: Lan) -> None:
    assert ping(lan.b, GW)
    assert neigh_mac(lan.b, GW, "eth0") == GW_MAC
    time.sleep(1.1)  # past the neighbour locktime (1 s), after which a reply may override the entry
    lie = attack.eth(B_MAC, A_MAC, attack.ETH_ARP, attack.arp(2, A_MAC, GW, B_MAC, B))
    send(lan.a, lie, lie)
    time.sleep(0.2)
    expect(lan, neigh_mac(lan.b, GW, "eth0") == A_MAC)


def test_arp_reply_b_is_at_a_does_not_poison_the_host(lan: Lan) -> None:
    assert ping(lan.host, B)
    assert neigh_mac(lan.host, B, "ignite0") == B_MAC
    time.sleep(1.1)
    lie = attack.eth(GW_MAC, A_MAC, attack.ETH_ARP, attack.arp(2, A_MAC, B, GW_MAC, GW))
    send(lan.a, lie, lie)
    time.sleep(0.2)
    expect(lan, neigh_mac(lan.host, B, "ignite0") == A_MAC)


def test_gratuitous_arp_for_b_address(lan: Lan) -> None:
    assert ping(lan.host, B)
    time.sleep(1.1)
    garp = attack.eth(attack.BROADCAST, A_MAC, attack.ETH_ARP, attack.arp(1, A_MAC, B, "00:00:00:00:00:00", B))
    send(lan.a, garp, garp)
    time.sleep(0.2)
    expect(lan, neigh_mac(lan.host, B, "ignite0") == A_MAC)


def test_unsolicited_neighbour_advert_for_b_ipv6(lan: Lan) -> None:
    assert ping(lan.host, B6)
    assert neigh_mac(lan.host, B6, "ignite0") == B_MAC
    # From A's own address (the source check passes): only the target check can stop it.
    na = attack.eth("33:33:00:00:00:01", A_MAC, attack.ETH_IP6, attack.neighbor_advert(A6, "ff02::1", B6, A_MAC))
    send(lan.a, na, na)
    time.sleep(0.2)
    expect(lan, neigh_mac(lan.host, B6, "ignite0") == A_MAC)


def test_router_advertisement(lan: Lan) -> None:
    ra = attack.eth("33:33:00:00:00:01", A_MAC, attack.ETH_IP6, attack.router_advert(A_LL, A_MAC, "2001:db8:bad::/64"))
    send(lan.a, ra, ra)
    time.sleep(0.3)
    routes = in_ns(lan.b, ["ip", "-6", "route", "show"]).stdout.decode()
    expect(lan, A_LL in routes or "2001:db8:bad::" in routes)


def test_dhcp_offer(lan: Lan) -> None:
    offer = attack.eth(attack.BROADCAST, A_MAC, attack.ETH_IP, attack.udp4(
        A, "255.255.255.255", 67, 68, attack.bootp(2, B_MAC, b"MARK-offer", yiaddr="10.61.9.9", msg_type=2)))
    expect(lan, delivered(lan, lan.b, "eth0", b"MARK-offer", offer, offer) > 0)


def test_dhcpv6_advertise(lan: Lan) -> None:
    adv = attack.eth("33:33:00:00:00:01", A_MAC, attack.ETH_IP6,
                     attack.udp6(A_LL, "ff02::1", 547, 546, b"\x02\x12\x34\x56MARK-adv6"))
    expect(lan, delivered(lan, lan.b, "eth0", b"MARK-adv6", adv, adv) > 0)


def test_tagged_frame_from_an_access_port(lan: Lan) -> None:
    frame = attack.eth(B_MAC, A_MAC, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-vlan"), vlan=100)
    expect(lan, delivered(lan, lan.b, "eth0", b"MARK-vlan", frame, frame) > 0)


# ------------------------------------------------------------------------------- normal traffic

def test_ping_arp_and_neighbour_discovery_work(lan: Lan) -> None:
    for ns in (lan.a, lan.b, lan.host):
        in_ns(ns, ["ip", "neigh", "flush", "all"], check=False)
    assert ping(lan.a, B) and ping(lan.b, A) and ping(lan.a, GW) and ping(lan.host, A)
    assert ping(lan.a, B6) and ping(lan.b, A6) and ping(lan.a, GW6)
    assert ping(lan.a, "fe80::61:ff:fe00:3%eth0")  # B's link-local, resolved from A's link-local
    assert neigh_mac(lan.a, B, "eth0") == B_MAC and neigh_mac(lan.host, A, "ignite0") == A_MAC


def test_tcp_between_attachments(lan: Lan) -> None:
    server = subprocess.Popen(["ip", "netns", "exec", lan.b, sys.executable, "-c",
                               "import socket; s = socket.create_server(('0.0.0.0', 5001)); print('up', flush=True);"
                               " c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        out = in_ns(lan.a, [sys.executable, "-c", "import socket; c = socket.create_connection(('10.61.0.3', 5001), 3);"
                            " c.sendall(b'hello'); print(c.recv(100).decode())"]).stdout.decode()
        assert out.strip() == "HELLO"
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()  # reaps it and closes its pipe


def test_dhcp_discover_and_arp_probe_from_0_0_0_0_pass(lan: Lan) -> None:
    discover = attack.eth(attack.BROADCAST, A_MAC, attack.ETH_IP, attack.udp4(
        "0.0.0.0", "255.255.255.255", 68, 67, attack.bootp(1, A_MAC, b"MARK-disc")))
    assert delivered(lan, lan.host, "ignite0", b"MARK-disc", discover) > 0
    probe = attack.eth(attack.BROADCAST, A_MAC, attack.ETH_ARP, attack.arp(1, A_MAC, "0.0.0.0", "00:00:00:00:00:00",
                                                                          "10.61.0.77"))
    assert delivered(lan, lan.host, "ignite0", bytes.fromhex("0a3d004d"), probe) > 0


def test_duplicate_address_detection_probe_passes(lan: Lan) -> None:
    dad = attack.eth("33:33:ff:00:00:02", A_MAC, attack.ETH_IP6, attack.neighbor_solicit(
        "::", "ff02::1:ff00:2", A6, None))
    assert delivered(lan, lan.host, "ignite0", bytes.fromhex("fd000061000000000000000000000002"), dad) > 0


# --------------------------------------------------------------------------- variants and lifecycle

def test_trunk_port_may_send_tagged_frames(netns: Namespaces) -> None:
    lan = build(netns, guarded=True, trunk=True)
    frame = attack.eth(B_MAC, A_MAC, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-trunk"), vlan=100)
    assert delivered(lan, lan.b, "eth0", b"MARK-trunk", frame) > 0
    evil = attack.eth(B_MAC, EVIL_MAC, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-trunk"), vlan=100)
    assert delivered(lan, lan.b, "eth0", b"MARK-trunk", evil, evil) == 0  # the source MAC still counts


def test_vm_bridge_mode_guest_mac_is_allowed(netns: Namespaces) -> None:
    lan = build(netns, guarded=False)
    guest = "02:61:00:00:00:99"
    host_py(lan, guard_code("vethga", A_MAC, A, A6, extra_macs=(guest,)))
    ok = attack.eth(B_MAC, guest, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-guest"))
    assert delivered(lan, lan.b, "eth0", b"MARK-guest", ok) > 0
    bad = attack.eth(B_MAC, EVIL_MAC, attack.ETH_IP, attack.udp4(A, B, 4000, 9, b"MARK-guest"))
    assert delivered(lan, lan.b, "eth0", b"MARK-guest", bad, bad) == 0


def test_remove_leaves_no_element_and_check_reports(netns: Namespaces) -> None:
    lan = build(netns, guarded=True)
    att = ("import ipaddress as i; from cni_ignite.guard import rules, nft; "
           f"a = rules.attachment('vethga', [{A_MAC!r}], [i.ip_address({A!r}), i.ip_address({A6!r})]); ")
    assert host_py(lan, att + "print(nft.check(a))").strip() == "[]"
    in_ns(lan.host, ["nft", "delete", "element", "bridge", "cni_ignite_guard", "macs", "{", f'"vethga" . {A_MAC}', "}"])
    assert "macs" in host_py(lan, att + "print(nft.check(a))")
    host_py(lan, att + "nft.remove('vethga', a); nft.remove('vethga', a); nft.remove('vethgb')")
    listed = json.loads(in_ns(lan.host, ["nft", "-j", "list", "table", "bridge", "cni_ignite_guard"]).stdout)
    assert [s["set"]["name"] for s in listed["nftables"] if "set" in s and s["set"].get("elem")] == []
    still = host_py(lan, "from cni_ignite.guard import nft; print(nft.guarded('vethga'), nft.guarded('vethgb'))")
    assert still.split() == ["False", "False"]
    # unguarded again: A may forge B's address
    frame = attack.eth(GW_MAC, A_MAC, attack.ETH_IP, attack.udp4(B, GW, 4000, 9, b"MARK-after"))
    assert delivered(lan, lan.host, "ignite0", b"MARK-after", frame) > 0


def test_allowed_address_pairs_and_readd_with_other_addresses(netns: Namespaces) -> None:
    lan = build(netns, guarded=False)
    pairs = ("import ipaddress as i; from cni_ignite.guard import config, rules, nft; "
             "g = config.parse_guard({'guard': {'allowedAddressPairs': [{'ipAddress': '10.61.0.100'}, "
             "{'ipAddress': '10.61.7.0/24'}]}}); ")
    host_py(lan, pairs + f"nft.apply(rules.attachment('vethga', [{A_MAC!r}], [i.ip_address({A!r})], g))")
    for src, ok in (("10.61.0.100", True), ("10.61.7.9", True), (B, False), ("10.61.8.1", False)):
        frame = attack.eth(GW_MAC, A_MAC, attack.ETH_IP, attack.udp4(src, GW, 4000, 9, b"MARK-pair"))
        assert (delivered(lan, lan.host, "ignite0", b"MARK-pair", frame, frame) > 0) is ok, src
    # ADD again after a lost DEL, now with another address and no pairs: only the new address stays allowed
    host_py(lan, pairs + f"nft.apply(rules.attachment('vethga', [{A_MAC!r}], [i.ip_address('10.61.0.20')]))")
    for src, ok in (("10.61.0.20", True), (A, False), ("10.61.0.100", False), ("10.61.7.9", False)):
        frame = attack.eth(GW_MAC, A_MAC, attack.ETH_IP, attack.udp4(src, GW, 4000, 9, b"MARK-readd"))
        assert (delivered(lan, lan.host, "ignite0", b"MARK-readd", frame, frame) > 0) is ok, src
