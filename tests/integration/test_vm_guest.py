"""The real-microVM guest (tests/vm/guest.py) booted on a hand-made tc-redirect tap, without our plugin.

Layout (tests/vm/layout.py), all in throwaway namespaces — nothing in the root namespace changes::

    "host" ns:       br0 10.99.0.1/24 (forward_delay 0) -- vh0
    "container" ns:  eth0 (veth, 10.99.0.2/24)  <=tc mirred=>  tap0  <-- QEMU (guest MAC = eth0's MAC)

The CNI result handed to ``ip_boot_param``/``guest_mac`` has tc-redirect-tap's shape, so the same calls
work on ignite-bridge's VM-mode result.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from nsutil import Namespaces, in_ns
from vm import guest
from vm.layout import add_vm_slot, link_mac, make_host

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

GATEWAY = "10.99.0.1"


@pytest.fixture
def vms() -> Iterator[list[guest.VM]]:
    """Every VM appended here is stopped (by its PID) before the namespaces go away.

    Requested after ``netns`` so that it is torn down first.
    """
    started: list[guest.VM] = []
    try:
        yield started
    finally:
        for vm in started:
            vm.stop()


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[vm] {text}")


def test_guest_boots_on_tc_redirect_tap(netns: Namespaces, vms: list[guest.VM], image: guest.GuestImage,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = make_host(netns, GATEWAY)
    host = layout.host
    slot = add_vm_slot(netns, layout, "10.99.0.2", "vm-guest-test")
    conf = guest.vm_net_conf(slot.result, slot.vm_id)
    ip_param, mac = guest.ip_boot_param(slot.result, slot.vm_id), guest.guest_mac(slot.result, slot.vm_id)
    assert ip_param == f"ip={slot.ip}::{GATEWAY}:255.255.255.0::eth0:off:::"
    assert mac == link_mac(slot.container, "eth0")
    assert conf.tap_name == "tap0" and conf.netns_path == f"/var/run/netns/{slot.container}"

    vm = guest.boot(conf.netns_path, conf.tap_name, mac, ip_param, tmp_path / "console.log", image=image)
    vms.append(vm)
    # A wait that is too short fails with the console in the message (the guest keeps booting).
    with pytest.raises(guest.GuestNotReady, match="last 30 console lines"):
        vm.wait_ready(timeout=0.2)

    pinging = guest.wait_ping(host, slot.ip, timeout=60)
    to_ping = vm.since_start()
    assert vm.wait_ready(timeout=5) == slot.ip
    assert f"mac={mac}" in vm.console()
    assert vm.wait_gateway_ping(timeout=20), vm.console_tail()
    page = guest.http_get(host, f"http://{slot.ip}/")
    assert f"ip={slot.ip} mac={mac}" in page
    # The guest originates traffic on request (used for VM-to-VM and masquerade checks).
    assert guest.http_get(host, guest.guest_ping_url(slot.ip, GATEWAY)).rstrip().endswith("RESULT ok")
    echo = guest.start_echo_server(host, tmp_path / "echo", 8080)
    try:
        body = guest.http_get(host, guest.guest_fetch_url(slot.ip, f"{GATEWAY}:8080/cgi-bin/whoami"))
    finally:
        guest.stop_process(echo)
    assert body.rstrip().endswith("RESULT ok"), body
    assert guest.remote_addr(body) == slot.ip, body  # no NAT on this plain bridge
    report(capsys, f"accel={vm.accel} ({vm.accel_note}); QEMU start -> READY {vm.boot_seconds:.1f}s, "
                   f"-> first host ping {to_ping:.1f}s (pinging for {pinging:.1f}s)")

    vm.stop()
    assert not vm.alive()
    # Only QEMU held the tap open: with it gone the tap has no carrier again.
    assert "NO-CARRIER" in in_ns(slot.container, ["ip", "link", "show", "tap0"]).stdout.decode()


def test_two_guests_reach_each_other(netns: Namespaces, vms: list[guest.VM], image: guest.GuestImage,
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = make_host(netns, GATEWAY)
    slots = [add_vm_slot(netns, layout, f"10.99.0.{10 + i}") for i in range(2)]
    for i, slot in enumerate(slots):
        vms.append(guest.boot(slot.container, "tap0", guest.guest_mac(slot.result, slot.vm_id),
                              guest.ip_boot_param(slot.result, slot.vm_id), tmp_path / f"console{i}.log",
                              image=image))
    for vm, slot in zip(vms, slots, strict=True):
        assert vm.wait_ready(timeout=60) == slot.ip
    a, b = slots
    assert guest.http_get(layout.host, guest.guest_ping_url(a.ip, b.ip)).rstrip().endswith("RESULT ok")
    assert guest.http_get(layout.host, guest.guest_ping_url(b.ip, a.ip)).rstrip().endswith("RESULT ok")
    body = guest.http_get(layout.host, guest.guest_fetch_url(a.ip, f"{b.ip}/"))
    assert f"ip={b.ip}" in body and body.rstrip().endswith("RESULT ok"), body
    report(capsys, "two guests booted together: " + ", ".join(
        f"{vm.ready_ip} READY {vm.boot_seconds:.1f}s ({vm.accel})" for vm in vms))


def test_guest_that_never_comes_up_reports_console(netns: Namespaces, vms: list[guest.VM],
                                                    image: guest.GuestImage, tmp_path: Path) -> None:
    cont = netns.new("cnit-vmf")
    in_ns(cont, ["ip", "tuntap", "add", "tap0", "mode", "tap"])
    in_ns(cont, ["ip", "link", "set", "tap0", "up"])
    started = time.monotonic()
    vm = guest.boot(cont, "tap0", "02:00:0a:63:00:09", "ip=10.99.0.9::10.99.0.1:255.255.255.0::eth0:off",
                    tmp_path / "console.log", image=image, extra_append="cniignite.fail=1")
    vms.append(vm)
    with pytest.raises(guest.GuestNotReady) as err:
        vm.wait_ready(timeout=60)
    message = str(err.value)
    assert "last 30 console lines" in message
    assert "FATAL asked to fail: cniignite.fail=1" in message
    assert "init started" in message
    assert time.monotonic() - started < 60


def test_boot_refuses_a_missing_tap(netns: Namespaces, image: guest.GuestImage, tmp_path: Path) -> None:
    # QEMU would silently create a fresh, unconnected tap of that name.
    cont = netns.new("cnit-vmf")
    with pytest.raises(guest.GuestError, match="does not exist"):
        guest.boot(cont, "nosuchtap0", "02:00:0a:63:00:0a", "ip=10.99.0.10::10.99.0.1:255.255.255.0::eth0:off",
                   tmp_path / "console.log", image=image)


def test_qemu_that_exits_fails_fast_with_its_stderr(netns: Namespaces, vms: list[guest.VM],
                                                    image: guest.GuestImage, tmp_path: Path) -> None:
    cont = netns.new("cnit-vmf")
    in_ns(cont, ["ip", "tuntap", "add", "tap0", "mode", "tap", "multi_queue"])  # QEMU's single queue won't attach
    started = time.monotonic()
    vm = guest.boot(cont, "tap0", "02:00:0a:63:00:0b", "ip=10.99.0.11::10.99.0.1:255.255.255.0::eth0:off",
                    tmp_path / "console.log", accel="tcg", image=image)
    vms.append(vm)
    with pytest.raises(guest.GuestNotReady, match=r"QEMU exited(.|\n)*QEMU stderr ---\n.*tap0"):
        vm.wait_ready(timeout=30)
    assert time.monotonic() - started < 10
