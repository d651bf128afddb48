"""Taps and the tc veth<->tap redirect, with real Ethernet frames crossing both ways.

Topology per test: host netns ``vethh`` <-> container netns ``eth0``, and a tap in the container netns.
The test itself plays the VMM: it attaches to the tap through /dev/net/tun (inside the container netns)
and reads/writes raw frames; on the host side an AF_PACKET socket on ``vethh`` does the same. Frames use
the local experimental ethertype 0x88B5 and never leave the two namespaces.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

import pytest
from nsutil import in_ns, path

from cni_ignite.netlink.netns import entered, open_netns, socket_in
from cni_ignite.netlink.ops import TAP_MAX_ID, TAP_MAX_MTU, LinkExists, NetlinkError
from cni_ignite.netlink.rtnl import Rtnl
from cni_ignite.netlink.tap import IFF_NO_PI, IFF_TAP, TUNSETIFF, TapFailed, ifreq

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from nsutil import Namespaces

pytestmark = pytest.mark.privileged

ETH_P_ALL = 0x0003
ETH_P_TEST = 0x88B5
TAP = "tapcnit0"


class Pair:
    def __init__(self, host: str, cont: str, hfd: int, cfd: int, rtnl: Rtnl, eth0: int) -> None:
        self.host, self.cont, self.hfd, self.cfd, self.rtnl, self.eth0 = host, cont, hfd, cfd, rtnl, eth0


@pytest.fixture
def pair(netns: Namespaces) -> Iterator[Pair]:
    host, cont = netns.new(), netns.new()
    hfd, cfd = open_netns(path(host)), open_netns(path(cont))
    try:
        with Rtnl(hfd) as h:
            veth = h.create_veth("vethh", "eth0", peer_netns_fd=cfd, mtu=1400)
            h.set_link(veth.index, up=True)
        with Rtnl(cfd) as c:
            eth0 = c.require("eth0")
            c.set_link(eth0.index, up=True)
            yield Pair(host, cont, hfd, cfd, c, eth0.index)
    finally:
        os.close(hfd)
        os.close(cfd)


def ip_link(ns: str, dev: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(in_ns(ns, ["ip", "-d", "-j", "link", "show", "dev", dev]).stdout)
    return out[0]


def test_tap_is_created_in_the_container_netns_with_owner_group_mtu_and_flags(pair: Pair) -> None:
    tap = pair.rtnl.create_tap(TAP, uid=1234, gid=2345, mtu=1400)
    assert (tap.kind, tap.mtu, tap.up) == ("tun", 1400, True)
    assert in_ns(pair.cont, ["cat", f"/sys/class/net/{TAP}/owner"]).stdout.strip() == b"1234"
    assert in_ns(pair.cont, ["cat", f"/sys/class/net/{TAP}/group"]).stdout.strip() == b"2345"
    data = ip_link(pair.cont, TAP)["linkinfo"]["info_data"]
    assert (data["type"], data["pi"], data["vnet_hdr"], data["multi_queue"], data["persist"]) == (
        "tap", False, True, False, True)
    with Rtnl() as here:
        assert here.link(TAP) is None
    with Rtnl(pair.hfd) as h:
        assert h.link(TAP) is None


def test_tap_creation_reuses_an_identical_tap_only_when_not_exclusive_and_refuses_a_conflicting_name(
        pair: Pair) -> None:
    first = pair.rtnl.create_tap(TAP, uid=0, gid=0)
    assert pair.rtnl.create_tap(TAP, uid=0, gid=0, exclusive=False).index == first.index
    with pytest.raises(LinkExists):
        pair.rtnl.create_tap(TAP, multi_queue=True, exclusive=False)
    with pytest.raises(LinkExists):
        pair.rtnl.create_tap("eth0", exclusive=False)
    assert pair.rtnl.delete_link(TAP) is True


def test_exclusive_tap_creation_refuses_an_existing_identical_tap_and_leaves_it_untouched(pair: Pair) -> None:
    first = pair.rtnl.create_tap(TAP, uid=0, gid=0, mtu=1400, alias="first")
    with pytest.raises(LinkExists):
        pair.rtnl.create_tap(TAP, uid=0, gid=0, mtu=1300, alias="second")
    with pytest.raises(LinkExists):
        pair.rtnl.create_tap("eth0")
    again = pair.rtnl.require(TAP)
    assert (again.index, again.mtu, again.alias) == (first.index, 1400, "first")
    assert pair.rtnl.require("eth0").kind == "veth"


def test_a_tap_that_cannot_be_configured_is_deleted_again(pair: Pair) -> None:
    with pytest.raises(NetlinkError):
        pair.rtnl.create_tap(TAP, mtu=65535)  # above the tap maximum (65521)
    assert pair.rtnl.link(TAP) is None
    assert pair.rtnl.create_tap(TAP, mtu=TAP_MAX_MTU).mtu == TAP_MAX_MTU


@pytest.mark.parametrize("owner", [2**31, TAP_MAX_ID])
def test_tap_owner_and_group_of_2_31_and_above_are_passed_to_the_kernel(pair: Pair, owner: int) -> None:
    pair.rtnl.create_tap(TAP, uid=owner, gid=owner)
    assert in_ns(pair.cont, ["cat", f"/sys/class/net/{TAP}/owner"]).stdout.strip() == str(owner).encode()
    assert in_ns(pair.cont, ["cat", f"/sys/class/net/{TAP}/group"]).stdout.strip() == str(owner).encode()


@pytest.mark.parametrize("owner", [-2, TAP_MAX_ID + 1, 2**40])
def test_tap_owner_out_of_range_is_refused_before_anything_is_made(pair: Pair, owner: int) -> None:
    with pytest.raises(TapFailed):
        pair.rtnl.create_tap(TAP, uid=owner)
    assert pair.rtnl.link(TAP) is None


def test_tc_redirect_is_installed_once_both_ways_and_removed(pair: Pair) -> None:
    tap = pair.rtnl.create_tap(TAP, mtu=1400)
    assert not pair.rtnl.has_tc_redirect(pair.eth0, tap.index)
    pair.rtnl.add_tc_redirect(pair.eth0, tap.index)
    pair.rtnl.add_tc_redirect(pair.eth0, tap.index)
    assert pair.rtnl.has_tc_redirect(pair.eth0, tap.index)
    for dev, target in (("eth0", TAP), (TAP, "eth0")):
        shown = in_ns(pair.cont, ["tc", "filter", "show", "dev", dev, "parent", "ffff:"]).stdout.decode()
        assert shown.count("mirred (Egress Redirect to device") == 1
        assert f"Egress Redirect to device {target})" in shown
        assert "protocol all" in shown
        assert "match 00000000/00000000 at 0" in shown
        assert "stolen" in shown
        qdiscs = in_ns(pair.cont, ["tc", "qdisc", "show", "dev", dev]).stdout.decode()
        assert "qdisc ingress ffff:" in qdiscs
    assert pair.rtnl.del_ingress_qdisc(pair.eth0) is True
    assert pair.rtnl.del_ingress_qdisc(pair.eth0) is False
    assert not pair.rtnl.has_tc_redirect(pair.eth0, tap.index)
    assert pair.rtnl.del_ingress_qdisc(9999) is False


def _frame(dst: bytes, src: bytes, marker: bytes) -> bytes:
    return (dst + src + struct.pack("!H", ETH_P_TEST) + marker).ljust(60, b"\0")


def _wait_for(read: Callable[[], bytes], fd: int, marker: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            frame = read()
            if frame[12:14] == struct.pack("!H", ETH_P_TEST) and marker in frame:
                return True
    return False


def test_frames_cross_between_tap_and_veth_in_both_directions(pair: Pair) -> None:
    tap = pair.rtnl.create_tap(TAP, mtu=1400)
    eth0_mac = bytes.fromhex((pair.rtnl.require("eth0").mac or "").replace(":", ""))
    with Rtnl(pair.hfd) as h:
        vethh = h.require("vethh")
    vethh_mac = bytes.fromhex((vethh.mac or "").replace(":", ""))
    guest_mac = bytes.fromhex("02aabbccdd01")
    with entered(pair.cfd):  # be the VMM: attach to the persistent tap
        tapfd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(tapfd, TUNSETIFF, ifreq(TAP, IFF_TAP | IFF_NO_PI))
        pkt = socket_in(pair.hfd, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with pkt:
            pkt.bind(("vethh", 0))
            pkt.setblocking(False)

            # without the redirect nothing connects the tap to the veth
            os.write(tapfd, _frame(vethh_mac, guest_mac, b"cnit-before"))
            assert not _wait_for(lambda: pkt.recv(65536), pkt.fileno(), b"cnit-before", 0.3)

            pair.rtnl.add_tc_redirect(pair.eth0, tap.index)

            # guest -> tap -> (tc) -> eth0 -> vethh in the host netns
            os.write(tapfd, _frame(vethh_mac, guest_mac, b"cnit-to-host"))
            assert _wait_for(lambda: pkt.recv(65536), pkt.fileno(), b"cnit-to-host", 3)

            # host netns -> vethh -> eth0 -> (tc) -> tap -> guest
            pkt.send(_frame(eth0_mac, vethh_mac, b"cnit-to-guest"))
            assert _wait_for(lambda: os.read(tapfd, 65536), tapfd, b"cnit-to-guest", 3)
    finally:
        os.close(tapfd)
