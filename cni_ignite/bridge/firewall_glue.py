"""Connects the bridge plugin to ``cni_ignite.firewall``: which rules an attachment needs, built from
the bridge config (ipMasq, port mappings, forward rules) and the attachment's addresses."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..firewall.base import Attachment, Firewall, FirewallConfig
    from ..result import IPInterface
    from ..skel import CmdArgs
    from .config import BridgeConfig


def _config(cmd: CmdArgs) -> FirewallConfig:
    from ..firewall.base import parse_firewall_config

    return parse_firewall_config(cmd.conf.raw)


def firewall_needed(cmd: CmdArgs, cfg: BridgeConfig, *, deleting: bool = False) -> bool:
    """ADD installs rules only when something asks for them; DEL always looks (a rule may outlive its config)."""
    if deleting:
        return True
    raw = cmd.conf.raw
    return cfg.ip_masq or bool(cmd.conf.runtime_config.get("portMappings")) or raw.get("forward", True) is not False


def firewall_for(cmd: CmdArgs, cfg: BridgeConfig, addresses: list[IPInterface],
                 bridge: str) -> tuple[Firewall, FirewallConfig, Attachment]:
    from ..firewall.base import Attachment, Owner, open_firewall

    fw_cfg = _config(cmd)._replace(ip_masq=cfg.ip_masq)
    owner = Owner(network=cmd.conf.name, container_id=cmd.container_id, ifname=cmd.ifname)
    att = Attachment(owner=owner, addresses=tuple(addresses), host_iface=bridge)
    return open_firewall(fw_cfg), fw_cfg, att


def check_rules(cmd: CmdArgs, cfg: BridgeConfig, addresses: list[IPInterface]) -> list[str]:
    if not firewall_needed(cmd, cfg):
        return []
    fw, fw_cfg, att = firewall_for(cmd, cfg, addresses, cfg.bridge)
    return fw.check(att, fw_cfg)


def gc_rules(cmd: CmdArgs, cfg: BridgeConfig) -> None:
    from ..ipam.plugin import valid_attachments

    fw, fw_cfg, _ = firewall_for(cmd, cfg, [], cfg.bridge)
    fw.gc(cmd.conf.name, valid_attachments(cmd.conf.raw), fw_cfg)
