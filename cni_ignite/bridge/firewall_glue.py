"""Connects the bridge plugin to ``cni_ignite.firewall``: which rules an attachment needs, built from
the bridge config (ipMasq, port mappings, forward rules) and the attachment's addresses.

The firewall modules are imported only when rules are involved, so a bridge without them pays nothing.

``PortFilters`` is the rest of a port's nftables work (the isolation guard's elements, the macspoofchk
entry): on ADD and DEL it rides inside the firewall's first nftables transaction (``firewall.base.Joint``),
so the attachment's whole nft side is one ``nft`` exec, and a DEL pays the RCU grace period of a netlink
socket that deleted elements once instead of per part. With the iptables backend, without rules, or
when that transaction fails, each part is applied on its own with its own fall-backs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..firewall.base import Attachment, Firewall, FirewallConfig, Joint
    from ..guard.rules import Attachment as GuardAttachment
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


def delete_rules(cmd: CmdArgs, cfg: BridgeConfig, addresses: list[IPInterface], joint: Joint | None = None) -> None:
    """DEL always looks in both backends: a rule may outlive the config that made it. It reads no port
    mappings: the attachment's state record holds the exact rules, and without one every rule the
    attachment's key names is removed, so a DEL never fails on portMappings it cannot parse. `joint`:
    the port filters' removal, sent in the same nftables transaction when it can be."""
    fw_cfg = config(cmd, cfg, port_mappings=False)
    att = attachment(cmd, addresses, cfg.bridge)
    firewall(fw_cfg).delete(att.owner, fw_cfg, att.addresses, joint)


class PortFilters:
    """The nftables filters of one bridge port besides the firewall's rules: the guard (`guarded`; `guard`
    its exact elements, None when unknown on a DEL without record or prevResult; `routed`: the port is a
    routed veth, whose guard lives in the routed tables) and macspoofchk (`spoof_macs`: the allowed MACs on
    ADD, any list on DEL; None when off)."""

    __slots__ = ("guard", "guarded", "port", "routed", "spoof_macs")

    def __init__(self, port: str, guard: GuardAttachment | None, *, guarded: bool,
                 spoof_macs: list[str] | None, routed: bool = False) -> None:
        self.port, self.guard, self.guarded, self.spoof_macs = port, guard, guarded, spoof_macs
        self.routed = guard.routed if guard is not None else routed

    def any(self) -> bool:
        return self.guarded or self.spoof_macs is not None

    def _joint(self, guard_text: Callable[[GuardAttachment], str], spoof_text: Callable[[], str]) -> Joint | None:
        from ..firewall.base import Joint

        text = guard_text(self.guard) if self.guard is not None else ""
        text += spoof_text() if self.spoof_macs is not None else ""
        return Joint(text) if text else None

    def add_joint(self) -> Joint | None:
        """ADD's texts for the firewall's transaction: the guard's elements (the lean script: it fails,
        and so does the joint transaction, when the guard's table is not in place or the port is guarded
        already; then ``apply`` takes the guard's own slow path) and the macspoofchk entry."""
        from ..guard.rules import lean_apply_script

        def spoof() -> str:
            from .spoofcheck import setup_text

            return setup_text(self.port, sorted(set(self.spoof_macs or ())))

        return self._joint(lean_apply_script, spoof)

    def apply(self, joint: Joint | None) -> None:
        """ADD: what did not go inside the firewall's transaction, each part on its own."""
        if joint is not None and joint.sent:
            return
        if self.guard is not None:
            from ..guard import nft as guard_nft

            guard_nft.apply(self.guard)
        if self.spoof_macs is not None:
            from . import spoofcheck

            spoofcheck.setup(self.port, sorted(set(self.spoof_macs)))

    def remove_joint(self) -> Joint | None:
        """DEL's texts for the firewall's transaction: add-then-delete of the guard's elements (no error
        when absent; fails when the guard's sets are missing) and the macspoofchk teardown."""
        from ..guard.rules import lean_remove_script

        def spoof() -> str:
            from .spoofcheck import teardown_text

            return teardown_text(self.port)

        return self._joint(lean_remove_script, spoof)

    def remove(self, joint: Joint | None, attempt: Callable[[str, Callable[[], object]], None]) -> None:
        """DEL (and an ADD's rollback): what did not go inside the firewall's transaction, each part on its
        own (the guard without known elements: found by the port's name)."""
        sent = joint is not None and joint.sent
        if self.guarded and not (sent and self.guard is not None):
            from ..guard import nft as guard_nft

            attempt("guard", lambda: guard_nft.remove(self.port, self.guard, routed=self.routed))
        if self.spoof_macs is not None and not sent:
            from . import spoofcheck

            attempt("macspoofchk", lambda: spoofcheck.teardown(self.port))


def check_rules(cmd: CmdArgs, cfg: BridgeConfig, addresses: list[IPInterface]) -> list[str]:
    if not wanted(cmd, cfg):
        return []
    fw_cfg = config(cmd, cfg)
    return firewall(fw_cfg).check(attachment(cmd, addresses, cfg.bridge), fw_cfg)


def gc_rules(cmd: CmdArgs, cfg: BridgeConfig) -> None:
    from ..ipam.plugin import valid_attachments

    fw_cfg = config(cmd, cfg, port_mappings=False)  # GC removes by state record; no mappings needed
    firewall(fw_cfg).gc(cmd.conf.name, valid_attachments(cmd.conf.raw), fw_cfg)
