"""Pure rule builders: the exact iptables-restore lines and nft statements of one attachment.

iptables (per family; ``K`` = the attachment key, ``C`` = ``-m comment --comment cni-ignite:K``; layout 2:
``S-k`` is the bucket sub-chain of shared chain ``S`` for the key's first hex digit ``k``, jumped from ``S``)::

    nat    CNI-IGNITE-POSTRT-k  -s <ip>/32 C -j CNI-IGM-K                    (ipMasq, per address)
                                -d <target>/32 -m mark --mark M/M C -j MASQUERADE   (hairpin/localhost, snat)
           CNI-IGM-K            -d <subnet> -j RETURN; -d 224.0.0.0/4 -j RETURN; -j MASQUERADE
           CNI-IGNITE-DNAT-k    <conditions> -p <proto> -m multiport --dports <≤15 ports> C -j CNI-IGD-K
           CNI-IGD-K            [-s <subnet>|127.0.0.1] [-d <hostIP>] -p P -m P --dport H -j MARK/<external chain>
                                [-d <hostIP>] -p P -m P --dport H -j DNAT --to-destination <target>:<port>
    filter CNI-IGNITE-FWD-k     -d <ip>/32 -m conntrack --ctstate RELATED,ESTABLISHED C -j ACCEPT
                                -d <target>/32 -m conntrack --ctstate DNAT C -j ACCEPT   (with port mappings)
                                -s <ip>/32 C -j ACCEPT

Layout 1 (records without a layout) had these rules in the shared chains themselves.

nftables (``table inet cni_ignite``, layout 2; ``D`` = the host interface, quoted)::

    masq4/6        D . <ip> : jump m-<hash>          (ipMasq; m-: ``ip daddr != <subnet> masquerade``)
    hairpin4/6     D . <target> : jump h-<hash>      (snat; h-: masquerade from <subnet> [and 127.0.0.1])
    hairpinall4/6  D . <target>                      (snat with masqAll)
    accept4/6      D . <ip>                          (forward)
    acceptdnat4/6  D . <target>                      (forward, with port mappings)
    dnat4/6        <proto> . <port>  : <target> . <port>          (mappings without hostIP)
    hostdnat4/6    <hostIP> . <proto> . <port> : <target> . <port>
    cdnat4/6, chostdnat4/6  same keys : jump c-K     (attachments with conditions: chain c-K)

No interval sets: nft 1.0.6 fetches an interval set's elements to delete one (O(attachments)). The
m-/h- chains are named after their rules (sha256), shared by every attachment that needs the same text
(one per subnet and option set, not per attachment); an ADD rewrites its own, a DEL leaves them, GC
removes those no element jumps to. The multicast exemption is a constant base rule.
Every element carries ``comment "cni-ignite:K"``; the base chains (NFT_BASE_RULES) are constant.
Layout 1 (per-attachment chains) is in nft_legacy.
"""

from __future__ import annotations

from .._sha import sha256
from . import naming as n

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import NamedTuple as Record

    from .base import Address, Attachment, FirewallConfig, PortMapping
else:
    from .. import Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
MULTIPORT_MAX = 15
SHARED_IPT = {"nat": (n.IPT_POSTROUTING, n.IPT_DNAT), "filter": (n.IPT_FORWARD,)}
_SHARED = {c for chains in SHARED_IPT.values() for c in chains}


class IptRule(Record):
    table: str
    chain: str
    spec: str
    desc: str


class IptEntry(Record):
    """A constant rule that leads packets into our shared chains (or the localnet guard itself)."""

    table: str
    chain: str
    spec: str
    first: bool  # inserted at position 1 (else appended)
    desc: str
    serves: str  # the shared chain whose use needs this rule
    on_add: bool = True  # verified by every ADD that uses it; else only CHECK (and a repair) sees it


