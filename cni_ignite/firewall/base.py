"""The firewall layer's types, its config parsing (pure) and backend selection.

One ``Firewall`` does, in one plugin process, what the reference bridge's ipMasq, the ``portmap`` plugin
and the ``firewall`` plugin do: masquerade, host port DNAT (with hairpin and 127.0.0.1 access) and
FORWARD accept rules. Two backends: ``iptables`` (one ``iptables-restore --noflush`` per table and
family per verb) and ``nftables`` (one ``nft -f -`` transaction per verb in ``table inet cni_ignite``).

``backend: auto`` (see ``core.choose_backend``): iptables-only options (``externalSetMarkChain``,
iptables-syntax conditions) pick iptables and nft-syntax conditions pick nftables; otherwise iptables
when legacy x_tables are loaded in the namespace (``/proc/net/ip{,6}_tables_names`` non-empty), else
nftables when our own ``inet cni_ignite`` table exists, else iptables when iptables-nft tables
(``ip|ip6 nat|filter``) exist (an nft accept cannot override their FORWARD drop), else nftables.
While a network has attachments with rules, a new one uses the backend recorded for them (one backend per
network, and no ``nft list tables`` exec on every ADD).
"""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv6Interface

from ..errors import InvalidConfig
from ..ipparse import ip_address
from ..netconf import go_view
from .naming import owner_key

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Protocol
    from typing import NamedTuple as Record
else:
    Protocol = object
    from .. import Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

BACKENDS = ("auto", "iptables", "nftables")
PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_STATE_DIR = "/run/cni/ignite"  # same lifetime as the kernel rules it records: gone at reboot
# compiled on first use (re's cache): only configs with these keys pay for them
_CHAIN_NAME = r"[A-Za-z0-9_\-]{1,28}\Z"  # \Z, not $: "$" also matches before a final "\n"
_BAD_CHARS = frozenset(map(chr, range(32))) | {"\x7f", ";", "#"}  # in a condition token; no regex: every DEL parses
# a state record's (empty) conditions, and re + enum cost ~9 ms of imports

Address = IPv4Interface | IPv6Interface


class PortMapping(Record):
    host_port: int
    container_port: int
    protocol: str
    host_ip: str = ""  # "" = any address of both families; 0.0.0.0 / :: = any address of that family

    def family(self) -> int | None:
        """4 or 6 when host_ip limits the mapping to one family, None for both."""
        return ip_address(self.host_ip, "hostIP").version if self.host_ip else None

    def specific_ip(self) -> str:
        """host_ip when it names one address (not empty, not 0.0.0.0 / ::), as text of the parsed address:
        this is what the rule scripts get, never the input text (strict parsing: no ``%zone``)."""
        if not self.host_ip:
            return ""
        addr = ip_address(self.host_ip, "hostIP")
        return "" if addr.is_unspecified else str(addr)


class Owner(Record):
    network: str
    container_id: str
    ifname: str

    @property
    def key(self) -> str:
        return owner_key(self.network, self.container_id, self.ifname)


class FirewallConfig(Record):
    ip_masq: bool
    state_dir: str
    backend: str = "auto"
    forward: bool = True
    port_mappings: tuple[PortMapping, ...] = ()
    snat: bool = True
    masq_all: bool = False
    mark_masq_bit: int = 13
    external_set_mark_chain: str | None = None
    conditions_v4: tuple[str, ...] = ()
    conditions_v6: tuple[str, ...] = ()

    @property
    def mark(self) -> int:
        return 1 << self.mark_masq_bit


class Attachment(Record):
    owner: Owner
    addresses: tuple[Address, ...]
    # The host-side interface the attachment's packets enter and leave the host by (the bridge; in a
    # routed mode the host veth): route_localnet=1 goes there for 127.0.0.1 host ports, and the nftables
    # rules key every address by it (one subnet may be used by two networks on two interfaces).
    host_iface: str

    def of_family(self, family: int) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.version == family)


