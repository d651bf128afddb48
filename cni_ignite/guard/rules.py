"""The guard's nftables text; pure functions from an ``Attachment`` to ``nft -f -`` scripts.

One shared table for every guarded port, ``table bridge cni_ignite_guard``; nothing in it is per
attachment except set elements keyed by the input port (the host veth):

    set ports   { type ifname; }                        guarded ports
    set trunks  { type ifname; }                        ports that may send 802.1Q-tagged frames
    set macs    { type ifname . ether_addr; }           allowed source MACs
    set addr4   { type ifname . ipv4_addr; }            allowed IPv4 source addresses
    set addr6   { type ifname . ipv6_addr; }            allowed IPv6 source addresses
    set nd6     { typeof iifname . @th,64,128; }        the same IPv6 addresses as ND targets
    set net4, net6, ndnet6 (the same, flags interval)   allowed prefixes (allowed pairs with a prefix)
    chain prerouting (filter hook prerouting priority -300): a frame from an unguarded port is accepted at
        once; a guarded port's frame must come from one of its MACs, then goes by ethertype to guard_arp /
        guard_ip / guard_ip6 / guard_vlan, which accept what is allowed and drop the rest; any other
        ethertype (STP, LLDP, RARP ...) is dropped. guard_vlan: a trunk port's 802.1Q-tagged frame goes
        by its inner ethertype to the same three chains (VLANs of a trunk are not checked: the bridge's
        VLAN filtering does that); QinQ, 802.1ad, other inner ethertypes, tags from other ports: dropped.

Routed mode (``bridge.routed``: no bridge, each host veth is its attachment's router port) uses two tables
of the same name instead, keyed the same way by the host veth (``ROUTED_TABLES``, ``Attachment.routed``):

    table inet cni_ignite_guard   the sets above but ``trunks``; chain prerouting (hook prerouting priority
        raw): unguarded veth accepted, source MAC checked, then IPv4 to guard_ip and IPv6 to guard_ip6 (the
        same chains as above: DHCP/DHCPv6 server guard, RA/redirect guard, source and ND target checks)
    table arp cni_ignite_guard    sets ports, macs, addr4, net4; chain input (hook input priority -300):
        source MAC, then guard_arp as above (sender MAC and IP its own; probes from 0.0.0.0)

Per frame: hash lookups keyed by the port (pipapo for the prefix sets), the same with 1 or 500 guarded
ports. Per ADD/DEL: one ``nft -f -`` transaction of element changes (with firewall rules in the nftables
backend, the firewall's own transaction: ``bridge.firewall_glue.PortFilters``); nft (1.0.6, measured) fetches no set
elements for it, and hash-set deletes are O(1) in the kernel, so ADD and DEL cost the same with 1 or 500
ports. (Single addresses are kept out of interval sets on purpose: deleting from a pipapo set rebuilds
it, 20 ms with 500 ports.) ADD re-asserts the table, sets and fixed chains (``add`` is idempotent; the
fixed chains are flushed and refilled in the same transaction) and adds the port's elements; DEL adds then
deletes the same elements, so a missing one is no error. ``nd6`` exists because nft 1.0.6 has no
``icmpv6 taddr``: the target of a neighbour solicitation or advertisement is the 128 bits at offset 8 of
the ICMPv6 header.
"""

from __future__ import annotations

import ipaddress

from .._sha import sha256

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import NamedTuple as Record

    from ..ipparse import IPAddress, IPNetwork
    from .config import GuardConfig
else:
    from .. import Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

TABLE = "bridge cni_ignite_guard"
PRIORITY = -300
# What the guard puts between quotes in nft text, and a MAC it writes. Character sets, not regexes: compiling
# one on every ADD costs more than the checks (the plugins' import budget, STYLE.md (0)).
PORT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_HEX = frozenset("0123456789abcdef")


def valid_port(port: str) -> bool:
    return 1 <= len(port) <= 15 and set(port) <= PORT_CHARS


def valid_mac(mac: str) -> bool:
    """aa:bb:cc:dd:ee:ff in lower case."""
    parts = mac.split(":")
    return len(mac) == 17 and len(parts) == 6 and all(len(p) == 2 and set(p) <= _HEX for p in parts)

