"""ignite-bridge's verbs: ADD builds bridge, veth, addresses, routes, the VM tap and the firewall rules,
undoing all of it if any step fails; DEL removes everything the attachment owns even when its namespace
is gone; CHECK reports precisely what is missing; GC and STATUS cover IPAM and rules.

In routed mode (``"mode": "routed"``, see ``routed``) there is no bridge: the host veth is the attachment's
router port, with the gateway address and host routes, which DEL removes by deleting the veth.

Kernel work goes through ``kernel`` (netlink adapter), ``routed`` and ``vm``; rules through
``cni_ignite.firewall``.
"""

from __future__ import annotations

import ipaddress
from contextlib import ExitStack, nullcontext, suppress

from ..errors import CniError, IOFailure, NotFound, TryAgainLater, UnknownContainer
from ..result import DNS, Interface, IPConfig, Result, Route, decode
from ..skel import Handlers, step
from . import ipam_call
from .config import OUR_IPAM, BridgeConfig, attachment_tag, derived_mac, host_veth_name, parse_bridge_config

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NamedTuple as Record

    from ..firewall.base import FirewallConfig
    from ..guard.rules import Attachment as GuardAttachment
    from ..ipam.config import IpamConfig
    from ..netlink.ops import LinkInfo
    from ..result import IPAddress, IPInterface
    from ..skel import CmdArgs
    from .background import Background
    from .firewall_glue import PortFilters
    from .kernel import ContainerNet, HostNet
    from .records import Record as BridgeRecord
else:
    from .. import Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

DEFAULT_V4 = ipaddress.ip_network("0.0.0.0/0")
DEFAULT_V6 = ipaddress.ip_network("::/0")


