"""The lease table of a host-local layout dataDir: shared by `cni-ignite leases` and `cni-ignite status`.

Not on any plugin's path: it may use filelock (the same flock the plugins and Go host-local take) and netaddr.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, NamedTuple, TextIO

from .ipam.store import INDEX_DIR

if TYPE_CHECKING:
    from .reserve import LeaseRow


def lease_rows(data_dir: str, network: str) -> list[LeaseRow]:
    """Every address of `network` that is in use, held, remembered or reserved (see cni_ignite.reserve)."""
    from .reserve import lease_rows as rows_of

    return rows_of(data_dir, network)


def _state(row: LeaseRow) -> str:
    if row.state == "held":
        return "held until " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.until))
    return row.state + (" (reserved)" if row.reserved and row.state == "in use" else "")


def print_leases(data_dir: str, networks: list[str], out: TextIO) -> int:
    if not networks:
        try:
            networks = sorted(n for n in os.listdir(data_dir)
                              if n != INDEX_DIR and os.path.isdir(os.path.join(data_dir, n)))
        except FileNotFoundError:
            out.write(f"no IPAM data in {data_dir}\n")
            return 0
    for network in networks:
        if not os.path.isdir(os.path.join(data_dir, network)):
            out.write(f"network {network}: no leases ({os.path.join(data_dir, network)} does not exist)\n")
            continue
        rows = lease_rows(data_dir, network)
        used = [r for r in rows if r.state == "in use"]
        out.write(f"network {network}: {len(used)} in use, {len(rows) - len(used)} held/remembered/reserved "
                  f"in {os.path.join(data_dir, network)}\n")
        if rows:
            heads = ("ADDRESS", "STATE", "OWNER", "IFNAME", "CONTAINER", "MAC")
            table = [(r.address, _state(r), r.owner or "-", r.ifname, r.container or "-", r.mac or "-") for r in rows]
            widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(heads)]
            out.write("  " + "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip() + "\n")
            for cells in table:
                out.write("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n")
            if used:
                out.write(f"  leased blocks: {leased_blocks([r.address for r in used])}\n")
    return 0


def human_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def leased_blocks(addresses: list[str]) -> str:
    """The leased addresses as compact CIDR blocks (netaddr's IPSet does the merging)."""
    import netaddr

    cidrs = netaddr.IPSet(addresses).iter_cidrs()
    return ", ".join(str(c) for c in cidrs[:8]) + (f" (+{len(cidrs) - 8} more)" if len(cidrs) > 8 else "")


# ------------------------------------------------------------------------------- Go chain leftovers

GO_CHAIN_MAX = 28  # containernetworking/plugins pkg/utils FormatChainNameWithPrefix


def go_chain(network: str, container_id: str, prefix: str = "") -> str:
    """The chain the Go plugins name for an attachment: "CNI-" + prefix + hex(sha512(network + id)), cut to 28."""
    import hashlib

    return f"CNI-{prefix}{hashlib.sha512((network + container_id).encode()).hexdigest()}"[:GO_CHAIN_MAX]


def _go_comment(network: str, container_id: str) -> str:
    return f"name: {json.dumps(network)} id: {json.dumps(container_id)}"  # Go's %q for plain ASCII ids


class GoRules(NamedTuple):
    """One attachment's rules left by the Go bridge (ipMasq), portmap and firewall plugins."""

    container_id: str
    address: str  # without prefix length
    deletes: list[list[str]]  # iptables argument lists, in order: jumps first, then flush and delete chains


def _save_rules(program: str, table: str) -> list[list[str]]:
    import shlex
    import subprocess

    res = subprocess.run([f"{program}-save", "-t", table], capture_output=True, timeout=60, check=False)
    if res.returncode != 0:
        return []
    return [shlex.split(line)[1:] for line in res.stdout.decode().splitlines() if line.startswith("-A ")]


def _opt(rule: list[str], name: str) -> str:
    return rule[rule.index(name) + 1] if name in rule[:-1] else ""


def go_leftovers(program: str, network: str, live: set[tuple[str, str]]) -> list[GoRules]:
    """Attachments of `network` whose Go-chain rules are still there but whose lease (address, container) is gone.

    Found exactly: a POSTROUTING jump commented ``name: "<network>" id: "<id>"`` to the chain Go names from
    (network, id); its ``-s`` is the address. With it go portmap's ``CNI-DN-`` chain and its
    ``CNI-HOSTPORT-DNAT`` jump (commented ``dnat name: ...``), and the firewall plugin's two ``CNI-FORWARD``
    accepts for that address."""
    nat = _save_rules(program, "nat")
    found: dict[str, GoRules] = {}
    for rule in nat:
        if rule[0] != "POSTROUTING" or not _opt(rule, "--comment").startswith("name: "):
            continue
        comment, target, source = _opt(rule, "--comment"), _opt(rule, "-j"), _opt(rule, "-s")
        cid = _comment_id(comment, network)
        if cid is None or target != go_chain(network, cid) or not source:
            continue
        address = source.split("/")[0]
        if (address, cid) in live:
            continue
        found[cid] = GoRules(cid, address, [["-t", "nat", "-D", *rule], ["-t", "nat", "-F", target],
                                             ["-t", "nat", "-X", target]])
    for rule in nat:
        comment = _opt(rule, "--comment")
        if rule[0] != "CNI-HOSTPORT-DNAT" or not comment.startswith("dnat "):
            continue
        cid = _comment_id(comment.removeprefix("dnat "), network)
        if cid in found and _opt(rule, "-j") == go_chain(network, cid, "DN-"):
            chain = go_chain(network, cid, "DN-")
            found[cid].deletes[:0] = [["-t", "nat", "-D", *rule]]
            found[cid].deletes.extend([["-t", "nat", "-F", chain], ["-t", "nat", "-X", chain]])
    by_address = {g.address: g for g in found.values()}
    leased = {a for a, _ in live}
    for rule in _save_rules(program, "filter"):
        if rule[0] != "CNI-FORWARD":
            continue
        address = (_opt(rule, "-s") or _opt(rule, "-d")).split("/")[0]
        if address in by_address and address not in leased and rule[-2:] == ["-j", "ACCEPT"] and (
                rule[1:] in (["-s", rule[2], "-j", "ACCEPT"],
                             ["-d", rule[2], "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])):
            by_address[address].deletes.insert(0, ["-t", "filter", "-D", *rule])
    return sorted(found.values())


def _comment_id(comment: str, network: str) -> str | None:
    prefix = f"name: {json.dumps(network)} id: "
    if not comment.startswith(prefix):
        return None
    try:
        cid = json.loads(comment[len(prefix):])
    except ValueError:
        return None
    return cid if isinstance(cid, str) and comment == _go_comment(network, cid) else None


def live_leases(data_dir: str, network: str) -> set[tuple[str, str]]:
    if not os.path.isdir(os.path.join(data_dir, network)):
        return set()
    return {(r.address, r.container) for r in lease_rows(data_dir, network) if r.state == "in use"}


def gc_go_rules(network: str, data_dir: str, out: TextIO, *, dry_run: bool = False) -> int:
    """`cni-ignite ignite-gc`: remove what the Go chain (Ignite's default network before `install
    --take-over-ignite`) installed for attachments that have since been released (our DEL freed the lease and
    the veth; the Go rules are not ours to find on DEL). Attachments still leased keep their rules."""
    import subprocess

    live = live_leases(data_dir, network)
    failed = 0
    total = 0
    for program in ("iptables", "ip6tables"):
        for leftover in go_leftovers(program, network, live):
            total += 1
            out.write(f"{program}: {network} {leftover.container_id} {leftover.address}: "
                      f"{'would remove' if dry_run else 'removing'} {len(leftover.deletes)} rule(s)/chain op(s)\n")
            for argv in leftover.deletes:
                out.write(f"  {program} {' '.join(argv)}\n")
                if not dry_run:
                    res = subprocess.run([program, "-w", *argv], capture_output=True, timeout=60, check=False)
                    if res.returncode != 0:
                        failed += 1
                        out.write(f"  failed: {res.stderr.decode(errors='replace').strip()}\n")
    if total == 0:
        out.write(f"no rules of released {network} attachments left by the Go plugins\n")
    return 1 if failed else 0
