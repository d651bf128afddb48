"""End to end with a real guest kernel: ignite-bridge's VM mode as a microVM runtime drives it.

CNI ADD on the default conflist's plugin (VM mode, a port mapping) -> firecracker-go-sdk-style ``ip=``
argument and guest MAC from the result -> QEMU on the tap the result names -> the host pings each VM,
each VM pings its gateway, the VM's page answers on the mapped host port, the "outside" sees the VM
masqueraded, two VMs reach each other -> stop the VMs -> CNI DEL -> nothing left. Both VM modes.
Layout and helpers: tests/vm/flow.py. Everything lives in throwaway namespaces (see there).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from cnirun import source_bin_dir
from vm import guest
from vm.flow import HOST_OUT_IP, MODES, World, default_plugin_conf

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def new_world(made: list[World], mode: str, tmp_path: Path, image: guest.GuestImage) -> World:
    w = World(source_bin_dir(), mode, tmp_path / mode)
    w.workdir.mkdir(parents=True, exist_ok=True)
    w.image = image
    made.append(w)
    w.make_host()
    return w


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[vm-e2e] {text}")


def test_default_conflist_is_what_we_extend() -> None:
    conf = default_plugin_conf("bridge", "/tmp/x", 18080)
    assert conf["type"] == "ignite-bridge" and conf["ipMasq"] is True
    assert conf["capabilities"] == {"portMappings": True}
    assert conf["runtimeConfig"]["portMappings"] == [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
    assert conf["ipam"]["dataDir"] == "/tmp/x/networks" and conf["ipam"]["type"] == "ignite-ipam"
    assert conf["stateDir"] == "/tmp/x/firewall"  # the firewall's state: never the machine's /var/lib/cni


@pytest.mark.parametrize("mode", MODES)
def test_two_vms_on_the_default_network(mode: str, worlds: list[World], tmp_path: Path,
                                        image: guest.GuestImage, capsys: pytest.CaptureFixture[str]) -> None:
    w = new_world(worlds, mode, tmp_path, image)
    vm1, vm2 = w.new_slot(), w.new_slot()

    # ADD -> what a runtime derives from the result.
    for slot in (vm1, vm2):
        w.add(slot)
        tap, pseudo = slot.interfaces()
        assert tap["sandbox"] == f"/var/run/netns/{slot.ns}" and tap["name"] == pseudo["name"] == "tap0"
        assert slot.ip_param == f"ip={slot.ip}::10.61.0.1:255.255.0.0::eth0:off:::"
        assert slot.mac == pseudo["mac"]
    assert vm1.ip != vm2.ip

    # Boot both guests together on the taps the results name.
    for slot in (vm1, vm2):
        w.boot(slot)
    times = w.wait_all_up()
    ready = [s.vm.boot_seconds for s in (vm1, vm2) if s.vm is not None]
    accel = vm1.vm.accel if vm1.vm else "?"

    # Each VM pings its gateway (its own init does, the result is on its console).
    for slot in (vm1, vm2):
        w.gateway_ping(slot)

    # The page through the mapped host port: host ns via the gateway and 127.0.0.1, and from outside.
    for slot in (vm1, vm2):
        for ns, url in w.mapped_urls(slot):
            w.check_page(slot, w.fetch(ns, url), f"{url} in {ns}")

    # The outside sees the VM masqueraded to the host's address.
    for slot in (vm1, vm2):
        assert w.outside_sees(slot) == HOST_OUT_IP

    # VM to VM.
    w.guest_pings(vm1, vm2)
    w.guest_pings(vm2, vm1)
    w.guest_fetches(vm1, vm2)
    w.guest_fetches_published(vm2, vm1)  # VM2 -> gateway:18080 -> VM1

    report(capsys, f"{mode}: accel={accel}; QEMU start -> READY "
                   + " / ".join(f"{t:.1f}s" for t in ready if t is not None)
                   + ", -> first host ping " + " / ".join(f"{t:.1f}s" for t in times)
                   + " (two guests booted together)")

    # CHECK on the live attachments (guests running on the taps).
    for slot in (vm1, vm2):
        w.check(slot)

    # Stop the VMs, then DEL with the cached results: nothing left.
    w.stop_vms()
    for slot in (vm1, vm2):
        assert slot.vm is not None and not slot.vm.alive()
        w.delete(slot)
    for slot in (vm1, vm2):
        assert w.leftovers(slot) == [], w.leftovers(slot)


def test_guest_that_never_comes_up_fails_with_its_console(worlds: list[World], tmp_path: Path,
                                                         image: guest.GuestImage) -> None:
    w = new_world(worlds, "tc-redirect", tmp_path, image)
    slot = w.new_slot(port_mapping=False)
    w.add(slot)
    started = time.monotonic()
    w.boot(slot, extra_append="cniignite.fail=1")
    with pytest.raises(guest.GuestNotReady) as err:
        w.wait_up(slot, timeout=60)
    message = str(err.value)
    assert "last 30 console lines" in message and "FATAL asked to fail" in message, message
    assert time.monotonic() - started < 60
    w.stop_vms()
    w.delete(slot)
    assert w.leftovers(slot) == []