class IptPlan:
    """One family's iptables rules of an attachment, and the entry rules they need."""

    __slots__ = ("entries", "family", "own_chains", "rules")

    def __init__(self, family: int) -> None:
        self.family = family
        self.own_chains: dict[str, list[str]] = {}  # table -> our chains
        self.rules: list[IptRule] = []
        self.entries: list[IptEntry] = []

    def tables(self) -> list[str]:
        used = {r.table for r in self.rules} | {e.table for e in self.entries} | set(self.own_chains)
        return [t for t in ("nat", "filter") if t in used]


def _host(addr: Address) -> str:
    return f"{addr.ip}/{32 if addr.version == 4 else 128}"


def _dest(ip: str, port: int, family: int) -> str:
    return f"{ip}:{port}" if family == 4 else f"[{ip}]:{port}"


def mappings_for(cfg: FirewallConfig, family: int) -> list[PortMapping]:
    """The mappings that apply to a family (a hostIP of the other family skips the mapping)."""
    return [m for m in cfg.port_mappings if m.family() in {None, family}]


def conditions(cfg: FirewallConfig, family: int) -> tuple[str, ...]:
    return cfg.conditions_v4 if family == 4 else cfg.conditions_v6


def needs_localnet(att: Attachment, cfg: FirewallConfig) -> bool:
    """127.0.0.1:hostPort reaches the container only with route_localnet=1 on the bridge (IPv4); the
    CVE-2020-8558 guard must then be in place."""
    return bool(cfg.snat and mappings_for(cfg, 4) and att.of_family(4) and att.host_iface)


# ---------------------------------------------------------------------------------------------- iptables

IPT_LAYOUT = 2


def iptables_plan(att: Attachment, cfg: FirewallConfig, family: int, layout: int = IPT_LAYOUT) -> IptPlan:
    """Layout 2 puts the shared-chain rules into the key's bucket sub-chains; layout 1 (records written
    before it) into the shared chains themselves."""
    plan = IptPlan(family=family)
    addrs = att.of_family(family)
    if not addrs:
        return plan
    key = att.owner.key
    cmt = f"-m comment --comment {n.comment(key)}"
    masq, dnat = n.ipt_masq_chain(key), n.ipt_dnat_chain(key)
    post, fwd = (n.ipt_bucket(c, key) if layout >= 2 else c for c in (n.IPT_POSTROUTING, n.IPT_FORWARD))
    if cfg.ip_masq:
        plan.own_chains.setdefault("nat", []).append(masq)
        for net in dict.fromkeys(str(a.network) for a in addrs):
            plan.rules.append(IptRule("nat", masq, f"-d {net} -j RETURN", f"masquerade exemption {net}"))
        plan.rules.append(IptRule("nat", masq, f"-d {MULTICAST[family]} -j RETURN", "multicast exemption"))
        plan.rules.append(IptRule("nat", masq, "-j MASQUERADE", "masquerade target"))
        for a in addrs:
            plan.rules.append(IptRule("nat", post, f"-s {_host(a)} {cmt} -j {masq}",
                                      f"masquerade of {a.ip}"))
    maps = mappings_for(cfg, family)
    target = addrs[0]
    if maps:
        _iptables_dnat(plan, cfg, maps, target, cmt, (dnat, post, n.ipt_bucket(n.IPT_DNAT, key) if layout >= 2
                                                      else n.IPT_DNAT))
    if cfg.forward:
        for a in addrs:
            plan.rules.append(IptRule("filter", fwd, f"-d {_host(a)} -m conntrack --ctstate "
                                      f"RELATED,ESTABLISHED {cmt} -j ACCEPT", f"forward accept to {a.ip}"))
            if maps and a == target:
                plan.rules.append(IptRule("filter", fwd, f"-d {_host(a)} -m conntrack --ctstate DNAT "
                                          f"{cmt} -j ACCEPT", f"forward accept of DNAT to {a.ip}"))
            plan.rules.append(IptRule("filter", fwd, f"-s {_host(a)} {cmt} -j ACCEPT",
                                      f"forward accept from {a.ip}"))
    if plan.rules and not plan.own_chains:  # an empty marker: an ADD without a state record can tell
        plan.own_chains["nat"] = [masq]      # (one flat listing) whether rules of this key exist already
    used = {r.chain for r in plan.rules}
    used |= {c.rsplit("-", 1)[0] for c in used if c.rsplit("-", 1)[0] in _SHARED}  # a bucket needs its chain
    if family == 4 and needs_localnet(att, cfg):
        used.add(n.IPT_INPUT)
    plan.entries = [e for e in ipt_entries(family) if e.serves in used]
    return plan