def _quietly(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with suppress(Exception):  # an undo step must not hide the original error
            fn()

    return run


# ------------------------------------------------------------------------------------------------ ADD

def add(cmd: CmdArgs) -> Result:
    cfg = parse_bridge_config(cmd.conf, cmd.args, cmd.container_id)
    from . import firewall_glue as rules
    from . import kernel

    prev = decode(cmd.conf.prev_result) if cmd.conf.prev_result else None
    fw_cfg = rules.config(cmd, cfg) if rules.wanted(cmd, cfg) else None  # validated before any change
    state_dir = (fw_cfg or rules.config(cmd, cfg, port_mappings=False)).state_dir
    ipam_cfg = ipam_call.validate(cmd, cfg.ipam_type) if cfg.ipam_type else None  # likewise the IPAM's block
    step("config")
    with ExitStack() as undo:
        host = kernel.HostNet()
        undo.callback(host.close)
        cont = kernel.open_container(cmd.netns)
        undo.callback(cont.close)
        if cont.link(cmd.ifname) is not None:
            raise CniError(f"container veth name provided ({cmd.ifname}) already exists")
        _hold_records(state_dir, cmd.conf.name, undo)
        ident = _identity(host, cmd, cfg, state_dir, ipam_cfg)
        tag = attachment_tag(cmd.conf.name, cmd.container_id, cmd.ifname)
        bridge, host_veth = _host_veth(host, cont, cmd, cfg, ident.mac, tag, undo)
        step("bridge and veth")

        ipam = Result()
        if cfg.ipam_type:
            ipam = ipam_call.add(cmd, cfg.ipam_type)
            undo.callback(_quietly(lambda: ipam_call.run(cmd, cfg.ipam_type, "DEL")))
            step("ipam")
        ips, routes, gateways = _gateways_and_routes(ipam, cfg)

        _join(host, cmd, cfg, cont, state_dir, ident, ips, bridge, host_veth, tag, fw_cfg, undo)
        step("record, guard, rules, port")

        if cfg.routed:  # the host routes exist before the container sends its first packet
            from . import routed

            routed.refuse_overlap(host, ips)
            host.enable_forwarding({ip.address.version for ip in ips})
            routed.host_side(host, host_veth, ips)
        container_link = cont.configure(cmd.ifname, ips=ips, routes=routes, cfg=cfg)
        if bridge is not None and cfg.is_gateway and gateways:
            host.set_gateway_addrs(bridge, gateways, force=cfg.force_address)
            host.enable_forwarding({g.version for g in gateways})
        step("container and gateway")

        vm_ifaces: tuple[Interface, ...] = ()
        if cfg.vm.mode != "none":
            vm_ifaces = _vm(cont, cmd, cfg, container_link, ips, tag, ident.guest_mac, undo)
            step("vm tap")

        if not cfg.disable_container_interface:
            host.wait_oper_up(host_veth.index)
        host_links = [host.link_info(host_veth.name)]
        if bridge is not None:
            host_links.insert(0, host.link_info(bridge.name))
        result = _result(cmd, cfg, prev, ipam, ips, routes, host_links, container_link, vm_ifaces)
        undo.pop_all()
    step("link up, result")
    return result


def _hold_records(state_dir: str, network: str, undo: ExitStack) -> None:
    import os

    from .records import hold_shared

    fd = hold_shared(state_dir, network)
    undo.callback(os.close, fd)


class Identity(Record):
    """The MACs of an attachment: stable per (network, owner, ifname) unless the runtime or a
    reservation names one; per container ID while another live attachment of the owner holds the
    owner's (two live attachments must not share a MAC)."""

    mac: str         # the container interface's
    guest_mac: str   # the VM's in VM bridge mode (tc-redirect: the guest uses the container interface's)


def _identity(host: HostNet, cmd: CmdArgs, cfg: BridgeConfig, state_dir: str,
              ipam_cfg: IpamConfig | None) -> Identity:
    """The attachment's MACs; first, an earlier attachment of the same owner (under another container ID)
    whose namespace is gone is removed completely (host veth, guard, rules, record, lease), so this ADD
    gets its address back (sticky IPAM) and its MACs. A live one is left alone."""
    from . import records

    network, owner, ifname = cmd.conf.name, cfg.owner, cmd.ifname
    data_dir = ipam_cfg.data_dir if ipam_cfg is not None else ""
    key = owner
    for other in _earlier(state_dir, data_dir, network, owner, ifname, cmd.container_id):
        why = records.gone(host, state_dir, network, other, ifname)
        if why is None:
            key = cmd.container_id  # the owner's live attachment keeps the owner's MACs
        else:
            _take_over(cmd, other, why)
    reserved = ""
    if ipam_cfg is not None and key == owner:  # the config's reservations, else the run-time ones
        reserved = next((r.mac for r in ipam_cfg.reservations if (r.owner, r.ifname) == (owner, ifname) and r.mac),
                        "")
        if not reserved:
            from ..ipam.sticky import reservation_mac

            reserved = reservation_mac(data_dir, network, owner, ifname)
    bridge_vm = cfg.vm.mode == "bridge"  # the guest is the endpoint: a reserved MAC is the guest's
    mac = cfg.mac or ("" if bridge_vm else reserved) or derived_mac(network, key, ifname, "veth")
    guest = cfg.vm.guest_mac or (reserved if bridge_vm else "") or derived_mac(network, key, ifname, "vm")
    return Identity(mac=mac, guest_mac=guest)


def _earlier(state_dir: str, data_dir: str, network: str, owner: str, ifname: str, cid: str) -> list[str]:
    """Other container IDs of the owner's attachment: the bridge's pointer and (ignite-ipam) the lease
    holder of the owner's sticky record; O(1) each."""
    from . import records

    found = [records.latest(state_dir, network, owner, ifname)]
    if data_dir:
        from ..ipam.sticky import attachment_of

        found.append(attachment_of(data_dir, network, owner, ifname))
    return list(dict.fromkeys(c for c in found if c and c != cid))


def _take_over(cmd: CmdArgs, dead_cid: str, why: str) -> None:
    """Run the DEL of the dead attachment in-process (no namespace to visit: it is gone)."""
    dead = cmd._replace(command="DEL", container_id=dead_cid, netns="",
                        conf=cmd.conf._replace(prev_result=None))
    try:
        delete(dead)
    except CniError as exc:
        raise _BY_CODE.get(exc.code, CniError)(f"cannot remove the earlier attachment {dead_cid} of this owner ({why})",
                   f"{exc.msg}: {exc.details}" if exc.details else exc.msg) from exc


def _host_veth(host: HostNet, cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig, mac: str, tag: str,
               undo: ExitStack) -> tuple[LinkInfo | None, LinkInfo]:
    """The veth, its host end tagged as the attachment's at once (a DEL finds it even if this ADD dies
    before the end), not yet a port: (bridge or None in routed mode, host veth). Deleting the host veth
    undoes it, routes and addresses included."""
    bridge = None if cfg.routed else host.ensure_bridge(cfg)
    veth_name = host_veth_name(cmd.conf.name, cmd.container_id, cmd.ifname)
    mtu = cfg.mtu or (bridge.mtu if bridge is not None else 0)
    from ..netlink.ops import LinkExists  # loaded with the kernel adapter already

    try:
        host_veth = host.create_veth(veth_name, cmd.ifname, cont, mtu=mtu, peer_mac=mac)
    except LinkExists:
        raise  # nothing was created: a link of that name (or the container's ifname) was there before
    except BaseException:
        # The pair may exist although the call failed (the create's ACK or the read-back of the new link was
        # lost): no link of this name was there before (the create would have said EEXIST), so it is ours.
        _quietly(lambda: host.delete_link(veth_name))()
        raise
    undo.callback(_quietly(lambda: host.delete_link(veth_name)))
    host.nl.set_link(host_veth.index, alias=tag)
    return bridge, host_veth


def _join(host: HostNet, cmd: CmdArgs, cfg: BridgeConfig, cont: ContainerNet, state_dir: str, ident: Identity,
          ips: list[IPConfig], bridge: LinkInfo | None, host_veth: LinkInfo, tag: str,
          fw_cfg: FirewallConfig | None, undo: ExitStack) -> None:
    """Record the attachment's namespace; install the port's filters (guard, macspoofchk) and the
    attachment's rules, all in one nftables transaction when the firewall's backend is nftables; then
    make it a port of the bridge (routed: of its own): the port is guarded before it joins, so no frame
    of it is ever bridged unguarded. The addresses are known (IPAM ran), the MACs too (``ident``)."""
    from . import firewall_glue as rules

    guard = _guard_attachment(cfg, host_veth.name, ident, ips) if cfg.guard is not None else None
    _record(cmd, cfg, cont, state_dir, guard, undo)
    spoof = ([ident.mac, ident.guest_mac] if cfg.vm.mode == "bridge" else [ident.mac]) if cfg.mac_spoof_check else None
    filters = rules.PortFilters(host_veth.name, guard, guarded=guard is not None, spoof_macs=spoof)
    localnet: tuple[str, ...] = ()
    if fw_cfg is not None:
        localnet = _rules(cmd, fw_cfg, ips, bridge, host_veth, filters, undo)
    elif filters.any():
        undo.callback(_quietly(lambda: filters.remove(None, _quiet_attempt)))  # idempotent: registered first
        filters.apply(None)
    if bridge is not None:
        host.attach_port(host_veth, bridge, cfg, tag=tag)
    else:
        host.own_port(host_veth, tag=tag)
    for iface in localnet:  # 127.0.0.1 host ports need route_localnet on that interface
        host.route_localnet(iface)
    if bridge is not None and fw_cfg is not None and fw_cfg.port_mappings and fw_cfg.snat and not cfg.hairpin_mode:
        host.hairpin_for_mapped_ports(host_veth)  # a port flag: once it is a port


def _quiet_attempt(what: str, fn: Callable[[], object]) -> None:
    del what
    _quietly(fn)()


def _guard_attachment(cfg: BridgeConfig, port: str, ident: Identity, ips: list[IPConfig]) -> GuardAttachment:
    from ..guard import rules as guard_rules

    macs = [ident.mac, ident.guest_mac] if cfg.vm.mode == "bridge" else [ident.mac]
    try:
        return guard_rules.attachment(port, macs, [ip.address.ip for ip in ips], cfg.guard,
                                      trunk=bool(cfg.vlan_trunk), routed=cfg.routed)
    except ValueError as exc:
        raise CniError("cannot guard the attachment", str(exc)) from exc


def _record(cmd: CmdArgs, cfg: BridgeConfig, cont: ContainerNet, state_dir: str, guard: GuardAttachment | None,
            undo: ExitStack) -> None:
    from ..netlink.netns import ns_id
    from . import records

    ns = ns_id(cont.fd)
    rec = records.Record(cid=cmd.container_id, ifname=cmd.ifname, owner=cfg.owner, netns=cmd.netns, dev=ns.dev,
                         ino=ns.ino, guard=records.guard_doc(guard) if guard is not None else None)
    undo.callback(_quietly(lambda: records.remove(state_dir, cmd.conf.name, cmd.container_id, cmd.ifname)))
    records.write(state_dir, cmd.conf.name, rec)


def _rules(cmd: CmdArgs, fw_cfg: FirewallConfig, ips: list[IPConfig], bridge: LinkInfo | None,
           host_veth: LinkInfo, filters: PortFilters, undo: ExitStack) -> tuple[str, ...]:
    """The attachment's rules with the port's filters inside the same transaction when it can be (else
    each on its own); its undo likewise. Returns the interfaces that need route_localnet."""
    from . import firewall_glue as rules

    fw = rules.firewall(fw_cfg)
    att = rules.attachment(cmd, [ip.address for ip in ips], host_veth.name if bridge is None else bridge.name)

    def rollback() -> None:
        joint = filters.remove_joint()
        with suppress(Exception):  # an undo step must not hide the original error
            fw.delete(att.owner, fw_cfg, att.addresses, joint)
        filters.remove(joint, _quiet_attempt)

    undo.callback(rollback)
    joint = filters.add_joint()
    localnet = fw.add(att, fw_cfg, joint)
    filters.apply(joint)
    return localnet


def _vm(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig, veth: LinkInfo, ips: list[IPConfig], tag: str,
        guest_mac: str, undo: ExitStack) -> tuple[Interface, ...]:
    from . import vm

    made: list[int] = []  # the links vm.setup makes, for the undo registered before it starts
    undo.callback(_quietly(lambda: vm.undo(cont, made)))
    return vm.setup(cont, cmd, cfg, veth, ips, guest_mac, tag=tag, made=made)


def _gateways_and_routes(ipam: Result, cfg: BridgeConfig) -> tuple[list[IPConfig], list[Route], list[IPInterface]]:
    """The reference bridge's calcGateways: each address gets a gateway (IPAM's, else network+1) when the
    bridge is the gateway (routed mode: always, held by the host veth); isDefaultGateway adds a default
    route unless IPAM gave one with a gateway."""
    ips: list[IPConfig] = []
    gateways: list[IPInterface] = []
    routes = list(ipam.routes)
    for ip in ipam.ips:
        gw: IPAddress | None = ip.gateway
        if cfg.routed:
            from .routed import gateway_of

            gw = gateway_of(ip)
        elif gw is None and cfg.is_gateway:
            gw = ip.address.network.network_address + 1
        ips.append(ip._replace(gateway=gw))
        if gw is None or not cfg.is_gateway:
            continue
        gw_iface = ipaddress.ip_interface(f"{gw}/{ip.address.network.prefixlen}")
        if gw_iface not in gateways:
            gateways.append(gw_iface)
        default = DEFAULT_V4 if gw.version == 4 else DEFAULT_V6
        if cfg.is_default_gateway and not any(r.dst == default and r.gw is not None for r in routes):
            routes.append(Route(dst=default, gw=gw))
    return ips, routes, gateways


def _result(cmd: CmdArgs, cfg: BridgeConfig, prev: Result | None, ipam: Result, ips: list[IPConfig],
            routes: list[Route], host_links: list[LinkInfo], container: LinkInfo,
            vm_ifaces: tuple[Interface, ...]) -> Result:
    base = list(prev.interfaces) if prev else []
    first = len(base)
    ifaces = [*base,
              *(Interface(name=link.name, mac=link.mac or "") for link in host_links),
              Interface(name=container.name, mac=container.mac or "", sandbox=cmd.netns, mtu=container.mtu),
              *vm_ifaces]
    out_ips = list(prev.ips if prev else ())
    mine = first + len(host_links)  # the container interface; the VM's pseudo interface is 2 further
    if cfg.vm.mode == "bridge":  # the addresses moved off the veth: they belong to the VM interface only
        out_ips += [ip._replace(interface=mine + 2) for ip in ips]
    else:
        out_ips += [ip._replace(interface=mine) for ip in ips]
        if vm_ifaces:  # tc-redirect-tap's shape: the VM's IPv4 address also points at the pseudo interface
            out_ips += [ip._replace(interface=mine + 2) for ip in ips if ip.address.version == 4][:1]
    dns = ipam.dns
    if cfg.dns is not None:
        dns = decode({"dns": cfg.dns}).dns
    elif dns.is_empty() and prev is not None:
        dns = prev.dns
    return Result(interfaces=tuple(ifaces), ips=tuple(out_ips),
                  routes=(*(prev.routes if prev else ()), *routes), dns=dns if isinstance(dns, DNS) else DNS())


# ------------------------------------------------------------------------------------------------ DEL

def delete(cmd: CmdArgs) -> None:
    """Remove what ADD made: VM tap, container interface, host veth, then rules, guard and macspoofchk
    entries (one nftables transaction when the rules' backend is nftables: the port is gone before its
    guard, so it never carries an unguarded frame), and the address last. Every step runs even when
    another fails, except the release of the address: an incomplete DEL keeps the lease, so the address
    is not handed out while rules or links made for it may remain, and the runtime's retry finishes the
    job. Links are deleted only when they are this attachment's (tagged at ADD). A CNI_NETNS that is
    gone or not a namespace leaves the host side."""
    cfg = parse_bridge_config(cmd.conf, cmd.args, cmd.container_id, strict_owner=False)
    from . import kernel, records
    from .firewall_glue import state_dir_of

    failures: list[str] = []
    codes: list[int] = []  # per failure: its CNI code (an OSError: 5)

    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (NotFound, UnknownContainer):
            pass  # already gone: that is what DEL wants
        except (CniError, OSError) as exc:
            failures.append(f"{what}: {exc}")
            codes.append(exc.code if isinstance(exc, CniError) else IOFailure.code)

    def incomplete(msg: str) -> CniError:
        return incomplete_error(msg, "; ".join(failures), codes)

    network = cmd.conf.name
    veth_name = host_veth_name(network, cmd.container_id, cmd.ifname)
    tag = attachment_tag(network, cmd.container_id, cmd.ifname)
    addresses = _prev_addresses(cmd)
    state_dir = state_dir_of(cmd, cfg)
    rec = records.load(state_dir, network, cmd.container_id, cmd.ifname)
    cont = kernel.open_container_for_del(cmd.netns)  # None: no netns, gone, or not a netns
    try:
        _del_links_and_rules(cmd, cfg, cont, rec, veth_name, tag, addresses, attempt)
    finally:
        if cont is not None:
            cont.close()
    if failures:
        raise incomplete("DEL incomplete (the address stays leased until a DEL succeeds)")
    if cfg.ipam_type:
        attempt("IPAM", lambda: ipam_call.run(cmd, cfg.ipam_type, "DEL"))
        step("ipam")
    if failures:
        raise incomplete("DEL incomplete")
    attempt("namespace record", lambda: records.remove(state_dir, network, cmd.container_id, cmd.ifname))
    attempt("record temp files", lambda: records.tidy(state_dir, network))  # of ADDs killed mid-write
    if failures:
        raise incomplete("DEL incomplete")


def _del_links_and_rules(cmd: CmdArgs, cfg: BridgeConfig, cont: ContainerNet | None, rec: BridgeRecord | None,
                         veth_name: str, tag: str, addresses: list[IPInterface],
                         attempt: Callable[[str, Callable[[], object]], None]) -> None:
    """The container side, the host veth, then the rules and the port's filters. The veth delete runs beside
    the rest (``background``): the DEL goes on once the host veth is announced gone, so the kernel's wait
    for the delete's end overlaps the imports, the records and the nft exec. Every delete is over (and its
    failure handed to attempt) when this returns: a failed delete keeps the lease."""
    from ..hostexec import Meanwhile
    from .background import Background

    links = Background(veth_name, attempt)
    try:
        if cont is not None:
            attempt("container addresses", lambda: _add_new(addresses, cont.addresses_of(cmd.ifname)))
            _del_container_side(cont, cmd, cfg, tag, attempt, links)
        step("container side")
        links.wait_gone()  # the container interface's peer is the host veth: gone too (else the delete is over)
        theirs: list[bool] = []  # the host veth name is held by a link that is not this attachment's
        attempt("host veth", lambda: theirs.append(_del_host_veth(veth_name, tag, links)))
        links.wait_gone()  # the port is gone before its guard: it never carries an unguarded frame
        # the port's guard and macspoofchk entries are keyed by name: not when the name is another's link
        step("host veth")
        with Meanwhile(_import_ipam) if cfg.ipam_type in OUR_IPAM else nullcontext():
            _del_rules_and_filters(cmd, cfg, rec, veth_name, addresses, attempt, port_filters=not any(theirs))
        step("rules, guard")
    finally:
        links.finish()


def _import_ipam() -> None:
    """The DEL's next step's modules (the in-process IPAM: ~4 ms), imported while the rules' nft exec waits
    for its RCU grace period (``hostexec.Meanwhile``)."""
    from ..ipam import plugin

    del plugin


_BY_CODE: dict[int, type[CniError]] = {c.code: c for c in CniError.__subclasses__()
                                       if c.__module__ == CniError.__module__}  # errors.py's: one class per code


def incomplete_error(msg: str, details: str, codes: list[int]) -> CniError:
    """The error of a DEL whose steps failed with `codes`: the code they share when they agree (all 11: try
    again later); else an I/O failure (5) when any step met one (it says what went wrong better than 999,
    and the runtime retries a DEL whatever the code); else the first code that is not 11 (a transient
    failure beside a lasting one does not make the DEL transient)."""
    if codes and all(c == codes[0] for c in codes):
        code = codes[0]
    elif IOFailure.code in codes:
        code = IOFailure.code
    else:
        code = next((c for c in codes if c != TryAgainLater.code), CniError.code)
    return _BY_CODE.get(code, CniError)(msg, details)


def _del_rules_and_filters(cmd: CmdArgs, cfg: BridgeConfig, rec: BridgeRecord | None, port: str,
                           addresses: list[IPInterface], attempt: Callable[[str, Callable[[], object]], None], *,
                           port_filters: bool) -> None:
    """The attachment's rules, and (port_filters) its port's guard and macspoofchk entries: inside the
    rules' nftables transaction when they can be, else each on its own."""
    from .firewall_glue import PortFilters, delete_rules

    guarded, guard = _guard_for_del(cmd, cfg, rec, port) if port_filters else (False, None)
    spoof: list[str] | None = [] if port_filters and cfg.mac_spoof_check else None
    filters = PortFilters(port, guard, guarded=guarded, spoof_macs=spoof, routed=cfg.routed)
    joint = filters.remove_joint()
    attempt("firewall rules", lambda: delete_rules(cmd, cfg, addresses, joint))
    filters.remove(joint, attempt)


def _guard_for_del(cmd: CmdArgs, cfg: BridgeConfig, rec: BridgeRecord | None,
                   port: str) -> tuple[bool, GuardAttachment | None]:
    """(whether to remove a guard, its exact elements when known): the record's (what ADD applied, whatever
    the config says now), else with the guard on the prevResult's, else found by the port name."""
    if rec is not None and rec.guard is not None:
        from .records import guard_att

        att = guard_att(rec.guard)  # the record keeps no layout: the network's mode (it cannot change)
        return True, att._replace(routed=cfg.routed) if att is not None else None
    if cfg.guard is None:
        return False, None
    if not cmd.conf.prev_result:
        return True, None
    try:
        return True, _guard_from_result(cmd, cfg, decode(cmd.conf.prev_result), port)
    except CniError:
        return True, None


def _guard_from_result(cmd: CmdArgs, cfg: BridgeConfig, prev: Result, port: str) -> GuardAttachment | None:
    """The guard attachment ADD applied, rebuilt from its result: the container interface's MAC (and the
    VM's in VM bridge mode) and the attachment's addresses."""
    from ..guard import rules as guard_rules

    def container_side(i: Interface) -> bool:  # on DEL, CNI_NETNS may be empty: any sandbox but the VM's
        return i.name == cmd.ifname and bool(i.sandbox) and i.sandbox != cmd.container_id

    macs = [i.mac for i in prev.interfaces
            if container_side(i) or (cfg.vm.mode == "bridge" and i.sandbox == cmd.container_id)]
    mine = {n for n, i in enumerate(prev.interfaces) if container_side(i) or i.sandbox == cmd.container_id}
    addrs = list(dict.fromkeys(ip.address.ip for ip in prev.ips if ip.interface in mine or ip.interface is None))
    try:
        return guard_rules.attachment(port, macs, addrs, cfg.guard, trunk=bool(cfg.vlan_trunk), routed=cfg.routed)
    except ValueError:
        return None


def _add_new(to: list[IPInterface], found: list[IPInterface]) -> None:
    to.extend(a for a in found if a not in to)


def _del_container_side(cont: ContainerNet, cmd: CmdArgs, cfg: BridgeConfig, tag: str,
                        attempt: Callable[[str, Callable[[], object]], None], links: Background) -> None:
    if cfg.vm.mode != "none":
        from . import vm

        attempt("VM tap", lambda: vm.teardown(cont, cmd, cfg, tag))
    link = cont.link(cmd.ifname)
    peer = link.peer_index if link is not None else None  # the host veth's index, when it is its peer
    links.start("container interface", lambda: cont.delete_link(cmd.ifname), index=peer)  # cont closed after finish


def _del_host_veth(name: str, tag: str, links: Background) -> bool:
    """Delete the host veth (in the background: ``links``) when it is this attachment's; True when the name
    is another link's."""
    from .kernel import HostNet

    host = HostNet()
    handed = False  # to the delete, which closes it once it is over
    try:
        link = host.nl.link(name)
        if link is not None and link.alias == tag:
            links.start("host veth", lambda: host.delete_own_link(name, tag), on_end=host.close, index=link.index)
            handed = True
        return link is not None and link.alias != tag
    finally:
        if not handed:
            host.close()


def _prev_addresses(cmd: CmdArgs) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    if not cmd.conf.prev_result:
        return []
    try:
        return [ip.address for ip in decode(cmd.conf.prev_result).ips]
    except CniError:
        return []


# ---------------------------------------------------------------------------------------------- CHECK

def check(cmd: CmdArgs) -> None:
    cfg = parse_bridge_config(cmd.conf, cmd.args, cmd.container_id)
    if not cmd.conf.prev_result:
        raise CniError("Required prevResult missing")
    prev = decode(cmd.conf.prev_result)
    from . import kernel
    from .check import problems

    if cfg.ipam_type:
        ipam_call.run(cmd, cfg.ipam_type, "CHECK")
    try:
        found = problems(cmd, cfg, prev, kernel)
    except NotFound as exc:
        raise UnknownContainer(f"container namespace {cmd.netns} does not exist", str(exc)) from exc
    if cfg.guard is not None:
        found += _guard_problems(cmd, cfg, prev)
    if found:
        raise CniError(f"CHECK failed: {found[0]}", "; ".join(found))


def _guard_problems(cmd: CmdArgs, cfg: BridgeConfig, prev: Result) -> list[str]:
    from ..guard import nft as guard_nft

    port = host_veth_name(cmd.conf.name, cmd.container_id, cmd.ifname)
    att = _guard_from_result(cmd, cfg, prev, port)
    if att is None:
        return [f"guard: the prevResult gives no MAC for {cmd.ifname}"]
    return guard_nft.check(att)


# ------------------------------------------------------------------------------------------ GC, STATUS

def gc(cmd: CmdArgs) -> None:
    cfg = parse_bridge_config(cmd.conf, cmd.args, strict_owner=False)
    from .firewall_glue import gc_rules

    failures: list[str] = []
    if cfg.ipam_type:
        try:
            ipam_call.run(cmd, cfg.ipam_type, "GC")
        except CniError as exc:
            failures.append(f"IPAM: {exc}")
    try:
        gc_rules(cmd, cfg)
    except CniError as exc:
        failures.append(f"firewall rules: {exc}")
    try:
        _gc_guard(cmd, cfg)
    except CniError as exc:
        failures.append(f"guard: {exc}")
    if failures:
        raise CniError("GC incomplete", "; ".join(failures))


def _gc_guard(cmd: CmdArgs, cfg: BridgeConfig) -> None:
    """The guard of every recorded attachment that GC releases (not in cni.dev/valid-attachments) is emptied:
    its port stays guarded with nothing allowed, as its rules and lease go (GC does not delete links: a
    port still there must not keep, or regain unguarded, the addresses GC hands back). O(records)."""
    from ..guard import nft as guard_nft
    from ..ipam.plugin import valid_attachments
    from . import records
    from .firewall_glue import state_dir_of

    valid = valid_attachments(cmd.conf.raw)
    for rec in records.all_records(state_dir_of(cmd, cfg), cmd.conf.name):
        if rec.guard is None or (rec.cid, rec.ifname) in valid or (rec.cid, "") in valid:
            continue
        att = records.guard_att(rec.guard)
        if att is not None:
            guard_nft.quarantine(att._replace(routed=cfg.routed))


def status(cmd: CmdArgs) -> None:
    cfg = parse_bridge_config(cmd.conf, cmd.args, strict_owner=False)
    from .kernel import bridge_usable

    if not cfg.routed:
        bridge_usable(cfg.bridge)
    if cfg.ipam_type:
        ipam_call.run(cmd, cfg.ipam_type, "STATUS")


HANDLERS = Handlers(add=add, delete=delete, check=check, gc=gc, status=status)