SETS = (
    ("ports", "type ifname;"),
    ("trunks", "type ifname;"),
    ("macs", "type ifname . ether_addr;"),
    ("addr4", "type ifname . ipv4_addr;"),
    ("addr6", "type ifname . ipv6_addr;"),
    ("nd6", "typeof iifname . @th,64,128;"),
    ("net4", "type ifname . ipv4_addr; flags interval;"),
    ("net6", "type ifname . ipv6_addr; flags interval;"),
    ("ndnet6", "typeof iifname . @th,64,128; flags interval;"),
)

# The fixed chains of the routed tables (inet, arp), each rule as ``nft list`` prints it (CHECK compares them).
_PROTO_CHAINS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("guard_arp", (
        "arp htype != 1 drop",
        "arp ptype != ip drop",
        "arp hlen != 6 drop",
        "arp plen != 4 drop",
        "arp operation != { request, reply } drop",
        "iifname . arp saddr ether != @macs drop",
        "arp operation request arp saddr ip 0.0.0.0 accept",
        "iifname . arp saddr ip @addr4 accept",
        "iifname . arp saddr ip @net4 accept",
        "drop",
    )),
    ("guard_ip", (
        "udp sport 67 drop",
        "udp dport 68 drop",  # to a DHCP client, from any port: clients do not check the source port
        "ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
        "iifname . ip saddr @addr4 accept",
        "iifname . ip saddr @net4 accept",
        "drop",
    )),
    ("guard_ip6", (
        "udp sport 547 drop",
        "udp dport 546 drop",  # to a DHCPv6 client, from any port
        "icmpv6 type { nd-router-advert, nd-redirect, router-renumbering } drop",
        "ip6 saddr :: icmpv6 type { mld-listener-report, mld2-listener-report } accept",
        "ip6 saddr :: icmpv6 type nd-neighbor-solicit goto guard_nd_target",
        "iifname . ip6 saddr @addr6 goto guard_ip6_own",
        "iifname . ip6 saddr @net6 goto guard_ip6_own",
        "drop",
    )),
    ("guard_ip6_own", (
        "icmpv6 type nd-neighbor-advert goto guard_nd_target",
        "accept",
    )),
    ("guard_nd_target", (
        "iifname . @th,64,128 @nd6 accept",
        "iifname . @th,64,128 @ndnet6 accept",
        "drop",
    )),
)
_BY_NAME = dict(_PROTO_CHAINS)
# In the bridge family nft makes ``ether type`` (the frame's outermost ethertype) the implicit dependency of
# ``arp ...`` and of ``icmpv6 ...`` without an ``ip6`` match: such a rule never matches a tagged frame, whose
# ether type is 8021q, so a tagged RA, NA or ARP would pass its check. These rules name ``meta protocol``
# (the skb's protocol: the inner ethertype of a tagged frame, the ether type of an untagged one) as their
# dependency instead, which nft takes in place of its own and leaves out when it lists the rule (``listed``).
# The other rules' dependencies are meta protocol or the L4 protocol already (``nft --debug=netlink``;
# test_guard_vlan.py::test_protocol_chains_never_read_the_outer_ethertype).
_META = {"guard_arp": "arp", "guard_ip6": "ip6", "guard_ip6_own": "ip6"}


def _bridge_rule(chain: str, rule: str) -> str:
    proto = _META.get(chain)
    return f"meta protocol {proto} {rule}" if proto and rule.startswith(("arp ", "iifname . arp ", "icmpv6 ")) else rule


def as_listed(rule: str) -> str:
    """A rule as ``nft list`` prints it: a leading ``meta protocol`` that is the next match's dependency is
    left out (the only kind the chains hold)."""
    return " ".join(rule.split(" ")[3:]) if rule.startswith("meta protocol ") else rule


