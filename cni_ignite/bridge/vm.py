"""VM mode: a TAP device in the container namespace for a microVM's virtio NIC, joined to the veth.

``tc-redirect`` (as awslabs/tc-redirect-tap): ingress qdiscs and u32 match-all mirred redirects both ways
between tap and veth; the guest uses the veth's MAC and address. ``bridge`` (as Ignite's spawn): an
in-namespace bridge holds veth and tap (forward delay 0, no learning on the veth uplink), the address is
taken off the veth and belongs to the guest, which gets its own stable MAC.

The result gains tc-redirect-tap's two entries — the tap ``{name, mac, sandbox: CNI_NETNS}`` and the
"VM" interface ``{name: tap, mac: guest MAC, sandbox: CNI_CONTAINERID}`` — so firecracker-go-sdk's
``vmconf`` reads it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..result import Interface

if TYPE_CHECKING:
    from ..netlink.ops import LinkInfo
    from ..result import IPConfig
    from ..skel import CmdArgs
    from .config import BridgeConfig
    from .kernel import ContainerNet


def inner_bridge_name(tap: str) -> str:
    return ("br-" + tap)[:15]


def setup(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig, veth: LinkInfo, ips: list[IPConfig],
          guest_mac: str) -> tuple[Interface, ...]:
    vm = cfg.vm
    tap = cont.nl.create_tap(vm.tap, uid=vm.uid, gid=vm.gid, vnet_hdr=True, multi_queue=False, mtu=veth.mtu)
    if vm.mode == "tc-redirect":
        cont.nl.add_tc_redirect(veth.index, tap.index)
        mac = veth.mac or ""
    else:
        br = cont.nl.create_bridge(inner_bridge_name(vm.tap), mtu=veth.mtu, forward_delay=0)
        cont.nl.set_link(br.index, mac=_bridge_mac(guest_mac), up=True)
        for port in (veth, tap):
            cont.nl.set_link(port.index, master=br.index, up=True)
        cont.nl.set_brport(veth.index, learning=False)
        for ip in ips:  # the address belongs to the guest now
            cont.nl.del_addr(veth.index, ip.address)
        mac = guest_mac
    return (Interface(name=tap.name, mac=tap.mac or "", sandbox=cmd.netns),
            Interface(name=tap.name, mac=mac, sandbox=cmd.container_id))


def _bridge_mac(guest_mac: str) -> str:
    """A stable MAC for the in-namespace bridge, distinct from the guest's (last octet flipped)."""
    head, last = guest_mac.rsplit(":", 1)
    return f"{head}:{int(last, 16) ^ 0xFF:02x}"


def teardown(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig) -> None:
    """Remove the tap and what joins it to the veth; each part may already be gone."""
    veth = cont.nl.link(cmd.ifname)
    if veth is not None:
        cont.nl.del_ingress_qdisc(veth.index)
    cont.nl.delete_link(inner_bridge_name(cfg.vm.tap))
    cont.nl.delete_link(cfg.vm.tap)


def problems(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig) -> list[str]:
    found: list[str] = []
    tap = cont.nl.link(cfg.vm.tap)
    veth = cont.nl.link(cmd.ifname)
    if tap is None:
        return [f"VM tap {cfg.vm.tap} is missing in {cmd.netns}"]
    if tap.kind != "tun":
        found.append(f"{cfg.vm.tap} is a {tap.kind}, not a tap")
    if veth is None:
        return found
    if cfg.vm.mode == "tc-redirect":
        if not cont.nl.has_tc_redirect(veth.index, tap.index):
            found.append(f"tc redirect between {cmd.ifname} and {cfg.vm.tap} is missing")
    else:
        br = cont.nl.link(inner_bridge_name(cfg.vm.tap))
        if br is None:
            found.append(f"in-namespace bridge {inner_bridge_name(cfg.vm.tap)} is missing")
        else:
            for port in (veth, tap):
                if port.master != br.index:
                    found.append(f"{port.name} is not a port of {br.name}")
    return found
