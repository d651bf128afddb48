"""Hand-made VM networking without our plugin, for testing the guest itself (tc-redirect-tap's layout).

::

    "host" ns:        br0 <gateway>/24 (forward_delay 0, STP off) -- vh<i>
    "container" ns i: eth0 (veth, <ip>/24)  <=tc mirred both ways=>  tap0  <-- QEMU (guest MAC = eth0's MAC)

``TcRedirectLayout.result`` is a CNI result with tc-redirect-tap's shape (tap in the netns sandbox, a
pseudo-interface named like the tap with ``sandbox = vm_id`` and the veth's MAC, the one IP pointing at
it), so ``guest.ip_boot_param``/``guest.guest_mac`` run on it exactly as on a plugin's result.
Namespaces come from ``nsutil.Namespaces`` (deleted by its ``cleanup()``); nothing touches the root ns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nsutil import in_ns, sh

if TYPE_CHECKING:
    from nsutil import Namespaces

GATEWAY = "10.99.0.1"


def link_mac(ns: str, dev: str) -> str:
    return str(json.loads(in_ns(ns, ["ip", "-j", "link", "show", dev]).stdout)[0]["address"])


def tc_redirect(ns: str, a: str, b: str) -> None:
    """Redirect everything arriving on ``a`` out of ``b`` and back, as tc-redirect-tap does."""
    for src, dst in ((a, b), (b, a)):
        in_ns(ns, ["tc", "qdisc", "add", "dev", src, "ingress"])
        in_ns(ns, ["tc", "filter", "add", "dev", src, "parent", "ffff:", "protocol", "all", "u32", "match", "u8",
                   "0", "0", "action", "mirred", "egress", "redirect", "dev", dst])


@dataclass
class VMSlot:
    container: str          # namespace name holding eth0 + tap0
    ip: str
    vm_id: str
    result: dict[str, Any]  # tc-redirect-tap-shaped CNI result


@dataclass
class TcRedirectLayout:
    host: str
    gateway: str = GATEWAY
    slots: list[VMSlot] = field(default_factory=list)


def make_host(netns: Namespaces, gateway: str = GATEWAY) -> TcRedirectLayout:
    host = netns.new("cnit-vmh")
    in_ns(host, ["ip", "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])
    in_ns(host, ["ip", "addr", "add", f"{gateway}/24", "dev", "br0"])
    in_ns(host, ["ip", "link", "set", "br0", "up"])
    return TcRedirectLayout(host, gateway)


def add_vm_slot(netns: Namespaces, layout: TcRedirectLayout, ip: str, vm_id: str | None = None) -> VMSlot:
    """A container namespace on ``layout``'s bridge with a veth ``eth0`` (``ip``/24) tc-redirected to ``tap0``."""
    index = len(layout.slots)
    cont = netns.new("cnit-vmc")
    peer = f"vh{index}"
    sh(["ip", "-n", layout.host, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", cont])
    in_ns(layout.host, ["ip", "link", "set", peer, "master", "br0", "up"])
    in_ns(cont, ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
    in_ns(cont, ["ip", "link", "set", "eth0", "up"])
    in_ns(cont, ["ip", "tuntap", "add", "tap0", "mode", "tap"])
    in_ns(cont, ["ip", "link", "set", "tap0", "up"])
    tc_redirect(cont, "eth0", "tap0")
    veth_mac, tap_mac = link_mac(cont, "eth0"), link_mac(cont, "tap0")
    vm_id = vm_id or f"vm-{index}"
    sandbox = f"/var/run/netns/{cont}"
    result: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "br0", "mac": link_mac(layout.host, "br0")},
            {"name": peer, "mac": link_mac(layout.host, peer)},
            {"name": "eth0", "mac": veth_mac, "sandbox": sandbox},
            {"name": "tap0", "mac": tap_mac, "sandbox": sandbox},
            {"name": "tap0", "mac": veth_mac, "sandbox": vm_id},
        ],
        "ips": [{"address": f"{ip}/24", "gateway": layout.gateway, "interface": 4}],
        "routes": [{"dst": "0.0.0.0/0", "gw": layout.gateway}],
        "dns": {},
    }
    slot = VMSlot(cont, ip, vm_id, result)
    layout.slots.append(slot)
    return slot
