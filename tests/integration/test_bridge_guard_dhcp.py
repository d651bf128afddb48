"""The guard's DHCP server guard (issue 15) against a server reply that does not come from the server port.

DHCP clients listen on UDP 68 (DHCPv6: 546) and do not check the source port of what arrives there (busybox
udhcpc's socket filter matches the destination port only), so a rogue offer sent from A's own address with
any source port is as good as one from port 67. The guard drops everything an attachment sends to a client
port, whatever its source port; A's own DHCP client traffic (68 -> 67, 546 -> 547) still passes. Untagged
and inside a trunk port's 802.1Q tag; without the guard every one arrives (the control). The topology is
test_guard_vlan's: a bridge in a throwaway host namespace, A a trunk port, B an access port.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_guard_vlan import A_LL, A_MAC, B_MAC, VID, A, Lan, arrived, build

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attack

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nsutil import Namespaces

pytestmark = pytest.mark.privileged


@pytest.fixture(params=[True, False], ids=["guard", "no-guard"])
def lan(request: pytest.FixtureRequest, netns: Namespaces) -> Iterator[Lan]:
    yield build(netns, guarded=request.param, offloads=True)


def offer(sport: int) -> bytes:
    return attack.udp4(A, "255.255.255.255", sport, 68, attack.bootp(2, B_MAC, b"MARK-d-offer", yiaddr="10.61.9.9",
                                                                      msg_type=2))


def advertise(sport: int) -> bytes:
    return attack.udp6(A_LL, "ff02::1:2", sport, 546, b"\x02\x12\x34\x56MARK-d-adv6")


def frame(pkt: bytes, *, tagged: bool) -> bytes:
    v6 = pkt[0] >> 4 == 6
    dst = "33:33:00:01:00:02" if v6 else attack.BROADCAST
    f = attack.eth(dst, A_MAC, attack.ETH_IP6 if v6 else attack.ETH_IP, pkt)
    return attack.tagged(f, VID) if tagged else f


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "tagged"])
@pytest.mark.parametrize("pkt", [offer(67), offer(4000), offer(68), advertise(547), advertise(4000)],
                         ids=["offer-from-67", "offer-from-4000", "offer-from-68", "advertise-from-547",
                              "advertise-from-4000"])
def test_server_reply_from_any_source_port(lan: Lan, pkt: bytes, tagged: bool) -> None:
    got = arrived(lan, frame(pkt, tagged=tagged), pkt)
    assert (got == 0) is lan.guarded, got


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "tagged"])
def test_own_dhcp_client_traffic_passes(lan: Lan, tagged: bool) -> None:
    discover = attack.udp4("0.0.0.0", "255.255.255.255", 68, 67, attack.bootp(1, A_MAC, b"MARK-d-disc"))
    solicit = attack.udp6(A_LL, "ff02::1:2", 546, 547, b"\x01\x12\x34\x56MARK-d-sol6")
    for pkt in (discover, solicit):
        assert arrived(lan, frame(pkt, tagged=tagged), pkt) > 0
