"""Host-namespace state snapshots and the "nothing left behind" diff.

A snapshot is a set of one-line items: links, addresses, ``iptables-save``/``ip6tables-save`` (filter and
nat, counters stripped), ``nft list ruleset`` (tables iptables-nft owns are left to iptables-save) and
every file under the IPAM dataDir. ``leftovers()`` compares the state before an attachment's ADD with
the state after its DEL and keeps what the attachment left behind; the shared objects a bridge chain
legitimately keeps are allowed by the rules in ``ALLOWANCES`` (printed in every report).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .hostns import in_ns, ns_json

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

XT_TABLES = {"filter", "nat", "mangle", "raw", "security"}
COUNTERS = re.compile(r"\s*\[\d+:\d+\]$")
NFT_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
BUILTIN_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
# Top-level chains the reference portmap/firewall plugins create once and share between containers.
SHARED_XT_CHAINS = {"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-FORWARD", "CNI-ADMIN"}

ALLOWANCES = (
    "the bridge link named by the conf's `bridge` key, the addresses on it (its gateway address) and link "
    "up/down or promisc flags (shared by every container; the spec and the reference keep it)",
    "IPv6 link-local (fe80::/10) addresses (the kernel adds and removes them by itself)",
    "sysctls such as ip_forward and route_localnet are not compared (host-wide settings, kept by design)",
    "iptables: table headers, built-in chain policies, the shared top-level chains "
    + ", ".join(sorted(SHARED_XT_CHAINS)) + " and any chain a built-in chain jumps to by a rule naming no "
    "attachment (declarations and rules in them); rules in any other new chain are flagged",
    "iptables and nft: any other leftover rule that names no attachment (no container ID, container IP or "
    "host-side interface of it) is a shared rule and is allowed",
    "nft: tables, base chains and chains still jumped to; a leftover regular chain nothing jumps to is flagged",
    "IPAM dataDir: directories and bookkeeping files (`lock`, `last_reserved_ip.*`, indexes) that name no "
    "attachment; lease files (named after an address, host-local layout) are always flagged",
)


@dataclass(frozen=True)
class Snapshot:
    items: frozenset[str]
    bridge: str


@dataclass
class Identity:
    """What identifies one attachment in host state: its container ID, its IPs, its host-side links."""

    container_id: str
    ips: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)

    def pattern(self) -> re.Pattern[str]:
        alts = [re.escape(self.container_id)]
        for ip in self.ips:  # whole addresses only: 10.61.0.2 must not match 10.61.0.20 (but matches 10.61.0.2:80)
            tail = r"(?![0-9a-fA-F:])" if ":" in ip else r"(?!\d|\.\d)"
            alts.append(rf"(?<![\w.:]){re.escape(ip)}{tail}")
        alts += [rf"(?<![\w-]){re.escape(name)}(?![\w-])" for name in self.links]
        return re.compile("|".join(alts))


def _links(ns: str) -> list[str]:
    out = []
    for link in ns_json(ns, ["ip", "-j", "-d", "link", "show"]):
        kind = (link.get("linkinfo") or {}).get("info_kind", "")
        out.append(f"link {link.get('ifname')} kind={kind or '-'} master={link.get('master', '-')}")
    return out


def _addrs(ns: str) -> list[str]:
    out = []
    for link in ns_json(ns, ["ip", "-j", "addr", "show"]):
        for a in link.get("addr_info", []):
            if a.get("scope") == "link" and a.get("family") == "inet6":
                continue
            out.append(f"addr {link.get('ifname')} {a.get('local')}/{a.get('prefixlen')}")
    return out


def _xt(ns: str) -> list[str]:
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        for table in ("filter", "nat"):
            res = in_ns(ns, [tool, "-t", table])
            for line in res.stdout.decode(errors="replace").splitlines():
                if not line or line.startswith("#") or line == "COMMIT":
                    continue
                out.append(f"{tool} {table}: {COUNTERS.sub('', line)}")
    return out


def _nft(ns: str) -> list[str]:
    res = in_ns(ns, ["nft", "list", "ruleset"])
    out: list[str] = []
    stack: list[str] = []
    for raw in res.stdout.decode(errors="replace").splitlines():
        line = NFT_COUNTER.sub("counter", raw.strip())
        if not line:
            continue
        if line.endswith("{"):
            stack.append(line[:-1].strip())
            out.append("nft " + " / ".join(stack))
        elif line == "}":
            if stack:
                stack.pop()
        else:
            out.append("nft " + " / ".join(stack) + ": " + line)
    # Tables iptables-nft manages show up in iptables-save already.
    return [i for i in out if not re.match(r"nft table (ip|ip6) (" + "|".join(XT_TABLES) + r")\b", i)]


def _leases(data_dir: Path | None) -> list[str]:
    if data_dir is None or not data_dir.is_dir():
        return []
    out = []
    for f in sorted(data_dir.rglob("*")):
        rel = f.relative_to(data_dir)
        if f.is_dir():
            out.append(f"ipam dir {rel}")
        else:
            content = f.read_bytes().decode(errors="replace").replace("\r\n", "\\r\\n").replace("\n", "\\n")
            out.append(f"ipam file {rel}: {content[:120]}")
    return out


def take(ns: str, *, bridge: str, data_dir: Path | None) -> Snapshot:
    items = [*_links(ns), *_addrs(ns), *_xt(ns), *_nft(ns), *_leases(data_dir)]
    return Snapshot(frozenset(items), bridge)


def _allowed_ipam(item: str, ident: re.Pattern[str]) -> bool:
    if item.startswith("ipam dir"):
        return True
    rel = item[len("ipam file "):].split(": ", 1)[0]
    name = rel.rsplit("/", 1)[-1]
    if name == "lock" or name.startswith("last_reserved_ip."):
        return True  # the flock target and the round-robin cursor (it names the last address handed out)
    try:
        ipaddress.ip_address(name.replace("_", ":"))
        return False  # a lease file (host-local layout: named after the address)
    except ValueError:
        return not ident.search(item)  # lock, last_reserved_ip.*, indexes: fine unless they name the attachment


def _xt_chain_shared(prefix: str, chain: str, after: Snapshot, ident: re.Pattern[str]) -> bool:
    """Built-in, a known shared chain, or hooked from a built-in chain by a rule naming no attachment."""
    if chain in BUILTIN_CHAINS or chain in SHARED_XT_CHAINS:
        return True
    hook = re.compile(rf"{re.escape(prefix)}: -A ({'|'.join(BUILTIN_CHAINS)}) .*-[jg] {re.escape(chain)}( |$)")
    return any(hook.match(i) and not ident.search(i) for i in after.items)


def _allowed_xt(item: str, after: Snapshot, ident: re.Pattern[str]) -> bool:
    prefix, body = item.split(": ", 1)
    if body.startswith("*"):
        return True
    m = re.match(r"[:]?(?:-A )?(\S+)", body)
    return m is not None and _xt_chain_shared(prefix, m.group(1), after, ident)


def _allowed_nft(item: str, after: Snapshot) -> bool:
    m = re.match(r"nft (table \S+ \S+) / chain (\S+)$", item)
    if m is None:
        return True  # a table, a rule naming no attachment, a chain property
    table, chain = m.groups()
    base = any(i.startswith(f"nft {table} / chain {chain}: type ") for i in after.items)
    jumped = any(i.startswith(f"nft {table} / ") and re.search(rf"\b(jump|goto) {re.escape(chain)}\b", i)
                 for i in after.items)
    return base or jumped


def _allowed(item: str, after: Snapshot, ident: re.Pattern[str]) -> bool:
    if re.match(rf"(link|addr) {re.escape(after.bridge)} ", item):
        return True
    if item.startswith("ipam "):
        return _allowed_ipam(item, ident)
    if ident.search(item):
        return False
    if item.startswith(("iptables-save", "ip6tables-save")):
        return _allowed_xt(item, after, ident)
    if item.startswith("nft "):
        return _allowed_nft(item, after)
    return False  # links and addresses other than the bridge's


def leftovers(before: Snapshot, after: Snapshot, idents: Iterable[Identity]) -> tuple[list[str], list[str]]:
    """(problems, allowed): items added since ``before`` that are leaks vs shared objects, plus removals."""
    alts = [i.pattern().pattern for i in idents]
    ident = re.compile("|".join(alts)) if alts else re.compile(r"(?!x)x")
    problems: list[str] = []
    allowed: list[str] = []
    for item in sorted(after.items - before.items):
        (allowed if _allowed(item, after, ident) else problems).append(item)
    nothing = re.compile(r"(?!x)x")
    for item in sorted(before.items - after.items):
        if not _allowed(item, before, nothing):  # e.g. another attachment's lease or rule went away
            problems.append(f"removed: {item}")
    return problems, allowed