# The bridge table's fixed chains, each rule as sent. A frame of a guarded port: source MAC first, then by
# its outermost ethertype (``ether type`` sees an 802.1Q tag whether it is in the frame or in the skb's
# metadata: link-header loads rebuild it); an 802.1Q-tagged frame from a trunk port goes by its inner
# ethertype through the same chains as an untagged one (the network and transport headers an nft match reads
# are the inner packet's: the receive path moves the outer tag to the metadata, test_guard_vlan.py); a
# second tag (QinQ), an 802.1ad tag, another inner ethertype, or a tag on a port that is no trunk: dropped.
CHAINS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prerouting", (
        "iifname != @ports accept",
        "iifname . ether saddr != @macs drop",
        "ether type vmap { ip : jump guard_ip, arp : jump guard_arp, ip6 : jump guard_ip6, 8021q : jump guard_vlan, "
        "8021ad : jump guard_vlan }",
        "drop",
    )),
    ("guard_vlan", (
        "iifname != @trunks drop",
        # ``vlan type`` depends on ``ether type 8021q`` (an 802.1ad tag falls through to the drop); ``meta
        # protocol`` the same as the tag's inner type: the tag is in the metadata, so the headers the chains
        # read are the inner packet's (a tag left in the payload, QinQ's second, has meta protocol 8021q)
        "vlan type ip meta protocol ip jump guard_ip",
        "vlan type arp meta protocol arp jump guard_arp",
        "vlan type ip6 meta protocol ip6 jump guard_ip6",
        "drop",
    )),
    *((name, tuple(_bridge_rule(name, r) for r in rules)) for name, rules in _PROTO_CHAINS),
)


class Attachment(Record):
    """What one guarded port may send: its MACs and source prefixes (own addresses are /32, /128)."""

    port: str
    macs: tuple[str, ...]
    v4: tuple[ipaddress.IPv4Network, ...]
    v6: tuple[ipaddress.IPv6Network, ...]
    trunk: bool = False
    routed: bool = False  # a routed veth (``ROUTED`` tables), not a bridge port


def attachment(port: str, macs: Iterable[str], addresses: Iterable[IPAddress | IPNetwork],
               guard: GuardConfig | None = None, *, trunk: bool = False, routed: bool = False) -> Attachment:
    """The guard of one port: `macs` are the attachment's own (container interface; guest in VM bridge
    mode), `addresses` the ones it was given; adds the guard's allowed pairs and the EUI-64 link-local of
    every allowed MAC. Raises ValueError on a port name or MAC the nft text cannot carry."""
    if not isinstance(port, str) or not valid_port(port):
        raise ValueError(f"guard: invalid port name {port!r}")
    if routed and trunk:
        raise ValueError(f"guard: a routed port carries no VLANs ({port})")
    pairs = guard.pairs if guard is not None else ()
    allowed = sorted({m.lower() for m in macs if m} | {p.mac for p in pairs if p.mac})
    for mac in allowed:
        if not valid_mac(mac) or int(mac[:2], 16) & 1:
            raise ValueError(f"guard: invalid source MAC {mac!r} for {port}")
    if not allowed:
        raise ValueError(f"guard: no MAC for {port}")
    nets = [ipaddress.ip_network(a) for a in addresses]
    nets += [p.network for p in pairs]
    nets += [ipaddress.ip_network(eui64_link_local(m)) for m in allowed]
    v4 = tuple(ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network)))
    v6 = tuple(ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network)))
    return Attachment(port=port, macs=tuple(allowed), v4=v4, v6=v6, trunk=trunk, routed=routed)


