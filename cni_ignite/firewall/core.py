"""``RuleFirewall``: the verbs over the two backends, the state records and the port registry."""

from __future__ import annotations

import contextlib

from .. import _json as json
from ..errors import CniError, IOFailure, TryAgainLater
from . import state
from ._exec import ToolMissing, program, run
from .base import Attachment, conditions_syntax
from .naming import network_dir
from .rules import needs_localnet

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Protocol

    from .base import Address, AttachmentInfo, FirewallConfig, Joint, Owner
else:
    Protocol = object

XTABLES_NFT = ("table ip nat", "table ip filter", "table ip6 nat", "table ip6 filter")


class Backend(Protocol):
    name: str
    layout: int  # the rule layout this code writes (recorded; DEL removes each layout's own way)

    def apply(self, att: Attachment, cfg: FirewallConfig, *, fresh: bool = False,
              joint: Joint | None = None) -> None: ...
    def remove_exact(self, att: Attachment, cfg: FirewallConfig, layout: int = ...,
                     joint: Joint | None = None) -> None: ...
    def remove_by_key(self, key: str) -> None: ...
    def problems(self, att: Attachment, cfg: FirewallConfig, layout: int = ...) -> list[str]: ...
    def prune(self) -> None: ...


def _legacy_tables() -> bool:
    for name in ("/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"):
        with contextlib.suppress(OSError), open(name, encoding="ascii") as fh:
            if fh.read().strip():
                return True
    return False


def choose_backend(cfg: FirewallConfig, network: str | None = None) -> str:
    """The backend an ADD uses; ``auto`` is described in base's docstring. While a network has attachments
    with rules, its next ones use the same backend (read from a state record: no `nft list tables` exec)."""
    if cfg.backend != "auto":
        return cfg.backend
    if cfg.external_set_mark_chain:
        return "iptables"
    syntax = conditions_syntax(cfg.conditions_v4) or conditions_syntax(cfg.conditions_v6)
    if syntax:  # before the x_tables probe: conditions in one syntax only work in that backend
        return syntax
    if _legacy_tables():
        return "iptables"
    in_use = backend_in_use(cfg.state_dir, network) if network else None
    return in_use or _probe_nft_tables()


def backend_in_use(state_dir: str, network: str) -> str | None:
    """The backend named by the first readable record of the network that the directory yields: ``scandir``
    reads one batch of entries (~0.2 ms), where listing them all cost 1.2 ms at 4,000 attachments on every
    ADD (measured), and only the record's ``backend`` is read (not its config, parsed again)."""
    import os

    try:
        entries = os.scandir(os.path.join(state_dir, network_dir(network)))
    except OSError:
        return None
    with entries:
        for entry in entries:
            if ".tmp" in entry.name:
                continue
            try:
                with open(entry.path, encoding="utf-8") as fh:
                    backend = json.load(fh).get("backend")
            except (OSError, ValueError, AttributeError):
                continue  # unreadable, or not a record (as state.records skips it)
            if backend in ("iptables", "nftables"):
                return str(backend)
    return None


def _probe_nft_tables() -> str:
    """Our table exists: nftables; else iptables-nft's tables: iptables; else nftables (no nft: iptables).
    The tables are listed over netlink in-process (firewall.nfnl), ``nft list tables`` only when that fails."""
    try:
        program("nft", "nftables")
    except ToolMissing:
        return "iptables"
    from .nfnl import list_tables

    try:
        tables = set(list_tables())
    except (OSError, CniError):
        try:
            res = run("nftables", ["nft", "list", "tables"])
        except ToolMissing:
            return "iptables"
        tables = {line.strip() for line in res.stdout.decode(errors="replace").splitlines()}
    if "table inet cni_ignite" in tables:
        return "nftables"
    return "iptables" if tables.intersection(XTABLES_NFT) else "nftables"


def _forget_udp_flows(att: Attachment, cfg: FirewallConfig) -> None:
    """Delete conntrack entries of newly mapped UDP host ports (as the reference portmap): a client that
    was sending before the mapping existed has an entry without DNAT and would keep missing the container.
    Only ADDs with UDP mappings pay for it; a failure is not the ADD's (the reference only logs it)."""
    ports = {m.host_port for m in cfg.port_mappings if m.protocol == "udp"}
    if not ports:
        return
    from ..netlink.conntrack import delete_by_dst_port

    families = tuple(f for f in (4, 6) if att.of_family(f))
    with contextlib.suppress(CniError, OSError):
        delete_by_dst_port("udp", ports, families)


