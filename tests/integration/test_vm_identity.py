"""Stable identity (issue 10) with a real guest kernel: a restarted VM comes back with its address and MAC.

The default conflist's plugin (sticky leases on, guard on) in VM mode, both modes, temp dataDir/stateDir
(tests/vm/flow.py). Three VMs boot: A (Ignite-style, its owner is the VM ID), B (another VM, stays up
throughout) and a pod sandbox P (its owner is the pod, from CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME).
A and P are stopped and DELeted; a new owner's ADD in between must not take their held addresses; A is
ADDed again with the same VM ID, the pod with a new sandbox ID in a new namespace; both boot again. Each
guest's address and MAC are read from inside the guest (over its serial control channel, not from the CNI
result): the same as before; the host and guest B reach them on that address and see the same page; the
mapped host port still answers. Everything lives in throwaway namespaces.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from cnirun import source_bin_dir
from vm.flow import MODES, World

if TYPE_CHECKING:
    from pathlib import Path

    from vm import guest
    from vm.flow import Slot

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

PREFIX_LEN = 16  # conf/10-ignite.conflist: subnet 10.61.0.0/16


def pod_args(sandbox_id: str) -> str:
    """CNI_ARGS as containerd's CRI passes them for a pod sandbox."""
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0;"
            f"K8S_POD_INFRA_CONTAINER_ID={sandbox_id}")


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[vm-identity] {text}")


def identity_inside(w: World, slot: Slot) -> tuple[str, str]:
    """The guest's (address/prefix, MAC) from inside; it must also be what the CNI result said."""
    addrs, mac = w.inside(slot)
    assert addrs == [f"{slot.ip}/{PREFIX_LEN}"], f"{slot.vm_id}: eth0 has {addrs}, the result says {slot.ip}"
    assert mac == slot.mac, f"{slot.vm_id}: eth0's MAC is {mac}, the result says {slot.mac}"
    return addrs[0], mac


def reached(w: World, slot: Slot, other: Slot) -> None:
    """The host and guest ``other`` reach ``slot`` on its address; its mapped host port answers."""
    w.check_page(slot, w.fetch(w.host, f"http://{slot.ip}/"), f"the host fetching http://{slot.ip}/")
    w.guest_pings(other, slot)
    w.guest_fetches(other, slot)
    for ns, url in w.mapped_urls(slot):
        w.check_page(slot, w.fetch(ns, url), f"{url} in {ns}")


@pytest.mark.parametrize("mode", MODES)
def test_restarted_vm_and_pod_keep_address_and_mac(mode: str, worlds: list[World], tmp_path: Path,
                                                   image: guest.GuestImage,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    w = World(source_bin_dir(), mode, tmp_path / mode)
    w.workdir.mkdir(parents=True)
    w.image = image
    worlds.append(w)
    w.make_host()
    assert w.new_slot().conf["guard"] is True and "sticky" in w.slots[0].conf["ipam"]  # the shipped settings
    vm_a, vm_b = w.slots[0], w.new_slot()
    pod = w.new_slot(vm_id=f"sandbox-1-{mode}", cni_args=pod_args(f"sandbox-1-{mode}"))

    for slot in (vm_a, vm_b, pod):
        w.add(slot)
        w.boot(slot)
    w.wait_all_up()  # the host pings each of them
    before = {slot.vm_id: identity_inside(w, slot) for slot in (vm_a, pod)}
    phases = {"first boot": time.monotonic() - started}
    mark = time.monotonic()

    # Stop the VM and the pod, DEL both (libcni's way): nothing of them left but the sticky hold.
    for slot in (vm_a, pod):
        assert slot.vm is not None
        slot.vm.stop()
        w.delete(slot)
        assert w.leftovers(slot) == []
    # A new owner in between gets neither held address (with host-local's round robin it could have).
    other = w.new_slot(port_mapping=False)
    w.add(other)
    assert other.ip not in {vm_a.ip, pod.ip}

    # ADD again: the VM with the same VM ID; the pod with a new sandbox ID in a new namespace.
    old_a, old_pod = (vm_a.ip, vm_a.mac), (pod.ip, pod.mac)
    w.add(vm_a)
    pod2 = w.new_slot(vm_id=f"sandbox-2-{mode}", cni_args=pod_args(f"sandbox-2-{mode}"), host_port=pod.host_port)
    w.add(pod2)
    assert (vm_a.ip, vm_a.mac) == old_a
    assert (pod2.ip, pod2.mac) == old_pod
    w.boot(vm_a, console_tag="-restart")
    w.boot(pod2)
    w.wait_all_up([vm_a, pod2])
    phases["stop, DEL, ADD, boot again"], mark = time.monotonic() - mark, time.monotonic()

    # Seen from inside the guests: the same address and MAC as before the restart.
    assert identity_inside(w, vm_a) == before[vm_a.vm_id]
    assert identity_inside(w, pod2) == before[pod.vm_id]
    reached(w, vm_a, vm_b)
    reached(w, pod2, vm_b)
    w.guest_pings(vm_a, vm_b)  # and the restarted guest reaches the one that stayed up
    phases["checks"], mark = time.monotonic() - mark, time.monotonic()

    # Clean up as a runtime does: stop, DEL, nothing left.
    w.stop_vms()
    for slot in (vm_a, vm_b, pod2, other):
        w.delete(slot)
        assert w.leftovers(slot) == [], w.leftovers(slot)
    report(capsys, f"{mode}: accel={vm_a.vm.accel if vm_a.vm else '?'}; A {old_a[0]} {old_a[1]}, "
                   f"pod {old_pod[0]} {old_pod[1]} kept across stop/DEL/ADD/boot; "
                   f"{time.monotonic() - started:.1f}s in all, 5 boots ("
                   + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()) + ")")