def eui64_link_local(mac: str) -> ipaddress.IPv6Address:
    """fe80::/64 plus the modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes((b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]))
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid)


def _raw128(net: ipaddress.IPv6Network) -> str:
    lo, hi = int(net.network_address), int(net.broadcast_address)
    return f"0x{lo:032x}" if lo == hi else f"0x{lo:032x}-0x{hi:032x}"


def elements(att: Attachment) -> dict[str, list[str]]:
    """The port's element text per set (``trunks`` empty when the port is no trunk). Single addresses go
    to hash sets; only prefixes (allowed pairs) go to the interval sets, whose deletion costs O(elements)
    in the kernel (pipapo: measured 20 ms for 500 single addresses, against 0.1 ms for a hash set)."""
    port = f'"{att.port}"'
    one4 = [n for n in att.v4 if n.prefixlen == 32]
    one6 = [n for n in att.v6 if n.prefixlen == 128]
    net4 = [n for n in att.v4 if n.prefixlen < 32]
    net6 = [n for n in att.v6 if n.prefixlen < 128]
    return {
        "ports": [port],
        "trunks": [port] if att.trunk else [],
        "macs": [f"{port} . {m}" for m in att.macs],
        "addr4": [f"{port} . {n.network_address}" for n in one4],
        "addr6": [f"{port} . {n.network_address}" for n in one6],
        "nd6": [f"{port} . {_raw128(n)}" for n in one6],
        "net4": [f"{port} . {n}" for n in net4],
        "net6": [f"{port} . {n}" for n in net6],
        "ndnet6": [f"{port} . {_raw128(n)}" for n in net6],
    }


class Table(Record):
    """One guard table of a layout: its sets and fixed chains; the first chain is the base chain, named
    after its hook."""

    name: str  # "<family> <table>"
    sets: tuple[tuple[str, str], ...]
    chains: tuple[tuple[str, tuple[str, ...]], ...]


_V4_SETS = ("ports", "macs", "addr4", "net4")
# Routed mode (``bridge.routed``): no bridge, so no bridge-family hook sees the veth's frames. IPv4 and IPv6
# are filtered in ``inet`` prerouting (priority raw, before conntrack and the routing decision: a forged
# packet makes no conntrack entry, IPv6 has no rp_filter), ARP in the ``arp`` family's input hook (the only
# one that sees ARP arriving at the host: routed veths have no L2 peers, every ARP is for the host). Both are
# keyed by iifname: one hash lookup per packet whatever the number of ports, no per-device chain (a
# ``netdev`` ingress chain is bound to its devices: one chain, or a chain update, per attachment).
ROUTED_TABLES = (
    Table("inet cni_ignite_guard", tuple(s for s in SETS if s[0] != "trunks"), (
        ("prerouting", (
            "iifname != @ports accept",
            "iifname . ether saddr != @macs drop",
            "meta nfproto vmap { ipv4 : jump guard_ip, ipv6 : jump guard_ip6 }",
        )),
        *((name, _BY_NAME[name]) for name in ("guard_ip", "guard_ip6", "guard_ip6_own", "guard_nd_target")),
    )),
    Table("arp cni_ignite_guard", tuple(s for s in SETS if s[0] in _V4_SETS), (
        ("input", (
            "iifname != @ports accept",
            "iifname . ether saddr != @macs drop",
            "jump guard_arp",
        )),
        ("guard_arp", _BY_NAME["guard_arp"]),
    )),
)
BRIDGE_TABLES = (Table(TABLE, SETS, CHAINS),)


def tables(routed: bool = False) -> tuple[Table, ...]:
    return ROUTED_TABLES if routed else BRIDGE_TABLES


def _skeleton_body(layout: tuple[Table, ...] = BRIDGE_TABLES) -> str:
    out = []
    for t in layout:
        out.append(f"add table {t.name}")
        out += [f"add set {t.name} {name} {{ {spec} }}" for name, spec in t.sets]
        base = t.chains[0][0]
        out.append(f"add chain {t.name} {base} {{ type filter hook {base} priority {PRIORITY}; policy accept; }}")
        out += [f"add chain {t.name} {name}" for name, _ in t.chains[1:]]
        for name, rules in t.chains:
            out.append(f"flush chain {t.name} {name}")
            out += [f"add rule {t.name} {name} {rule}" for rule in rules]
    return "\n".join(out) + "\n"


# An empty chain named after this version of the skeleton: the lean scripts (elements only) flush it, which
# fails when the table, or this version of it, is not in place, and the caller falls back to the full one.
MARK = "layout_" + sha256(_skeleton_body().encode()).hexdigest()[:12]
ROUTED_MARK = "layout_" + sha256(_skeleton_body(ROUTED_TABLES).encode()).hexdigest()[:12]


def layout_mark(routed: bool = False) -> str:
    """The empty chain that names this version of the layout's skeleton (in each of its tables)."""
    return ROUTED_MARK if routed else MARK


def skeleton(routed: bool = False) -> str:
    """The shared table(s), sets and fixed chains; idempotent (the fixed chains are flushed and refilled)."""
    mark = layout_mark(routed)
    return _skeleton_body(tables(routed)) + "".join(f"add chain {t.name} {mark}\n" for t in tables(routed))


def table_elements(att: Attachment) -> list[tuple[Table, dict[str, list[str]]]]:
    """The port's elements per table of its layout (each table holds the sets it has)."""
    elems = elements(att)
    return [(t, {name: elems[name] for name, _ in t.sets}) for t in tables(att.routed)]


