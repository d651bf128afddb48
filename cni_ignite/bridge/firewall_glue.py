"""Connects the bridge plugin to ``cni_ignite.firewall``: which rules an attachment needs, built from
the bridge config (ipMasq, port mappings, forward rules) and the attachment's addresses.

The firewall modules are imported only when rules are involved, so a bridge without them pays nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..firewall.base import Attachment, Firewall, FirewallConfig
    from ..result import IPInterface
    from ..skel import CmdArgs
    from .config import BridgeConfig


def wanted(cmd: CmdArgs, cfg: BridgeConfig) -> bool:
    """Does ADD install rules? ipMasq, port mappings or forward rules (on unless ``"forward": false``)."""
    return cfg.ip_masq or bool(cmd.conf.runtime_config.get("portMappings")) or cmd.conf.raw.get("forward") is not False


def config(cmd: CmdArgs, cfg: BridgeConfig, *, port_mappings: bool = True) -> FirewallConfig:
    """Parsed and validated (code 7 on bad values) before ADD touches anything. Port mappings come from
    the canonical runtime config (capability keys found as Go finds them); without ``port_mappings`` they
    are not read at all (DEL and GC need none, and must not fail on ones they cannot parse)."""
    from ..firewall.base import parse_firewall_config

    runtime = cmd.conf.runtime_config if port_mappings else None
    return parse_firewall_config(cmd.conf.raw, runtime)._replace(ip_masq=cfg.ip_masq)


def state_dir_of(cmd: CmdArgs, cfg: BridgeConfig) -> str:
    """The firewall's stateDir (the bridge keeps its namespace records there too, see ``records``)."""
    return config(cmd, cfg, port_mappings=False).state_dir


def attachment(cmd: CmdArgs, addresses: list[IPInterface], bridge: str) -> Attachment:
    from ..firewall.base import Attachment, Owner

    owner = Owner(network=cmd.conf.name, container_id=cmd.container_id, ifname=cmd.ifname)
    return Attachment(owner=owner, addresses=tuple(addresses), host_iface=bridge)


def firewall(fw_cfg: FirewallConfig) -> Firewall:
    from ..firewall.core import RuleFirewall  # only here: a bridge without rules never loads the layer

    return RuleFirewall(state_dir=fw_cfg.state_dir)


def delete_rules(cmd: CmdArgs, cfg: BridgeConfig, addresses: list[IPInterface]) -> None:
    """DEL always looks in both backends: a rule may outlive the config that made it. It reads no port
    mappings: the attachment's state record holds the exact rules, and without one every rule the
    attachment's key names is removed, so a DEL never fails on portMappings it cannot parse."""
    fw_cfg = config(cmd, cfg, port_mappings=False)
    att = attachment(cmd, addresses, cfg.bridge)
    firewall(fw_cfg).delete(att.owner, fw_cfg, att.addresses)


def check_rules(cmd: CmdArgs, cfg: BridgeConfig, addresses: list[IPInterface]) -> list[str]:
    if not wanted(cmd, cfg):
        return []
    fw_cfg = config(cmd, cfg)
    return firewall(fw_cfg).check(attachment(cmd, addresses, cfg.bridge), fw_cfg)


def gc_rules(cmd: CmdArgs, cfg: BridgeConfig) -> None:
    from ..ipam.plugin import valid_attachments

    fw_cfg = config(cmd, cfg, port_mappings=False)  # GC removes by state record; no mappings needed
    firewall(fw_cfg).gc(cmd.conf.name, valid_attachments(cmd.conf.raw), fw_cfg)
