"""`make vm-demo`: two real microVM guests on ignite-bridge's VM mode, step by step, as a runtime does it.

    python tests/vm/demo.py [--mode tc-redirect|bridge|both] [--bin-dir DIR] [--show-console]

For each mode: CNI ADD (the default conflist's plugin with "vm": {"mode": M} and a port mapping
18080+i -> 80) for two VM namespaces -> the kernel ``ip=`` argument and guest MAC from the result (as
firecracker-go-sdk does) -> QEMU on the tap the result names -> host pings, each VM pings its gateway,
the VM's page through the mapped port, an "outside" namespace sees the VM masqueraded, VM to VM ->
stop the VMs -> CNI DEL -> nothing left.

Needs root. Everything lives in throwaway namespaces (tests/vm/flow.py draws the layout); nothing in the
machine's own network namespace changes, and the real /etc/cni, /opt/cni, /var/lib/cni are not used.
Every QEMU and server it starts is stopped by PID and every namespace deleted before it exits, also on
errors or Ctrl-C. ``--bin-dir`` defaults to dist/ (the frozen binaries ``make build`` makes), else the
venv's console scripts. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

TESTS = Path(__file__).resolve().parent.parent
if str(Path(__file__).resolve().parent) in sys.path:  # import our modules as vm.*, never twice
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(TESTS))

from nsutil import path  # noqa: E402

from vm import guest  # noqa: E402
from vm.flow import HOST_OUT_IP, MODES, OUTSIDE_IP, REPO, FlowError, Slot, World  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator


class Steps:
    """Numbered steps: ``N. what … ok (0.3 s)`` followed by the details noted during the step."""

    def __init__(self) -> None:
        self.n = 0
        self.notes: list[str] = []
        self.failed: str | None = None

    def note(self, text: str) -> None:
        self.notes.extend(text.splitlines() or [""])

    @contextlib.contextmanager
    def __call__(self, what: str) -> Iterator[None]:
        self.n += 1
        self.notes = []
        print(f"{self.n:>2}. {what} … ", end="", flush=True)
        start = time.monotonic()
        try:
            yield
        except BaseException as exc:
            print(f"FAILED ({time.monotonic() - start:.1f} s)")
            self._flush()
            self.failed = self.failed or f"step {self.n} ({what}): {type(exc).__name__}: {exc}"
            raise
        print(f"ok ({time.monotonic() - start:.1f} s)")
        self._flush()

    def _flush(self) -> None:
        for line in self.notes:
            print(f"      {line}")
        self.notes = []


def default_bin_dir() -> Path:
    dist = REPO / "dist"
    if (dist / "ignite-bridge").exists() and (dist / "ignite-ipam").exists():
        return dist
    return Path(sys.executable).parent


def run_mode(mode: str, bin_dir: Path, step: Steps, show_console: bool) -> None:
    print(f"\n=== VM mode {mode!r} ===")
    w = World(bin_dir, mode, prefix="cnid")
    try:
        with step("creating throwaway host and outside namespaces"):
            w.make_host()
            step.note(f"host ns {w.host}: out0 {HOST_OUT_IP}/24, ip_forward=1 (the plugin will add ignite0)")
            step.note(f"outside ns {w.outside}: eth0 {OUTSIDE_IP}/24")
        vms = [w.new_slot(), w.new_slot()]
        add_and_boot(w, vms, step)
        checks(w, vms, step)
        if show_console:
            for slot in vms:
                assert slot.vm is not None
                print(f"--- console of {slot.vm_id} ---\n{slot.vm.console_tail(15)}")
        teardown(w, vms, step)
    finally:
        with step("stopping anything still running and removing the throwaway namespaces"):
            ours = list(w.spaces.made)
            w.close()
            listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
            left = [ns for ns in ours if ns in listed.split()]
            if left:
                raise FlowError(f"namespaces not removed: {left}")
            step.note(f"removed {', '.join(ours)}")


def add_and_boot(w: World, vms: list[Slot], step: Steps) -> None:
    for slot in vms:
        with step(f"CNI ADD {slot.vm_id} (netns {slot.ns}, vm.mode={w.mode}, hostPort {slot.host_port} -> 80)"):
            t0 = time.monotonic()
            w.add(slot)
            tap, pseudo = slot.interfaces()
            step.note(f"ADD took {1000 * (time.monotonic() - t0):.0f} ms")
            step.note(f"result tap:          {json.dumps(tap)}")
            step.note(f"result VM interface: {json.dumps(pseudo)}")
            step.note(f"result ips:          {json.dumps(slot.result.get('ips'))}")
            step.note(f"kernel argument:     {slot.ip_param}")
            veth = next(i for i in slot.result["interfaces"]
                        if i.get("sandbox") == path(slot.ns) and i["name"] == "eth0")
            how = ("= the VM ns eth0's MAC, tc-redirect-tap's way" if w.mode == "tc-redirect" else
                   f"the guest's own; eth0 in the VM ns has {veth['mac']}")
            step.note(f"guest MAC:           {slot.mac} ({how})")
    with step("booting both guests (QEMU -netdev tap,ifname=<tap from the result>, inside the VM ns)"):
        w.image = guest.prepare_guest()
        for slot in vms:
            vm = w.boot(slot)
            step.note(f"{slot.vm_id}: QEMU pid {vm.pid} on {slot.net.tap_name if slot.net else '?'} in "
                      f"{slot.ns}, accel={vm.accel}")
        verdict = guest.kvm_verdict()
        if verdict:
            step.note(f"accel: {verdict[0]} ({verdict[1]})")
    with step("waiting for the guests: READY on the serial console, then the host's first ping"):
        w.wait_all_up()
        for slot in vms:
            assert slot.vm is not None and slot.vm.boot_seconds is not None and slot.to_ping is not None
            step.note(f"{slot.ip}: QEMU start -> READY {slot.vm.boot_seconds:.1f} s, "
                      f"-> first answered ping {slot.to_ping:.1f} s")


def checks(w: World, vms: list[Slot], step: Steps) -> None:
    with step("host namespace pings each VM"):
        for slot in vms:
            rtts = w.ping_times(slot)
            if not rtts:
                raise FlowError(f"no answer from {slot.ip}")
            step.note(f"{slot.ip}: " + ", ".join(f"{t:.2f} ms" for t in rtts))
    with step("each VM pings its gateway (the guest's own init, read from its console)"):
        for slot in vms:
            w.gateway_ping(slot)
            step.note(f"{slot.ip} -> {slot.gateway}: ok")
    with step("fetching each VM's page through its mapped host port"):
        for slot in vms:
            for ns, url in w.mapped_urls(slot):
                page = w.fetch(ns, url)
                w.check_page(slot, page, f"{url} in {ns}")
                where = "outside ns" if ns == w.outside else "host ns"
                step.note(f"{where:>10}: {url} -> {page.strip()!r}")
    with step(f"the outside namespace sees the VMs' traffic masqueraded (as {HOST_OUT_IP})"):
        for slot in vms:
            seen = w.outside_sees(slot)
            step.note(f"{slot.ip} fetched http://{OUTSIDE_IP}:8080/cgi-bin/whoami; the server saw {seen}")
            if seen != HOST_OUT_IP:
                raise FlowError(f"the outside saw {seen}, not the host's {HOST_OUT_IP}: not masqueraded")
    with step("the two VMs reach each other"):
        a, b = vms
        w.guest_pings(a, b)
        step.note(f"{a.ip} pings {b.ip}: ok")
        w.guest_pings(b, a)
        step.note(f"{b.ip} pings {a.ip}: ok")
        body = w.guest_fetches(a, b)
        step.note(f"{a.ip} fetches http://{b.ip}/ -> {body.splitlines()[0]!r}")
        body = w.guest_fetches_published(b, a)
        step.note(f"{b.ip} fetches http://{b.gateway}:{a.host_port}/ (VM1's published port) -> "
                  f"{body.splitlines()[0]!r}")


def teardown(w: World, vms: list[Slot], step: Steps) -> None:
    with step("CNI CHECK each attachment while its guest runs (cached ADD result as prevResult)"):
        for slot in vms:
            w.check(slot)
            step.note(f"{slot.vm_id}: ok")
    with step("stopping both VMs (by QEMU's PID)"):
        w.stop_vms()
        for slot in vms:
            assert slot.vm is not None
            if slot.vm.alive():
                raise FlowError(f"QEMU {slot.vm.pid} still runs")
            step.note(f"{slot.vm_id}: QEMU {slot.vm.pid} exited ({slot.vm.proc.returncode})")
    for slot in vms:
        with step(f"CNI DEL {slot.vm_id} (with the cached ADD result as prevResult)"):
            t0 = time.monotonic()
            w.delete(slot)
            step.note(f"DEL took {1000 * (time.monotonic() - t0):.0f} ms")
    with step("checking that nothing is left (veths, tap, lease files, iptables/nft rules, QEMU)"):
        problems = [p for slot in vms for p in w.leftovers(slot)]
        if problems:
            raise FlowError("; ".join(problems))
        for slot in vms:
            step.note(f"{slot.vm_id}: no host veth, no tap/eth0 in {slot.ns}, no lease for {slot.ip}, "
                      f"no rule naming {slot.ip} or port {slot.host_port}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="both", choices=(*MODES, "both"))
    ap.add_argument("--bin-dir", type=Path, default=None,
                    help="folder with ignite-bridge and ignite-ipam (default: dist/, else the venv's scripts)")
    ap.add_argument("--show-console", action="store_true", help="print each guest's serial console tail")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("vm-demo: needs root (it creates network namespaces and runs QEMU); run `sudo make vm-demo`",
              file=sys.stderr)
        return 2
    bin_dir: Path = (args.bin_dir or default_bin_dir()).resolve()
    for name in ("ignite-bridge", "ignite-ipam"):
        if not (bin_dir / name).exists():
            print(f"vm-demo: {bin_dir / name} does not exist (run `make build`, or pass --bin-dir)", file=sys.stderr)
            return 2
    step = Steps()
    started = time.monotonic()
    print(f"cni-ignite VM demo: plugins from {bin_dir}"
          f"{' (frozen bundle)' if (bin_dir / 'ignite-bridge').is_symlink() else ''}")
    try:
        with step("preparing the guest (Debian cloud kernel, cached; busybox initramfs)"):
            image = guest.prepare_guest()
            step.note(f"kernel {image.kernel}")
            step.note(f"initramfs {image.initrd} ({image.initrd.stat().st_size // 1024} KiB)")
        for mode in MODES if args.mode == "both" else (args.mode,):
            run_mode(mode, bin_dir, step, args.show_console)
    except KeyboardInterrupt:
        print("\nvm-demo: interrupted; namespaces and QEMU cleaned up", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure ends the demo with a clear message
        print(f"\nvm-demo: FAILED at {step.failed or f'{type(exc).__name__}: {exc}'}", file=sys.stderr)
        return 1
    print(f"\nvm-demo: all {step.n} steps passed in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
