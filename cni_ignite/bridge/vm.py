"""VM mode: a TAP device in the container namespace for a microVM's virtio NIC, joined to the veth.

``tc-redirect`` (as awslabs/tc-redirect-tap): ingress qdiscs and u32 match-all mirred redirects both ways
between tap and veth; the guest uses the veth's MAC and address. ``bridge`` (as Ignite's spawn): an
in-namespace bridge holds veth and tap (forward delay 0, no learning on the veth uplink), the address is
taken off the veth and belongs to the guest, which gets its own stable MAC.

The result gains tc-redirect-tap's two entries — the tap ``{name, mac, sandbox: CNI_NETNS}`` and the
"VM" interface ``{name: tap, mac: guest MAC, sandbox: CNI_CONTAINERID}`` — so firecracker-go-sdk's
``vmconf`` reads it unchanged.

Ownership: ADD never adopts an existing tap or in-namespace bridge (the tap is made with IFF_TUN_EXCL)
and gives what it makes the attachment's tag as alias; DEL removes only links carrying that tag (or,
made before tags, a tap that is joined to this attachment's veth), so the DEL of one attachment never
takes another's tap. Neither the tun driver nor a bridge's RTM_NEWLINK takes an alias, so each is made
under a staging name derived from the tag (``staging_name``) and gets its name and tag in one message: an
ADD killed in between leaves a link whose name alone says whose it is, and DEL removes it.
"""

from __future__ import annotations

import errno

from ..errors import InvalidConfig
from ..netlink.ops import TAP_MAX_MTU, LinkExists, NetlinkError
from ..result import Interface
from .config import attachment_tag

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from ..netlink.ops import LinkInfo
    from ..result import IPConfig
    from ..skel import CmdArgs
    from .config import BridgeConfig
    from .kernel import ContainerNet


def inner_bridge_name(tap: str) -> str:
    return ("br-" + tap)[:15]


def staging_name(tag: str, kind: str) -> str:
    """The name a link of the attachment (``tag``) has between its creation and its tagging: ``ct``
    (tap) or ``cb`` (bridge) and 13 hex digits of the attachment's hash."""
    return ("ct" if kind == "tap" else "cb") + tag.rsplit(":", 1)[-1][:13]


def setup(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig, veth: LinkInfo, ips: list[IPConfig],
          guest_mac: str, *, tag: str, made: list[int]) -> tuple[Interface, ...]:
    """Build the VM side; every link made is appended to ``made`` at once, for the caller's undo."""
    vm = cfg.vm
    if veth.mtu > TAP_MAX_MTU:
        raise InvalidConfig(f"VM mode cannot use MTU {veth.mtu} (the MTU of bridge {cfg.bridge})",
                            f"a tap's MTU is at most {TAP_MAX_MTU}: set mtu in the network configuration")
    try:
        tap = cont.nl.create_tap(vm.tap, uid=vm.uid, gid=vm.gid, vnet_hdr=True, multi_queue=False, mtu=veth.mtu,
                                 alias=tag, exclusive=True, staging=staging_name(tag, "tap"))
    except LinkExists as exc:
        raise LinkExists(f"VM tap {vm.tap} already exists in {cmd.netns} (another attachment's VM?); "
                         "choose another vm.tap or TC_REDIRECT_TAP_NAME", exc.details) from exc
    made.append(tap.index)
    if vm.mode == "tc-redirect":
        cont.nl.add_tc_redirect(veth.index, tap.index)
        mac = veth.mac or ""
    else:
        br_name = inner_bridge_name(vm.tap)
        if cont.nl.link(br_name) is not None:
            raise LinkExists(f"cannot create the VM bridge {br_name}: a device of that name already exists in "
                             f"{cmd.netns}")
        br = cont.nl.create_bridge(staging_name(tag, "bridge"), mtu=veth.mtu, forward_delay=0)
        made.append(br.index)
        try:  # named and tagged in one message (see the module's docstring)
            cont.nl.set_link(br.index, name=br_name, mac=_bridge_mac(guest_mac), up=True, alias=tag)
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                raise LinkExists(f"cannot create the VM bridge {br_name}: a device of that name already exists "
                                 f"in {cmd.netns}", str(exc)) from exc
            raise
        br = cont.nl.require(br.index)
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


def undo(cont: ContainerNet, made: list[int]) -> None:
    """ADD's rollback: delete exactly the links this ADD made (newest first)."""
    for index in reversed(made):
        cont.nl.delete_link(index)


def teardown(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig, tag: str) -> None:
    """Remove the attachment's tap and what joins it to the veth; each part may already be gone, and a
    tap or bridge of that name that is not this attachment's is left alone."""
    veth = cont.nl.link(cmd.ifname)
    tap = cont.nl.link(cfg.vm.tap)
    br = cont.nl.link(inner_bridge_name(cfg.vm.tap))
    tap_ours = tap is not None and (tap.alias == tag or (not tap.alias and _joined(cont, cfg, veth, tap, br)))
    br_ours = br is not None and (br.alias == tag or (not br.alias and tap_ours and tap is not None
                                                       and br.kind == "bridge" and tap.master == br.index))
    if veth is not None:
        cont.nl.del_ingress_qdisc(veth.index)
    if br_ours and br is not None:
        cont.nl.delete_link(br.index)
    if tap_ours and tap is not None:
        cont.nl.delete_link(tap.index)
    for kind, want in (("bridge", "bridge"), ("tap", "tun")):  # an ADD killed between making and tagging
        staged = cont.nl.link(staging_name(tag, kind))
        if staged is not None and staged.kind == want:
            cont.nl.delete_link(staged.index)


def _joined(cont: ContainerNet, cfg: BridgeConfig, veth: LinkInfo | None, tap: LinkInfo,
            br: LinkInfo | None) -> bool:
    """Is tap (made before ADD tagged its links) joined to this attachment's veth?"""
    if veth is None or tap.kind != "tun":
        return False
    if cfg.vm.mode == "tc-redirect":
        return cont.nl.has_tc_redirect(veth.index, tap.index)
    return br is not None and tap.master == br.index and veth.master == br.index


def problems(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig) -> list[str]:
    found: list[str] = []
    tap = cont.nl.link(cfg.vm.tap)
    veth = cont.nl.link(cmd.ifname)
    if tap is None:
        return [f"VM tap {cfg.vm.tap} is missing in {cmd.netns}"]
    if tap.kind != "tun":
        found.append(f"{cfg.vm.tap} is a {tap.kind}, not a tap")
    if tap.alias and tap.alias != attachment_tag(cmd.conf.name, cmd.container_id, cmd.ifname):
        found.append(f"VM tap {cfg.vm.tap} belongs to another attachment ({tap.alias})")
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