def _iptables_dnat(plan: IptPlan, cfg: FirewallConfig, maps: list[PortMapping], target: Address,
                   cmt: str, chains: tuple[str, str, str]) -> None:
    """chains: the key's DNAT chain, and where its postrouting and its DNAT-jump rules go."""
    family = plan.family
    dnat, post, jumps = chains
    plan.own_chains.setdefault("nat", []).append(dnat)
    cond = " ".join(conditions(cfg, family))
    for proto in sorted({m.protocol for m in maps}):
        ports = list(dict.fromkeys(str(m.host_port) for m in maps if m.protocol == proto))
        for i in range(0, len(ports), MULTIPORT_MAX):
            chunk = ",".join(ports[i:i + MULTIPORT_MAX])
            spec = f"-p {proto} -m multiport --dports {chunk} {cmt} -j {dnat}"
            plan.rules.append(IptRule("nat", jumps, f"{cond} {spec}" if cond else spec,
                                      f"jump to DNAT chain {proto} {chunk}"))
    mark = (f"-j {cfg.external_set_mark_chain}" if cfg.external_set_mark_chain
            else f"-j MARK --set-xmark {cfg.mark:#x}/{cfg.mark:#x}")
    for m in maps:
        dst = f"-d {m.specific_ip()}/{32 if family == 4 else 128} " if m.specific_ip() else ""
        match = f"{dst}-p {m.protocol} -m {m.protocol} --dport {m.host_port}"
        if cfg.snat:
            src = "" if cfg.masq_all else f"-s {target.network} "
            plan.rules.append(IptRule("nat", dnat, f"{src}{match} {mark}", f"hairpin mark {m.protocol} {m.host_port}"))
            if family == 4 and not cfg.masq_all:
                plan.rules.append(IptRule("nat", dnat, f"-s 127.0.0.1/32 {match} {mark}",
                                          f"localhost mark {m.protocol} {m.host_port}"))
        to = _dest(str(target.ip), m.container_port, family)
        plan.rules.append(IptRule("nat", dnat, f"{match} -j DNAT --to-destination {to}",
                                  f"DNAT {m.protocol} {m.specific_ip() or '*'}:{m.host_port} -> {to}"))
    if cfg.snat and not cfg.external_set_mark_chain:
        plan.rules.append(IptRule("nat", post, f"-d {_host(target)} -m mark --mark "
                                  f"{cfg.mark:#x}/{cfg.mark:#x} {cmt} -j MASQUERADE",
                                  f"hairpin masquerade to {target.ip}"))


def iptables_add_text(plan: IptPlan, table: str) -> str:
    """``-N`` the key's own chains (fails when they exist: rules of a lost record), ``-C`` the entry
    rules in built-in chains (fails when one is missing; iptables-nft reads only the chains a batch
    names, all small), then the rules. A failed batch changes nothing: the caller repairs and retries."""
    lines = [f"*{table}"]
    lines += [f"-N {c}" for c in plan.own_chains.get(table, [])]
    lines += [f"-C {e.chain} {e.spec}" for e in plan.entries if e.table == table and e.on_add]
    lines += [f"-A {r.chain} {r.spec}" for r in plan.rules if r.table == table]
    return "\n".join([*lines, "COMMIT", ""])


def iptables_delete_text(table: str, shared_rules: list[str], own_chains: list[str]) -> str:
    """Delete shared-chain rules (``CHAIN spec`` strings) first, then flush and delete our chains."""
    lines = [f"*{table}"]
    lines += [f":{c} - [0:0]" for c in own_chains]
    lines += [f"-D {r}" for r in shared_rules]
    lines += [f"-X {c}" for c in own_chains]
    return "\n".join([*lines, "COMMIT", ""])


LOCALNET_GUARD = "-d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
ADDRTYPE_LOCAL = "-m addrtype --dst-type LOCAL"


