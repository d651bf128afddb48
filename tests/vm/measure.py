"""Measure the guest's boot times on the hand-made tc-redirect layout (no plugin involved).

    python tests/vm/measure.py [--runs N] [--accel auto|kvm|tcg] [--show-console]

Needs root. Every namespace it makes is deleted and every QEMU it starts is stopped (by PID) before it
exits, also on errors or Ctrl-C. Prints one line per boot: QEMU start -> "init started" / READY /
first answered ping from the host namespace.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nsutil import Namespaces

from vm import guest
from vm.layout import add_vm_slot, make_host


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    ap.add_argument("--show-console", action="store_true")
    args = ap.parse_args()

    t0 = time.monotonic()
    image = guest.prepare_guest()
    print(f"assets + initramfs: {time.monotonic() - t0:.1f}s  kernel={image.kernel}  initrd={image.initrd} "
          f"({image.initrd.stat().st_size // 1024} KiB)")
    spaces = Namespaces()
    ready, pings = [], []
    try:
        layout = make_host(spaces)
        slot = add_vm_slot(spaces, layout, "10.99.0.2")
        mac, param = guest.guest_mac(slot.result, slot.vm_id), guest.ip_boot_param(slot.result, slot.vm_id)
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.runs):
                console = Path(tmp) / f"console{run}.log"
                t_boot = time.monotonic()
                vm = guest.boot(slot.container, "tap0", mac, param, console, args.accel, image=image)
                try:
                    vm.wait_ready(60)
                    guest.wait_ping(layout.host, slot.ip, 60)
                    first_ping = vm.since_start()
                    gw_ok = vm.wait_gateway_ping(30)
                    m = re.search(r"init started uptime=(\S+)", vm.console())
                    print(f"run {run + 1}: accel={vm.accel} probe+start={vm.started_at - t_boot:.1f}s "
                          f"guest-uptime-at-init={m.group(1) if m else '?'}s READY={vm.boot_seconds:.1f}s "
                          f"first-ping={first_ping:.1f}s gateway-ping={'ok' if gw_ok else 'FAILED'}  "
                          f"[{vm.accel_note}]")
                    ready.append(vm.boot_seconds or 0.0)
                    pings.append(first_ping)
                    if args.show_console:
                        print(vm.console())
                finally:
                    vm.stop()
    finally:
        spaces.cleanup()
    if ready:
        print(f"READY median {statistics.median(ready):.1f}s (min {min(ready):.1f}, max {max(ready):.1f}); "
              f"first ping median {statistics.median(pings):.1f}s (min {min(pings):.1f}, max {max(pings):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
