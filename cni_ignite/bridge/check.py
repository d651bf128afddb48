"""CHECK for ignite-bridge: compare the attachment's kernel state with the prevResult and the config,
and list every difference (an empty list means the attachment is intact)."""

from __future__ import annotations

import ipaddress

from .config import attachment_tag, host_veth_name

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from types import ModuleType

    from ..result import IPConfig, Result
    from ..skel import CmdArgs
    from .config import BridgeConfig
    from .kernel import ContainerNet, HostNet

DEFAULTS = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def problems(cmd: CmdArgs, cfg: BridgeConfig, prev: Result, kernel: ModuleType) -> list[str]:
    found: list[str] = []
    mine = [i for i, iface in enumerate(prev.interfaces) if iface.name == cmd.ifname and iface.sandbox == cmd.netns]
    if not mine:
        found.append(f"prevResult lists no interface {cmd.ifname} in sandbox {cmd.netns}")
    host = kernel.HostNet()
    try:
        found += _host_side(cmd, cfg, prev, host)
    finally:
        host.close()
    cont = kernel.open_container(cmd.netns)
    try:
        found += _container_side(cmd, cfg, prev, cont, mine[0] if mine else None)
        if cfg.vm.mode != "none":
            from .vm import problems as vm_problems

            found += vm_problems(cont, cmd, cfg)
    finally:
        cont.close()
    from .firewall_glue import check_rules

    if cfg.routed:  # the firewall's host interface is the host veth (route_localnet), not a bridge
        cfg = cfg._replace(bridge=host_veth_name(cmd.conf.name, cmd.container_id, cmd.ifname))
    found += check_rules(cmd, cfg, [ip.address for ip in prev.ips])
    return found


def _host_side(cmd: CmdArgs, cfg: BridgeConfig, prev: Result, host: HostNet) -> list[str]:
    found: list[str] = []
    nl = host.nl
    if cfg.routed:
        return _routed_host_side(cmd, cfg, prev, host)
    bridge = nl.link(cfg.bridge)
    if bridge is None or bridge.kind != "bridge":
        return [f"bridge {cfg.bridge} is missing" if bridge is None else f"{cfg.bridge} is not a bridge"]
    listed = next((i for i in prev.interfaces if i.name == cfg.bridge and not i.sandbox), None)
    if listed is not None and listed.mac and bridge.mac != listed.mac:
        found.append(f"bridge {cfg.bridge} MAC {bridge.mac} differs from the result's {listed.mac}")
    if cfg.promisc_mode and not bridge.promisc:
        found.append(f"bridge {cfg.bridge} is not in promiscuous mode")
    veth_name = host_veth_name(cmd.conf.name, cmd.container_id, cmd.ifname)
    found += _host_veth(cmd, cfg, host, veth_name, bridge.index)
    if cfg.mac_spoof_check:
        from .spoofcheck import present

        if not present(veth_name):
            found.append(f"macspoofchk rules for {veth_name} are missing")
    if cfg.is_gateway:
        have = {a.address for a in nl.addrs(bridge.index)}
        for ip in prev.ips:
            if ip.gateway is None:
                continue
            gw = ipaddress.ip_interface(f"{ip.gateway}/{ip.address.network.prefixlen}")
            if gw not in have:
                found.append(f"gateway address {gw} is missing on {cfg.bridge}")
    return found


def _routed_host_side(cmd: CmdArgs, cfg: BridgeConfig, prev: Result, host: HostNet) -> list[str]:
    from .routed import host_problems

    veth_name = host_veth_name(cmd.conf.name, cmd.container_id, cmd.ifname)
    veth = host.nl.link(veth_name)
    if veth is None:
        return [f"host veth {veth_name} is missing"]
    if veth.alias and veth.alias != attachment_tag(cmd.conf.name, cmd.container_id, cmd.ifname):
        return [f"host veth {veth_name} belongs to another attachment ({veth.alias})"]
    return host_problems(host, veth, _own_ips(cmd, prev))


def _own_ips(cmd: CmdArgs, prev: Result) -> list[IPConfig]:
    """The prevResult's addresses of this attachment (its container interface's, or its VM's)."""
    mine = {i for i, iface in enumerate(prev.interfaces)
            if (iface.name == cmd.ifname and iface.sandbox == cmd.netns) or iface.sandbox == cmd.container_id}
    return list({ip.address: ip for ip in prev.ips if ip.interface in mine}.values())


def _host_veth(cmd: CmdArgs, cfg: BridgeConfig, host: HostNet, veth_name: str, bridge_index: int) -> list[str]:
    veth = host.nl.link(veth_name)
    if veth is None:
        return [f"host veth {veth_name} is missing"]
    if veth.alias and veth.alias != attachment_tag(cmd.conf.name, cmd.container_id, cmd.ifname):
        return [f"host veth {veth_name} belongs to another attachment ({veth.alias})"]
    if veth.master != bridge_index:
        return [f"host veth {veth_name} is not attached to {cfg.bridge}"]
    if cfg.hairpin_mode and veth.port is not None and not veth.port.hairpin:
        return [f"hairpin mode is off on {veth_name}"]
    return []


def _container_side(cmd: CmdArgs, cfg: BridgeConfig, prev: Result, cont: ContainerNet, index: int | None) -> list[str]:
    nl = cont.nl
    link = nl.link(cmd.ifname)
    if link is None:
        return [f"interface {cmd.ifname} is missing in {cmd.netns}"]
    found: list[str] = []
    if link.kind != "veth":
        found.append(f"{cmd.ifname} is a {link.kind}, not a veth")
    listed = prev.interfaces[index] if index is not None else None
    if listed is not None and listed.mac and link.mac != listed.mac:
        found.append(f"{cmd.ifname} MAC {link.mac} differs from the result's {listed.mac}")
    if cfg.vm.mode == "bridge":
        return found  # the addresses belong to the guest, not to the veth
    have = {a.address for a in nl.addrs(link.index)}
    for ip in prev.ips:
        if ip.interface == index and ip.address not in have:
            found.append(f"address {ip.address} is missing on {cmd.ifname}")
    if cfg.routed:
        from .routed import container_problems

        found += container_problems(cont, cmd.ifname, link.index, _own_ips(cmd, prev))
    routes = [r for fam in (2, 10) for r in nl.routes(fam)]
    for want in prev.routes:
        if want.dst in DEFAULTS:
            ok = any(r.dst == want.dst and (want.gw is None or r.gw == want.gw) for r in routes)
        else:
            ok = any(r.dst == want.dst for r in routes)
        if not ok:
            found.append(f"route to {want.dst}{f' via {want.gw}' if want.gw else ''} is missing in {cmd.netns}")
    return found