def _jump(table: str, chain: str, target: str, first: bool, *, match: str = "", serves: str = "",
          on_add: bool = True) -> IptEntry:
    spec = f"{match} -j {target}" if match else f"-j {target}"
    return IptEntry(table, chain, spec, first, f"jump {chain} -> {target}", serves or target, on_add)


def ipt_entries(family: int) -> tuple[IptEntry, ...]:
    """Every constant rule of our shared chains' entry points, in the order a repair adds them. An ADD
    verifies the ones in built-in chains (what ``iptables -F <builtin>`` removes; each listing costs
    ~1.1 ms of CPU, flat). The admin jump and the guard sit in our own chains (the admin jump's chain
    grows with attachments): CHECK reports them, and every repair, e.g. after ``iptables -F``, which
    also empties the built-in chains an ADD verifies, restores them."""
    out = [_jump("nat", "POSTROUTING", n.IPT_POSTROUTING, True),
           _jump("nat", "PREROUTING", n.IPT_DNAT, False, match=ADDRTYPE_LOCAL),
           _jump("nat", "OUTPUT", n.IPT_DNAT, False, match=ADDRTYPE_LOCAL),
           _jump("filter", n.IPT_FORWARD, n.IPT_ADMIN, True, serves=n.IPT_FORWARD, on_add=False),
           _jump("filter", "FORWARD", n.IPT_FORWARD, True)]
    out += [_jump(t, c, n.ipt_bucket(c, b), False, on_add=False)  # layout 2's buckets (CHECK and repair)
            for t, chains in SHARED_IPT.items() for c in chains for b in n.IPT_BUCKETS]
    if family == 4:  # route_localnet is an IPv4 setting: IPv6 needs no guard
        out += [_jump("filter", "INPUT", n.IPT_INPUT, True),
                IptEntry("filter", n.IPT_INPUT, LOCALNET_GUARD, False,
                         f"localnet guard (CVE-2020-8558) in {n.IPT_INPUT}", n.IPT_INPUT, on_add=False)]
    return tuple(out)


# Our shared chains per table; IPT_ADMIN first (CNI-IGNITE-FWD jumps to it).
IPT_BOOTSTRAP_CHAINS = {"nat": (n.IPT_POSTROUTING, n.IPT_DNAT),
                        "filter": (n.IPT_ADMIN, n.IPT_FORWARD, n.IPT_INPUT)}


def ipt_shared_chains(family: int, table: str) -> tuple[str, ...]:
    chains = IPT_BOOTSTRAP_CHAINS[table]
    chains += tuple(n.ipt_bucket(c, b) for c in SHARED_IPT[table] for b in n.IPT_BUCKETS)
    return chains if family == 4 else tuple(c for c in chains if c != n.IPT_INPUT)


def norm_spec(spec: str) -> tuple[str, ...]:
    """A rule spec as a sorted token tuple (iptables-save quotes comments, may order options differently)."""
    import shlex  # CHECK and repair only: not on the ADD/DEL path

    return tuple(sorted(shlex.split(spec)))


def saved_rules(save_text: str) -> tuple[set[str], set[tuple[str, tuple[str, ...]]]]:
    """(chains, {(chain, norm_spec)}) of one table's ``iptables-save -t`` output."""
    chains, rules = set(), set()
    for line in save_text.splitlines():
        if line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            rules.add((chain, norm_spec(spec)))
    return chains, rules


def iptables_repair_text(family: int, table: str, save_text: str) -> str:
    """Create whichever of our shared chains are missing and add whichever entry rules are missing
    (never flushing or declaring a shared chain); "" when nothing is missing."""
    chains, rules = saved_rules(save_text)
    lines = [f"-N {c}" for c in ipt_shared_chains(family, table) if c not in chains]
    for e in ipt_entries(family):
        if e.table == table and (e.chain, norm_spec(e.spec)) not in rules:
            lines.append(f"-I {e.chain} 1 {e.spec}" if e.first else f"-A {e.chain} {e.spec}")
    return "\n".join([f"*{table}", *lines, "COMMIT", ""]) if lines else ""


