"""The isolation guard (issue 15) with a real guest kernel, both VM modes; an unguarded attacker as the control.

The default conflist's plugin in VM mode (tests/vm/flow.py; temp dataDir/stateDir), guard on as shipped.
On one bridge: guest A (attacker, guarded as shipped), guest U (the same attacker attached with
``"guard": false``: the control, same topology, same moment), guest B (victim, guarded) and C (an
attachment without a guest whose address the attackers claim). The attackers are driven over their
serial control channel (no network needed, so the test still talks to A when the guard cuts it off):

- Own traffic works: A and U ping their gateway and B, get ARP answers from B and the gateway, and resolve
  B through the kernel's ARP after a flush; the host's neighbour entry names each one's MAC; B reaches A.
  B's ICMP InEchos counter sees their pings (the victim-side counter the next step relies on).
- Each attacker adds an address that is not its own (a free one, then C's) and pings B from it
  (``ping -I``), with a permanent neighbour entry for B so no ARP is involved: from A, B's InEchos does not
  move and A gets no reply; from U, B counts every echo (so the test proves the guard, not the topology).
- Each attacker changes its MAC (``ip link set eth0 address``): A can no longer ping its gateway and the
  host cannot ping A; U still can and still is. With its own MAC back, A's traffic works again.
- Stop, DEL: nothing left, the guard's table names none of the addresses.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from cnirun import source_bin_dir
from nsutil import in_ns
from vm import guest
from vm.flow import MODES, World

if TYPE_CHECKING:
    from pathlib import Path

    from vm.flow import Slot

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

FREE_IP = "10.61.250.250"          # in the default network's subnet, never allocated here
FOREIGN_MAC = "02:00:00:5e:10:99"  # locally administered unicast, nobody's
PINGS = 2
# busybox ping: 0.2 s apart, then up to -W seconds for the answers (it exits as soon as all came back, so
# only a ping that fails pays the wait).
PING = f"ping -c {PINGS} -i 0.2 -W 3"


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[vm-guard] {text}")


def vm(slot: Slot) -> guest.VM:
    assert slot.vm is not None
    return slot.vm


def echos(slot: Slot) -> int:
    """Echo requests the guest's kernel has received so far (the victim-side counter)."""
    return vm(slot).snmp("Icmp")["InEchos"]


def guest_ping(slot: Slot, target: str, source: str = "", wait: int = 3) -> guest.GuestRun:
    src = f"-I {source} " if source else ""
    return vm(slot).run(f"ping -c {PINGS} -i 0.2 -W {wait} {src}{target}", timeout=30)


def host_neigh(w: World, ip: str) -> str:
    return in_ns(w.host, ["ip", "neigh", "show", ip]).stdout.decode()


def own_traffic(w: World, x: Slot, b: Slot) -> None:
    """``x`` reaches its gateway and B (B counts the echoes), ARP works both ways, B reaches ``x``."""
    w.gateway_ping(x)
    before = echos(b)
    res = guest_ping(x, b.ip)
    assert res.rc == 0, res.out
    assert echos(b) - before >= PINGS, "B's InEchos did not count the pings: the counter proves nothing"
    for target in (b.ip, x.gateway):
        res = vm(x).run(f"arping -c 1 -w 3 -I eth0 {target}")  # a raw ARP request and its answer
        assert res.rc == 0, f"{x.ip} gets no ARP answer for {target}: {res.out}"
    vm(x).sh("ip neigh flush dev eth0")
    res = guest_ping(x, b.ip)  # the kernel's own ARP resolution
    assert res.rc == 0, res.out
    assert b.mac in vm(x).sh(f"ip neigh show {b.ip}")
    assert x.mac in host_neigh(w, x.ip)
    w.guest_pings(b, x)  # the other way round (B's HTTP helper)