def _adds(att: Attachment) -> list[str]:
    return [f"{'create' if name == 'ports' else 'add'} element {t.name} {name} {{ {', '.join(items)} }}"
            for t, elems in table_elements(att) for name, items in elems.items() if items]


def apply_script(att: Attachment) -> str:
    """ADD: the skeleton and the port's elements, one transaction. The port goes in with ``create``, so the
    transaction fails when the port is guarded already (leftovers of a lost DEL, perhaps with other
    addresses, that must not stay allowed): the caller purges the port and applies again."""
    return skeleton(att.routed) + "\n".join(_adds(att)) + "\n"


def lean_apply_script(att: Attachment) -> str:
    """ADD when this skeleton is in place (the usual case): only the port's elements. An nft exec with the
    skeleton costs ~12 ms more (parsing and re-adding the fixed chains); this one is the exec's floor.
    Fails (and the caller applies ``apply_script``) when the table is missing, is another version, or the
    port is guarded already."""
    mark = layout_mark(att.routed)
    flush = "".join(f"flush chain {t.name} {mark}\n" for t in tables(att.routed))
    return flush + "\n".join(_adds(att)) + "\n"


def _add_then_delete(att: Attachment) -> list[str]:
    out = []
    for t, elems in table_elements(att):
        if "trunks" in elems:
            elems["trunks"] = elems["ports"]
        for name, items in elems.items():
            if items:
                body = ", ".join(items)
                out += [f"add element {t.name} {name} {{ {body} }}", f"delete element {t.name} {name} {{ {body} }}"]
    return out


def lean_remove_script(att: Attachment) -> str:
    """DEL when the sets exist: add then delete each of the port's elements (a missing one is no error)."""
    return "\n".join(_add_then_delete(att)) + "\n"


def quarantine_script(att: Attachment) -> str:
    """GC of an attachment the runtime no longer knows while its port may still exist: every element but
    the port itself goes (add then delete), so the port stays guarded with nothing allowed (every frame of it
    is dropped) instead of keeping addresses that GC hands back to the IPAM. Fails when the sets are missing."""
    return "\n".join(line for line in _add_then_delete(att) if " ports { " not in line) + "\n"


def remove_script(att: Attachment) -> str:
    """DEL: add then delete each of the port's elements (also ``trunks``), one transaction; the sets are
    made first when missing, so it succeeds whether the elements, the sets or the table exist or not."""
    out = []
    for t in tables(att.routed):
        out += [f"add table {t.name}"] + [f"add set {t.name} {name} {{ {spec} }}" for name, spec in t.sets]
    return "\n".join(out + _add_then_delete(att)) + "\n"


def check_script(att: Attachment) -> str:
    """CHECK: deleting each of the port's elements, for ``nft -c`` (a dry run: the kernel answers ENOENT
    for a missing element and changes nothing). ``get element`` would be the obvious command, but nft
    1.0.6 fetches every set's elements for it (measured 20 ms with 500 ports)."""
    return "".join(f"delete element {t.name} {name} {{ {', '.join(items)} }}\n"
                   for t, elems in table_elements(att) for name, items in elems.items() if items)


def chain_problems(listed: str, chains: tuple[tuple[str, tuple[str, ...]], ...] = CHAINS) -> list[str]:
    """Differences between the fixed chains in ``nft -t list table`` output and what the guard needs."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in listed.splitlines():
        line = raw.strip()
        if line.startswith("chain ") and line.endswith("{"):
            current = found.setdefault(line.split()[1], [])
        elif line == "}":
            current = None
        elif current is not None and line and not line.startswith("type "):
            current.append(_canonical(line))
    problems = []
    for name, rules in chains:
        want = [_canonical(as_listed(rule)) for rule in rules]
        if name not in found:
            problems.append(f"guard chain {name} is missing")
        elif found[name] != want:
            problems.append(f"guard chain {name}: expected {want}, found {found[name]}")
    return problems


def _canonical(rule: str) -> str:
    """A rule with the items of each anonymous set/map sorted (nft lists them in hash order)."""
    import re

    return re.sub(r"\{ ([^{}]*) \}",
                  lambda m: "{ " + ", ".join(sorted(i.strip() for i in m.group(1).split(","))) + " }", rule)