# ---------------------------------------------------------------------------------------------- nftables
#
# Layout 2 (``table inet cni_ignite``): no chain per attachment. Every attachment adds elements, each
# carrying the comment ``cni-ignite:K``, to sets and maps keyed by family (the set's type), by the host
# interface where addresses may repeat across networks, and by protocol . port for mappings; the base
# chains hold only the constant rules of NFT_BASE_RULES. Attachments with conditionsV4/V6 (nft syntax
# cannot go into a shared map) get one chain ``c-K`` with their DNAT rules, reached by a verdict map.

NFT_LAYOUT = 2
_NOT_IN_IFNAME = frozenset('"\\/:')


def plain_ifname(name: str) -> bool:
    """An interface name nft text can carry between quotes: 1-15 characters, no space, quote, slash,
    backslash or colon (str methods: a regex compiled on every ADD costs more)."""
    return 1 <= len(name) <= 15 and not any(c.isspace() or c in _NOT_IN_IFNAME for c in name)


class NftElem(Record):
    set: str
    key: str  # nft text of the key: "br0" . 10.99.0.2
    data: str = ""  # a map's value: 10.99.0.2 . 80, jump c-K; "" in a set

    def text(self, comment: str = "") -> str:
        cmt = f' comment "{comment}"' if comment else ""
        return f"{{ {self.key}{cmt} : {self.data} }}" if self.data else f"{{ {self.key}{cmt} }}"


class NftPlan:
    __slots__ = ("chains", "descs", "elements", "key", "shared")

    def __init__(self, key: str) -> None:
        self.key = key
        self.chains: dict[str, list[tuple[str, str]]] = {}  # c-K -> [(rule, desc)]; conditions only
        self.shared: dict[str, list[tuple[str, str]]] = {}  # content-named chains other attachments share
        self.elements: list[NftElem] = []
        self.descs: dict[NftElem, str] = {}  # what each element does, for CHECK

    def add_rule(self, chain: str, rule: str, desc: str) -> None:
        self.chains.setdefault(chain, []).append((rule, desc))

    def shared_chain(self, prefix: str, rules: list[tuple[str, str]]) -> str:
        """A chain named after its rules: every attachment that needs the same rules (one subnet, one
        option set) jumps to the same chain; an ADD rewrites it (same text), a DEL leaves it."""
        name = f"{prefix}-{sha256(chr(10).join(r for r, _ in rules).encode()).hexdigest()[:n.KEY_LEN]}"
        self.shared[name] = rules
        return name

    def add(self, set_name: str, key: str, desc: str, data: str = "") -> None:
        elem = NftElem(set_name, key, data)
        if elem not in self.descs:
            self.elements.append(elem)
            self.descs[elem] = desc


def nft_plan(att: Attachment, cfg: FirewallConfig) -> NftPlan:
    """The attachment's elements (and its conditions chain). Raises InvalidConfig when the host
    interface (part of every address key) is missing or not a plain interface name."""
    plan = NftPlan(att.owner.key)
    if not any(att.of_family(f) for f in (4, 6)):
        return plan
    if not plain_ifname(att.host_iface):
        from ..errors import InvalidConfig

        raise InvalidConfig("the nftables rules need the attachment's host interface name", repr(att.host_iface))
    dev = f'"{att.host_iface}"'
    for family in (4, 6):
        if att.of_family(family):
            _nft_family(plan, cfg, dev, att.of_family(family), family)
    return plan


