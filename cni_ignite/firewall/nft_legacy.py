"""The nftables layout before layout 2, kept only so that DEL (and the record-less sweep) removes what
it made: per-attachment chains ``p-K`` (postrouting), ``d-K`` (dnat) and ``f-K`` (forward), reached
through the verdict maps ``post4/6``, ``fwd4/6`` (keyed by address), ``ports`` (proto . port) and
``hostports4/6`` (hostIP . proto . port) from the base chains ``prerouting``, ``output``,
``postrouting``, ``forward`` and ``input``. Nothing creates this layout any more; these builders are
the exact text the earlier code generated (pinned by a test), so a layout-1 state record still yields
the elements and chains to delete. When the last layout-1 chain is gone, ``LEGACY_CLEANUP`` removes the
old base chains and maps (``admin`` and the table stay: layout 2 uses them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from . import naming as n

if TYPE_CHECKING:
    from .base import Address, Attachment, FirewallConfig, PortMapping

MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
LEGACY_MAPS = ("post4", "post6", "fwd4", "fwd6", "ports", "hostports4", "hostports6")
LEGACY_BASE_CHAINS = ("prerouting", "output", "postrouting", "forward", "input")
LEGACY_CHAIN_PREFIXES = ("p-", "d-", "f-")


class NftElement(NamedTuple):
    map: str
    key: str
    chain: str


class NftPlan:
    __slots__ = ("chains", "elements")

    def __init__(self) -> None:
        self.chains: dict[str, list[tuple[str, str]]] = {}  # chain -> [(rule, desc)]
        self.elements: list[NftElement] = []

    def add_rule(self, chain: str, rule: str, desc: str) -> None:
        self.chains.setdefault(chain, []).append((rule, desc))

    def add_element(self, element: NftElement) -> None:
        if element not in self.elements:
            self.elements.append(element)


def _dest(ip: str, port: int, family: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def _mappings_for(cfg: FirewallConfig, family: int) -> list[PortMapping]:
    return [m for m in cfg.port_mappings if m.family() in {None, family}]


def nft_plan(att: Attachment, cfg: FirewallConfig) -> NftPlan:
    plan = NftPlan()
    key = att.owner.key
    post, dnat, fwd = n.nft_post_chain(key), n.nft_dnat_chain(key), n.nft_fwd_chain(key)
    for family in (4, 6):
        addrs = att.of_family(family)
        if not addrs:
            continue
        ip = "ip" if family == 4 else "ip6"
        maps, target = _mappings_for(cfg, family), addrs[0]
        if cfg.ip_masq:
            for a in addrs:
                plan.add_rule(post, f"{ip} saddr {a.ip} {ip} daddr != {a.network} {ip} daddr != "
                              f"{MULTICAST[family]} masquerade", f"masquerade of {a.ip}")
                plan.add_element(NftElement(f"post{family}", str(a.ip), post))
        if maps:
            _nft_dnat(plan, cfg, maps, target, family, dnat)
        if maps and cfg.snat:
            src = "" if cfg.masq_all else f" {ip} saddr {target.network}"
            plan.add_rule(post, f"ct status dnat {ip} daddr {target.ip}{src} masquerade",
                          f"hairpin masquerade to {target.ip}")
            if family == 4 and not cfg.masq_all:
                plan.add_rule(post, f"ct status dnat ip daddr {target.ip} ip saddr 127.0.0.1 masquerade",
                              f"localhost masquerade to {target.ip}")
            plan.add_element(NftElement(f"post{family}", str(target.ip), post))
        if cfg.forward:
            for a in addrs:
                plan.add_rule(fwd, f"{ip} daddr {a.ip} ct state established,related accept",
                              f"forward accept to {a.ip}")
                if maps and a == target:
                    plan.add_rule(fwd, f"{ip} daddr {a.ip} ct status dnat accept", f"forward accept of DNAT to {a.ip}")
                plan.add_rule(fwd, f"{ip} saddr {a.ip} accept", f"forward accept from {a.ip}")
                plan.add_element(NftElement(f"fwd{family}", str(a.ip), fwd))
    return plan


def _nft_dnat(plan: NftPlan, cfg: FirewallConfig, maps: list[PortMapping], target: Address, family: int,
              dnat: str) -> None:
    ip = "ip" if family == 4 else "ip6"
    cond = " ".join(cfg.conditions_v4 if family == 4 else cfg.conditions_v6)
    for m in maps:
        host = m.specific_ip()
        match = f"{ip} daddr {host}" if host else f"meta nfproto ipv{family}"
        to = _dest(str(target.ip), m.container_port, family)
        rule = f"{match} {cond} {m.protocol} dport {m.host_port} dnat {ip} to {to}".replace("  ", " ")
        plan.add_rule(dnat, rule, f"DNAT {m.protocol} {host or '*'}:{m.host_port} -> {to}")
        if host:
            plan.add_element(NftElement(f"hostports{family}", f"{host} . {m.protocol} . {m.host_port}", dnat))
        else:
            plan.add_element(NftElement("ports", f"{m.protocol} . {m.host_port}", dnat))


def _quote(desc: str) -> str:
    return '"' + desc.replace('"', "'")[:127] + '"'


T = f"inet {n.NFT_TABLE}"

NFT_BOOTSTRAP = f"""add table {T}
add chain {T} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {T} output {{ type nat hook output priority -100; policy accept; }}
add chain {T} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain {T} forward {{ type filter hook forward priority filter; policy accept; }}
add chain {T} input {{ type filter hook input priority filter; policy accept; }}
add chain {T} admin
add map {T} post4 {{ type ipv4_addr : verdict; }}
add map {T} post6 {{ type ipv6_addr : verdict; }}
add map {T} fwd4 {{ type ipv4_addr : verdict; }}
add map {T} fwd6 {{ type ipv6_addr : verdict; }}
add map {T} ports {{ type inet_proto . inet_service : verdict; }}
add map {T} hostports4 {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
add map {T} hostports6 {{ type ipv6_addr . inet_proto . inet_service : verdict; }}
"""

NFT_BASE_RULES = {
    "prerouting": ("fib daddr type local ip daddr . meta l4proto . th dport vmap @hostports4",
                   "fib daddr type local ip6 daddr . meta l4proto . th dport vmap @hostports6",
                   "fib daddr type local meta l4proto . th dport vmap @ports"),
    "postrouting": ("ip saddr vmap @post4", "ip6 saddr vmap @post6",
                    "ct status dnat ip daddr vmap @post4", "ct status dnat ip6 daddr vmap @post6"),
    "forward": ("jump admin", "ip daddr vmap @fwd4", "ip saddr vmap @fwd4",
                "ip6 daddr vmap @fwd6", "ip6 saddr vmap @fwd6"),
    "input": ('iifname != "lo" ip daddr 127.0.0.0/8 ct status ! dnat ct state != { established, related } drop',),
}
NFT_BASE_RULES["output"] = NFT_BASE_RULES["prerouting"]


def nft_add_text(plan: NftPlan, *, bootstrap: bool = True) -> str:
    """What the layout-1 code sent for an ADD (tests use it to build a pre-upgrade host)."""
    out = [NFT_BOOTSTRAP] if bootstrap else []
    for chain, rules in NFT_BASE_RULES.items() if bootstrap else ():
        out.append(f"flush chain {T} {chain}\n")
        out += [f"add rule {T} {chain} {r}\n" for r in rules]
    for chain, own in plan.chains.items():
        out.append(f"add chain {T} {chain}\nflush chain {T} {chain}\n")
        out += [f"add rule {T} {chain} {r} comment {_quote(d)}\n" for r, d in own]
    out += [f"add element {T} {e.map} {{ {e.key} : jump {e.chain} }}\n" for e in plan.elements]
    return "".join(out)


def nft_delete_text(elements: list[NftElement], chains: list[str], *, ensure: bool) -> str:
    """Remove elements, then chains. With ensure, each is added first so that an absent one does not
    fail the transaction (nft 1.0.6 has no ``destroy``)."""
    out = [f"add chain {T} {c}\n" for c in chains] if ensure else []
    for e in elements:
        if ensure:
            out.append(f"add element {T} {e.map} {{ {e.key} : jump {e.chain} }}\n")
        out.append(f"delete element {T} {e.map} {{ {e.key} }}\n")
    for c in chains:
        out.append(f"flush chain {T} {c}\ndelete chain {T} {c}\n")
    return "".join(out)


def is_legacy_chain(name: str) -> bool:
    return name.startswith(LEGACY_CHAIN_PREFIXES) and len(name) == 2 + n.KEY_LEN


LEGACY_CLEANUP = "".join([*(f"flush chain {T} {c}\n" for c in LEGACY_BASE_CHAINS),
                          *(f"delete chain {T} {c}\n" for c in LEGACY_BASE_CHAINS),
                          *(f"delete map {T} {m}\n" for m in LEGACY_MAPS)])