def forged_pings(x: Slot, b: Slot, sources: tuple[str, ...]) -> dict[str, tuple[int, int, str]]:
    """From ``x``, ping B from each of ``sources`` (added to eth0 for the ping, then removed).

    Returns {source: (echoes B's kernel counted, ping's exit status, ping's output)}.
    """
    vm(x).sh(f"arp -s {b.ip} {b.mac}")  # B's MAC is known: what is tested is the IP source, not ARP
    seen = {}
    for forged in sources:
        vm(x).sh(f"ip addr add {forged}/32 dev eth0")
        before = echos(b)
        res = guest_ping(x, b.ip, source=forged, wait=2)
        seen[forged] = (echos(b) - before, res.rc, res.out)
        vm(x).sh(f"ip addr del {forged}/32 dev eth0")
    return seen


def foreign_mac(w: World, x: Slot) -> tuple[int, bool, str]:
    """``x`` takes FOREIGN_MAC and pings its gateway: (the ping's exit status, host -> x ping ok, output)."""
    res = vm(x).run(f"ip link set dev eth0 address {FOREIGN_MAC} && ip neigh flush dev eth0 && "
                    f"ping -c {PINGS} -i 0.2 -W 2 {x.gateway}")
    assert vm(x).mac_inside() == FOREIGN_MAC
    return res.rc, guest.ping_from(w.host, x.ip, wait=1), res.out


@pytest.mark.parametrize("mode", MODES)
def test_guest_cannot_impersonate(mode: str, worlds: list[World], tmp_path: Path, image: guest.GuestImage,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    w = World(source_bin_dir(), mode, tmp_path / mode)
    w.workdir.mkdir(parents=True)
    w.image = image
    worlds.append(w)
    w.make_host()
    a, u, b, c = (w.new_slot(port_mapping=False) for _ in range(4))
    u.conf["guard"] = False  # the control: the same attacker, unguarded
    for slot in (a, u, b, c):
        w.add(slot)
    assert [s.conf["guard"] for s in (a, u, b, c)] == [True, False, True, True]
    for slot in (a, u, b):
        w.boot(slot)
    w.wait_all_up([a, u, b])
    phases = {"boot": time.monotonic() - started}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name], mark = time.monotonic() - mark, time.monotonic()

    # Own traffic works, guarded or not.
    for x in (a, u):
        own_traffic(w, x, b)
    phase("own")

    # Forged source addresses: a free one, then C's (another attachment's).
    guarded = forged_pings(a, b, (FREE_IP, c.ip))
    unguarded = forged_pings(u, b, (FREE_IP, c.ip))
    for forged, (count, rc, out) in guarded.items():
        assert (count, rc) == (0, 1), f"the guarded guest's ping from {forged} reached B ({count} echoes): {out}"
    for forged, (count, _rc, out) in unguarded.items():
        assert count >= PINGS, f"the unguarded guest's ping from {forged} should reach B: {out}"
    assert guest_ping(a, b.ip).rc == 0  # A's own address still works after the attempts
    phase("forged")

    # A foreign MAC: the guarded guest is cut off, the unguarded one is not.
    rc, host_reaches, out = foreign_mac(w, a)
    assert rc != 0 and not host_reaches, f"the guarded guest reached its gateway from {FOREIGN_MAC}: {out}"
    assert FOREIGN_MAC not in host_neigh(w, a.ip)
    rc, host_reaches, out = foreign_mac(w, u)
    assert rc == 0 and host_reaches, f"the unguarded guest should still be reachable from {FOREIGN_MAC}: {out}"
    res = vm(a).run(f"ip link set dev eth0 address {a.mac} && ip neigh flush dev eth0 && "
                    f"{PING} {a.gateway}")
    assert res.rc == 0, f"A's own MAC back, A should reach its gateway again: {res.out}"
    phase("mac")

    w.stop_vms()
    for slot in (a, u, b, c):
        w.delete(slot)
        assert w.leftovers(slot) == [], w.leftovers(slot)
    table = in_ns(w.host, ["nft", "list", "table", "bridge", "cni_ignite_guard"], check=False).stdout.decode()
    assert not any(s.ip in table or s.mac in table for s in (a, b, c)), table
    phase("teardown")
    report(capsys, f"{mode}: echoes reaching B from forged sources: guarded "
                   f"{ {k: v[0] for k, v in guarded.items()} }, unguarded { {k: v[0] for k, v in unguarded.items()} }; "
                   f"{time.monotonic() - started:.1f}s in all ("
                   + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()) + f"); accel={vm(a).accel}")