def _nft_family(plan: NftPlan, cfg: FirewallConfig, dev: str, addrs: tuple[Address, ...], family: int) -> None:
    ip = "ip" if family == 4 else "ip6"
    maps, target = mappings_for(cfg, family), addrs[0]
    if cfg.ip_masq:
        for a in addrs:
            masq = plan.shared_chain("m", [(f"{ip} daddr != {a.network} masquerade",
                                            f"masquerade unless to {a.network}")])
            plan.add(f"masq{family}", f"{dev} . {a.ip}", f"masquerade of {a.ip}", f"jump {masq}")
    if maps:
        _nft_dnat(plan, cfg, maps, target, family)
    if maps and cfg.snat and cfg.masq_all:
        plan.add(f"hairpinall{family}", f"{dev} . {target.ip}", f"hairpin masquerade to {target.ip}")
    elif maps and cfg.snat:
        hairpin = [(f"{ip} saddr {target.network} masquerade", f"hairpin masquerade from {target.network}")]
        if family == 4:
            hairpin.append(("ip saddr 127.0.0.1 masquerade", "localhost masquerade"))
        chain = plan.shared_chain("h", hairpin)
        plan.add(f"hairpin{family}", f"{dev} . {target.ip}", f"hairpin masquerade to {target.ip}", f"jump {chain}")
    if cfg.forward:
        for a in addrs:
            plan.add(f"accept{family}", f"{dev} . {a.ip}", f"forward accept to and from {a.ip}")
            if maps and a == target:
                plan.add(f"acceptdnat{family}", f"{dev} . {a.ip}", f"forward accept of DNAT to {a.ip}")


def _nft_dnat(plan: NftPlan, cfg: FirewallConfig, maps: list[PortMapping], target: Address, family: int) -> None:
    ip = "ip" if family == 4 else "ip6"
    cond = " ".join(conditions(cfg, family))
    chain = n.nft_cond_chain(plan.key)
    for m in maps:
        host = m.specific_ip()
        key = f"{host} . {m.protocol} . {m.host_port}" if host else f"{m.protocol} . {m.host_port}"
        to = _dest(str(target.ip), m.container_port, family)
        desc = f"DNAT {m.protocol} {host or '*'}:{m.host_port} -> {to}"
        if not cond:
            plan.add(f"{'host' if host else ''}dnat{family}", key, desc, f"{target.ip} . {m.container_port}")
            continue
        match = f"{ip} daddr {host}" if host else f"meta nfproto ipv{family}"
        plan.add_rule(chain, f"{match} {cond} {m.protocol} dport {m.host_port} dnat {ip} to {to}", desc)
        plan.add(f"c{'host' if host else ''}dnat{family}", key, f"jump to {chain} for {desc}", f"jump {chain}")


def _quote(desc: str) -> str:
    return '"' + desc.replace('"', "'")[:127] + '"'


def _sets(family: int) -> str:
    t, a = f"inet {n.NFT_TABLE}", f"ipv{family}_addr"
    return "".join((
        f"add map {t} masq{family} {{ type ifname . {a} : verdict; }}\n",
        f"add map {t} hairpin{family} {{ type ifname . {a} : verdict; }}\n",
        f"add set {t} hairpinall{family} {{ type ifname . {a}; }}\n",
        f"add set {t} accept{family} {{ type ifname . {a}; }}\n",
        f"add set {t} acceptdnat{family} {{ type ifname . {a}; }}\n",
        f"add map {t} dnat{family} {{ type inet_proto . inet_service : {a} . inet_service; }}\n",
        f"add map {t} hostdnat{family} {{ type {a} . inet_proto . inet_service : {a} . inet_service; }}\n",
        f"add map {t} cdnat{family} {{ type inet_proto . inet_service : verdict; }}\n",
        f"add map {t} chostdnat{family} {{ type {a} . inet_proto . inet_service : verdict; }}\n"))


NFT_BOOTSTRAP = f"""add table inet {n.NFT_TABLE}
add chain inet {n.NFT_TABLE} nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain inet {n.NFT_TABLE} nat-output {{ type nat hook output priority -100; policy accept; }}
add chain inet {n.NFT_TABLE} nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain inet {n.NFT_TABLE} filter-forward {{ type filter hook forward priority filter; policy accept; }}
add chain inet {n.NFT_TABLE} filter-input {{ type filter hook input priority filter; policy accept; }}
add chain inet {n.NFT_TABLE} admin
{_sets(4)}{_sets(6)}"""