class RuleFirewall:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self._backends: dict[str, Backend] = {}

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            # Imported on first use: an ADD loads only the backend it chose (the other costs ~7 ms).
            if name == "iptables":
                from .iptables import IptablesBackend

                self._backends[name] = IptablesBackend(self.state_dir)
            else:
                from .nftables import NftablesBackend

                self._backends[name] = NftablesBackend(self.state_dir)
        return self._backends[name]

    # -------------------------------------------------------------------------------------------- ADD
    def add(self, att: Attachment, cfg: FirewallConfig, joint: Joint | None = None) -> tuple[str, ...]:
        """Install the rules of att; `joint` (the guard's elements) goes in the same nftables transaction
        when the backend is nftables and its first transaction succeeds (``joint.sent``)."""
        name = choose_backend(cfg, att.owner.network)
        old = state.load(cfg.state_dir, att.owner)
        if old is not None:  # a repeated or half-failed ADD: remove the earlier rules exactly first
            self._remove(old)
        lock = state.ports_lock(cfg.state_dir) if cfg.port_mappings else contextlib.nullcontext()
        entries = state.port_entries(cfg.port_mappings)
        with lock:
            # The record first, naming the entries about to be claimed: a DEL after an ADD that dies from
            # here on finds what it may hold (DEL reads no port mappings). A failed claim leaves none.
            state.write(state.Record(owner=att.owner, backend=name, addresses=att.addresses, config=cfg,
                                     ports=entries, host_iface=att.host_iface, layout=self.backend(name).layout))
            try:
                state.claim_ports(cfg.state_dir, att.owner, cfg.port_mappings)
            except BaseException:
                with contextlib.suppress(CniError):  # kept on failure: the DEL removes it
                    state.remove(cfg.state_dir, att.owner)
                raise
        try:
            self.backend(name).apply(att, cfg, fresh=old is None, joint=joint)
        except BaseException:
            with contextlib.suppress(Exception):
                self.backend(name).remove_exact(att, cfg)
            with contextlib.suppress(CniError):  # the record goes only once its ports are released
                state.release_ports(cfg.state_dir, att.owner, entries)
                state.remove(cfg.state_dir, att.owner)
            raise
        _forget_udp_flows(att, cfg)
        return self.needs_route_localnet(att, cfg)

    def needs_route_localnet(self, att: Attachment, cfg: FirewallConfig) -> tuple[str, ...]:
        """127.0.0.1:hostPort reaches the container only with route_localnet=1 on the bridge (IPv4)."""
        return (att.host_iface,) if needs_localnet(att, cfg) else ()

    # -------------------------------------------------------------------------------------------- DEL
    def _remove(self, rec: state.Record, joint: Joint | None = None) -> None:
        att = Attachment(owner=rec.owner, addresses=rec.addresses, host_iface=rec.host_iface)
        self.backend(rec.backend).remove_exact(att, rec.config, rec.layout, joint=joint)
        state.release_ports(rec.config.state_dir, rec.owner, rec.ports)  # first: the record names them
        state.remove(rec.config.state_dir, rec.owner)

    def delete(self, owner: Owner, cfg: FirewallConfig, addresses: tuple[Address, ...] = (),
               joint: Joint | None = None) -> None:
        """Remove every rule of owner: exactly from its state record, else by listing our own chains and
        table in both backends. Idempotent; addresses are not needed (a record or the key suffices).
        `joint` (the guard's element removal) rides in the first nftables transaction of the exact path
        (``joint.sent``); the caller removes it on its own otherwise."""
        del addresses  # kept for the interface: rules are found by key, not by address
        notes: list[str] = []
        rec: state.Record | None = None
        unreadable = False  # the record is there but could not be read: it is kept, the DEL must fail
        try:
            rec = state.load(cfg.state_dir, owner)
        except state.RecordUnreadable as exc:
            notes.append(str(exc))
            unreadable = True
        except CniError as exc:  # its content is no valid record: the rules go by key, the record stays
            notes.append(str(exc))
        if rec is not None:
            try:
                self._remove(rec, joint)
                return
            except CniError as exc:
                notes.append(f"{rec.backend}: {exc}")
        failures = []
        io_failed = False
        for name in ("iptables", "nftables"):
            try:
                self.backend(name).remove_by_key(owner.key)
            except ToolMissing:
                continue  # without the tool there are no rules of that backend to remove
            except CniError as exc:
                failures.append(f"{name}: {exc}")
                io_failed = io_failed or isinstance(exc, IOFailure)
        if failures:
            # the record (if any) is kept, so a retried DEL finishes the job: 5 when the state dir failed
            # (a shared chain registration that cannot be removed), else 11 (a rule tool failed)
            raise (IOFailure if io_failed else TryAgainLater)("firewall DEL incomplete", "; ".join(notes + failures))
        if unreadable:
            # the rules are gone, but only the record names the host ports it holds: a repeated DEL that
            # reads it releases them and removes it (answering ok would leave both until a GC)
            raise IOFailure("firewall DEL incomplete: the state record could not be read (kept for a repeated "
                            "DEL)", "; ".join(notes))
        if rec is not None:
            state.release_ports(cfg.state_dir, owner, rec.ports)
        if rec is not None or not notes:  # no record: a killed writer's temp file may be left
            state.remove(cfg.state_dir, owner)

    # ------------------------------------------------------------------------------------ CHECK, GC
    def check(self, att: Attachment, cfg: FirewallConfig) -> list[str]:
        rec = state.load(cfg.state_dir, att.owner)
        name = rec.backend if rec is not None else choose_backend(cfg)
        backend = self.backend(name)
        try:
            return backend.problems(att, cfg, rec.layout if rec is not None else backend.layout)
        except CniError as exc:
            return [str(exc)]

    def gc(self, network: str, valid: set[tuple[str, str]], cfg: FirewallConfig) -> None:
        failures: list[str] = []
        for rec in list(state.records(cfg.state_dir, network)):
            o = rec.owner
            if o.network != network or (o.container_id, o.ifname) in valid or (o.container_id, "") in valid:
                continue
            try:
                self.delete(o, rec.config)
            except CniError as exc:
                failures.append(f"{o.container_id}/{o.ifname}: {exc}")
        if failures:
            raise TryAgainLater("firewall GC incomplete", "; ".join(failures))
        # Shared chains nobody jumps to any more (a lost race, a killed DEL): GC is not on the ADD/DEL path, so
        # it may list our chains; the kernel refuses to delete one an element still jumps to.
        with contextlib.suppress(CniError):  # ToolMissing included: no nft, nothing of ours to prune
            self.backend("nftables").prune()

    def attachments(self, network: str | None = None) -> list[AttachmentInfo]:
        return state.list_attachments(self.state_dir, network)
