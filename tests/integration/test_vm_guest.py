"""The real-microVM guest (tests/vm/guest.py) booted on a hand-made tc-redirect tap, without our plugin.

Layout, all in throwaway namespaces (nothing in the root namespace changes)::

    "host" ns:       br0 10.99.0.1/24 (forward_delay 0) -- vh0
    "container" ns:  eth0 (veth, 10.99.0.2/24)  <=tc mirred=>  tap0  <-- QEMU (guest MAC = eth0's MAC)

The CNI result the test hands to ``ip_boot_param``/``guest_mac`` has tc-redirect-tap's shape, so the
same calls work on ignite-bridge's VM-mode result later.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
from nsutil import Namespaces, in_ns, sh
from vm import guest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

HOST_IP, GUEST_IP = "10.99.0.1", "10.99.0.2"
VM_ID = "vm-guest-test"


@pytest.fixture(scope="module")
def image() -> guest.GuestImage:
    return guest.prepare_guest()


@pytest.fixture
def vms() -> Iterator[list[guest.VM]]:
    """Every VM appended here is stopped (by its PID) before the namespaces go away."""
    started: list[guest.VM] = []
    try:
        yield started
    finally:
        for vm in started:
            vm.stop()


def link_mac(ns: str, dev: str) -> str:
    return str(json.loads(in_ns(ns, ["ip", "-j", "link", "show", dev]).stdout)[0]["address"])


def tc_redirect(ns: str, a: str, b: str) -> None:
    """Redirect everything arriving on ``a`` out of ``b`` and back, as tc-redirect-tap does."""
    for src, dst in ((a, b), (b, a)):
        in_ns(ns, ["tc", "qdisc", "add", "dev", src, "ingress"])
        in_ns(ns, ["tc", "filter", "add", "dev", src, "parent", "ffff:", "protocol", "all", "u32", "match", "u8",
                   "0", "0", "action", "mirred", "egress", "redirect", "dev", dst])


def make_tc_redirect_layout(netns: Namespaces) -> tuple[str, str, dict[str, object]]:
    """Build host/container namespaces with a tc-redirected tap; return them and a CNI-shaped result."""
    host, cont = netns.new("cnit-vmh"), netns.new("cnit-vmc")
    in_ns(host, ["ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])
    in_ns(host, ["ip", "addr", "add", f"{HOST_IP}/24", "dev", "br0"])
    in_ns(host, ["ip", "link", "set", "br0", "up"])
    sh(["ip", "-n", host, "link", "add", "vh0", "type", "veth", "peer", "name", "eth0", "netns", cont])
    in_ns(host, ["ip", "link", "set", "vh0", "master", "br0", "up"])
    in_ns(cont, ["ip", "addr", "add", f"{GUEST_IP}/24", "dev", "eth0"])
    in_ns(cont, ["ip", "link", "set", "eth0", "up"])
    in_ns(cont, ["ip", "tuntap", "add", "tap0", "mode", "tap"])
    in_ns(cont, ["ip", "link", "set", "tap0", "up"])
    tc_redirect(cont, "eth0", "tap0")
    veth_mac, tap_mac = link_mac(cont, "eth0"), link_mac(cont, "tap0")
    result: dict[str, object] = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "br0", "mac": "02:00:00:00:00:01"},
            {"name": "eth0", "mac": veth_mac, "sandbox": f"/var/run/netns/{cont}"},
            {"name": "tap0", "mac": tap_mac, "sandbox": f"/var/run/netns/{cont}"},
            {"name": "tap0", "mac": veth_mac, "sandbox": VM_ID},
        ],
        "ips": [{"address": f"{GUEST_IP}/24", "gateway": HOST_IP, "interface": 3}],
        "routes": [{"dst": "0.0.0.0/0", "gw": HOST_IP}],
        "dns": {},
    }
    return host, cont, result


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[vm] {text}")


def test_guest_boots_on_tc_redirect_tap(netns: Namespaces, vms: list[guest.VM], image: guest.GuestImage,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host, cont, result = make_tc_redirect_layout(netns)
    conf = guest.vm_net_conf(result, VM_ID)
    ip_param, mac = guest.ip_boot_param(result, VM_ID), guest.guest_mac(result, VM_ID)
    assert ip_param == f"ip={GUEST_IP}::{HOST_IP}:255.255.255.0::eth0:off:::"
    assert mac == link_mac(cont, "eth0")
    assert conf.tap_name == "tap0" and conf.netns_path == f"/var/run/netns/{cont}"

    vm = guest.boot(conf.netns_path, conf.tap_name, mac, ip_param, tmp_path / "console.log", image=image)
    vms.append(vm)
    # A wait that is too short fails with the console in the message (the guest keeps booting).
    with pytest.raises(guest.GuestNotReady, match="last 30 console lines"):
        vm.wait_ready(timeout=0.2)

    first_ping = guest.wait_ping(host, GUEST_IP, timeout=60)
    to_ping = vm.since_start()
    assert vm.wait_ready(timeout=5) == GUEST_IP
    assert f"mac={mac}" in vm.console()
    assert vm.wait_gateway_ping(timeout=20), vm.console_tail()
    page = guest.http_get(host, f"http://{GUEST_IP}/")
    assert f"ip={GUEST_IP} mac={mac}" in page
    # The guest originates traffic on request (used for VM-to-VM and masquerade checks).
    assert guest.http_get(host, guest.guest_ping_url(GUEST_IP, HOST_IP)).rstrip().endswith("RESULT ok")
    echo = guest.start_echo_server(host, tmp_path / "echo", 8080)
    try:
        body = guest.http_get(host, guest.guest_fetch_url(GUEST_IP, f"{HOST_IP}:8080/cgi-bin/whoami"))
    finally:
        guest.stop_process(echo)
    assert body.rstrip().endswith("RESULT ok"), body
    assert guest.remote_addr(body) == GUEST_IP, body  # no NAT on this plain bridge
    report(capsys, f"accel={vm.accel} ({vm.accel_note}); QEMU start -> READY {vm.boot_seconds:.1f}s, "
                   f"-> first host ping {to_ping:.1f}s (pinging for {first_ping:.1f}s)")

    vm.stop()
    assert not vm.alive()


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