_DNAT_RULES = (
    "fib daddr type != local return",
    "ip daddr . meta l4proto . th dport vmap @chostdnat4",
    "ip6 daddr . meta l4proto . th dport vmap @chostdnat6",
    "meta nfproto ipv4 meta l4proto . th dport vmap @cdnat4",
    "meta nfproto ipv6 meta l4proto . th dport vmap @cdnat6",
    "dnat ip to ip daddr . meta l4proto . th dport map @hostdnat4",
    "dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostdnat6",
    "meta nfproto ipv4 dnat ip to meta l4proto . th dport map @dnat4",
    "meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @dnat6",
)
# The base chains hold only these constant rules, so a bootstrap may flush and rewrite them atomically.
NFT_BASE_RULES = {
    "nat-prerouting": _DNAT_RULES,
    "nat-output": _DNAT_RULES,
    "nat-postrouting": ("ct status dnat oifname . ip daddr vmap @hairpin4",
                        "ct status dnat oifname . ip6 daddr vmap @hairpin6",
                        "ct status dnat oifname . ip daddr @hairpinall4 masquerade",
                        "ct status dnat oifname . ip6 daddr @hairpinall6 masquerade",
                        f"ip daddr {MULTICAST[4]} return", f"ip6 daddr {MULTICAST[6]} return",
                        "iifname . ip saddr vmap @masq4", "iifname . ip6 saddr vmap @masq6"),
    "filter-forward": ("jump admin",
                       "ct state established,related oifname . ip daddr @accept4 accept",
                       "ct state established,related oifname . ip6 daddr @accept6 accept",
                       "ct status dnat oifname . ip daddr @acceptdnat4 accept",
                       "ct status dnat oifname . ip6 daddr @acceptdnat6 accept",
                       "iifname . ip saddr @accept4 accept", "iifname . ip6 saddr @accept6 accept"),
    "filter-input": ('iifname != "lo" ip daddr 127.0.0.0/8 ct status ! dnat '
                     "ct state != { established, related } drop",),
}


def nft_bootstrap_text() -> str:
    """(Re)declare the table, its sets, maps and base chains, and rewrite the base chains' constant
    rules: idempotent, safe to race, ~10 ms of kernel work (only when the fast path failed)."""
    t = f"inet {n.NFT_TABLE}"
    out = [NFT_BOOTSTRAP]
    for chain, rules in NFT_BASE_RULES.items():
        out.append(f"flush chain {t} {chain}\n")
        out += [f"add rule {t} {chain} {r}\n" for r in rules]
    return "".join(out)


def nft_add_text(plan: NftPlan, shared: tuple[str, ...] | None = None) -> str:
    """The attachment's conditions chain (flushed and refilled), the shared chains named in shared
    (None: all of the plan's; rewriting one that has rules deletes them: a grace period of wall time)
    and its elements."""
    t, cmt = f"inet {n.NFT_TABLE}", n.comment(plan.key)
    out = []
    rewrite = plan.shared if shared is None else {c: plan.shared[c] for c in shared}
    for chain, own in [*rewrite.items(), *plan.chains.items()]:
        out.append(f"add chain {t} {chain}\nflush chain {t} {chain}\n")
        out += [f"add rule {t} {chain} {r} comment {_quote(d)}\n" for r, d in own]
    out += [f"add element {t} {e.set} {e.text(cmt)}\n" for e in plan.elements]
    return "".join(out)


def nft_delete_text(elements: list[NftElem], chains: list[str], *, ensure: bool,
                    drop: tuple[str, ...] = ()) -> str:
    """Remove elements, then chains. With ensure, each is added first so that an absent one does not
    fail the transaction (nft 1.0.6 has no ``destroy``); elements are deleted by key alone."""
    t = f"inet {n.NFT_TABLE}"
    out = [f"add chain {t} {c}\n" for c in chains] if ensure else []
    for e in elements:
        if ensure:
            out.append(f"add element {t} {e.set} {e.text()}\n")
        out.append(f"delete element {t} {e.set} {{ {e.key} }}\n")
    for c in (*chains, *drop):  # drop: shared chains this DEL leaves unused (refused while in use)
        out.append(f"flush chain {t} {c}\ndelete chain {t} {c}\n")
    return "".join(out)