class Joint:
    """nftables text of another part of the attachment (the isolation guard, macspoofchk) that the
    nftables backend sends inside its own first transaction of a verb: one ``nft`` exec per ADD or DEL,
    and on DEL one netlink socket, so one RCU grace period (~10 ms of wall time, paid when nft closes a
    socket that deleted elements). ``sent`` tells the caller whether it went; when it did not (iptables
    backend, no rules, a first transaction that failed), the caller applies its part on its own, with
    its own fall-backs. The text must be safe to send again on its own (idempotent)."""

    __slots__ = ("sent", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sent = False


class AttachmentInfo(Record):
    """One attachment with rules, from its state record (for an admin ``status``)."""

    owner: Owner
    backend: str
    addresses: tuple[str, ...]
    ports: tuple[str, ...]

    def __str__(self) -> str:
        o = self.owner
        ports = f" ports {','.join(self.ports)}" if self.ports else ""
        return (f"{o.container_id} {o.ifname} [{o.key}] {self.backend} "
                f"{' '.join(self.addresses) or '-'}{ports}")


class Firewall(Protocol):
    def add(self, att: Attachment, cfg: FirewallConfig, joint: Joint | None = None) -> tuple[str, ...]:
        """Install all rules of att (with `joint` in the same transaction when it can); returns the host
        interfaces that need route_localnet=1."""
        ...

    def delete(self, owner: Owner, cfg: FirewallConfig, addresses: tuple[Address, ...] = (),
               joint: Joint | None = None) -> None: ...

    def check(self, att: Attachment, cfg: FirewallConfig) -> list[str]: ...

    def gc(self, network: str, valid: set[tuple[str, str]], cfg: FirewallConfig) -> None: ...

    def attachments(self, network: str | None = None) -> list[AttachmentInfo]: ...

    def needs_route_localnet(self, att: Attachment, cfg: FirewallConfig) -> tuple[str, ...]: ...


# ------------------------------------------------------------------------------------------- parsing

_MAPPING_KEYS = ("hostPort", "containerPort", "protocol", "hostIP")


def _port(item: Mapping[str, object], name: str, raw: object) -> int:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidConfig(f"invalid port mapping: {name} must be 1-65535", repr(raw))
    return value


def parse_port_mappings(raw: object) -> tuple[PortMapping, ...]:
    """runtimeConfig.portMappings → PortMapping tuple; bad values raise InvalidConfig (7).

    Each mapping's keys are found the way Go's encoding/json finds them (exact, else ignoring case):
    go-cni (containerd's CRI) sends ``HostPort``, ``ContainerPort``, ``Protocol``, ``HostIP``. hostIP is
    parsed strictly (no ``%zone``, only address characters) and kept as the text of the parsed address."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidConfig("runtimeConfig.portMappings must be a list")
    out: list[PortMapping] = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidConfig("invalid port mapping: not an object", repr(item))
        view = go_view(item, _MAPPING_KEYS)
        proto = view.get("protocol")
        proto = "tcp" if proto is None else proto  # Go: a missing or null protocol; the reference default
        if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
            raise InvalidConfig(f"invalid port mapping: protocol must be one of {', '.join(PROTOCOLS)}", repr(item))
        host_ip = view.get("hostIP")
        if host_ip is None or host_ip == "":
            host_ip = ""
        elif not isinstance(host_ip, str):
            raise InvalidConfig("invalid port mapping: hostIP must be a string", repr(item))
        else:
            try:
                host_ip = str(ip_address(host_ip, "hostIP"))
            except ValueError as exc:
                raise InvalidConfig(f"invalid port mapping: bad hostIP: {exc}", repr(item)) from exc
        mapping = PortMapping(host_port=_port(view, "hostPort", item),
                              container_port=_port(view, "containerPort", item),
                              protocol=PROTOCOLS[PROTOCOLS.index(proto.lower())], host_ip=host_ip)
        if mapping not in out:
            out.append(mapping)
    return tuple(out)


def _bool(doc: Mapping[str, Any], key: str, default: bool) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise InvalidConfig(f"{key} must be a boolean", repr(value))
    return value


def _conditions(doc: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = doc.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise InvalidConfig(f"{key} must be a list of non-empty strings")
    if any(not _BAD_CHARS.isdisjoint(t) for t in value):
        raise InvalidConfig(f"{key}: control characters, ';' and '#' are not allowed", repr(value))
    return tuple(value)


def conditions_syntax(conditions: tuple[str, ...]) -> str | None:
    """'iptables' when the first token looks like an iptables option (the reference's rule), else 'nftables'."""
    if not conditions:
        return None
    return "iptables" if conditions[0][:1] in {"-", "!"} else "nftables"


def parse_firewall_config(doc: Mapping[str, Any], runtime: Mapping[str, Any] | None = None) -> FirewallConfig:
    """The bridge conf's firewall keys and the port mappings of ``runtime`` (the canonical runtime config,
    ``NetConf.runtime_config``; None = no port mappings) → FirewallConfig; bad values raise InvalidConfig (7)."""
    backend = doc.get("backend", doc.get("ipMasqBackend")) or "auto"
    if backend not in BACKENDS:
        raise InvalidConfig(f"backend must be one of {', '.join(BACKENDS)}", repr(backend))
    bit = doc.get("markMasqBit", 13)
    if isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit <= 31:
        raise InvalidConfig("markMasqBit must be an integer 0-31", repr(bit))
    ext = doc.get("externalSetMarkChain")
    if ext is not None:
        import re

        if not isinstance(ext, str) or not re.match(_CHAIN_NAME, ext):
            raise InvalidConfig("externalSetMarkChain must be an iptables chain name", repr(ext))
        if "markMasqBit" in doc:
            raise InvalidConfig("cannot set both markMasqBit and externalSetMarkChain")
        if backend == "nftables":
            raise InvalidConfig("nftables backend was requested but externalSetMarkChain is iptables-specific")
    cond4, cond6 = _conditions(doc, "conditionsV4"), _conditions(doc, "conditionsV6")
    for cond in (cond4, cond6):
        syntax = conditions_syntax(cond)
        if backend != "auto" and syntax not in {None, backend}:
            raise InvalidConfig(f"{backend} backend was requested but conditions use {syntax} syntax", repr(cond))
    if {conditions_syntax(cond4), conditions_syntax(cond6)} == {"iptables", "nftables"}:
        raise InvalidConfig("conditionsV4 and conditionsV6 use different syntaxes")
    if ext is not None and "nftables" in {conditions_syntax(cond4), conditions_syntax(cond6)}:
        raise InvalidConfig("externalSetMarkChain is iptables-specific but conditions use nftables syntax")
    state_dir = doc.get("stateDir") or DEFAULT_STATE_DIR
    if not isinstance(state_dir, str) or not state_dir.startswith("/") or "\0" in state_dir:
        raise InvalidConfig("stateDir must be an absolute path", repr(state_dir))
    maps = parse_port_mappings(runtime.get("portMappings")) if runtime else ()
    return FirewallConfig(
        backend=backend, ip_masq=_bool(doc, "ipMasq", False), forward=_bool(doc, "forward", True),
        port_mappings=maps, snat=_bool(doc, "snat", True),
        masq_all=_bool(doc, "masqAll", False), mark_masq_bit=bit, external_set_mark_chain=ext,
        conditions_v4=cond4, conditions_v6=cond6, state_dir=state_dir,
    )


__all__ = [
    "Address",
    "Attachment",
    "AttachmentInfo",
    "Firewall",
    "FirewallConfig",
    "Joint",
    "Owner",
    "PortMapping",
    "parse_firewall_config",
    "parse_port_mappings",
]
