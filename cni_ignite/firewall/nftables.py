"""The nftables backend: one ``nft -f -`` transaction per verb in ``table inet cni_ignite``.

An ADD first tries the attachment's part alone (its own chains flushed and refilled, the verdict-map
elements that lead to them added), assuming the table exists. When that fails, one transaction
(re)declares the table, its maps and base chains with ``add`` (idempotent), rewrites the base chains'
constant rules and adds the attachment: concurrent first ADDs cannot conflict. The admin chain is
declared, never flushed. DEL removes the
elements and chains a state record describes (each added first, as nft 1.0.6 has no ``destroy``), or,
without a record or when that fails, what ``nft -j list table inet cni_ignite`` shows for the key.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import naming as n
from ._exec import RuleToolFailed, checked, run
from .rules import NFT_BASE_RULES, NftElement, nft_add_text, nft_delete_text, nft_plan

if TYPE_CHECKING:
    from .base import Attachment, FirewallConfig

NAME = "nftables"
TABLE = f"inet {n.NFT_TABLE}"


def _apply(text: str, what: str) -> None:
    checked(NAME, ["nft", "-f", "-"], text, what)


def _key_text(key: object) -> str:
    if isinstance(key, dict) and "concat" in key:
        return " . ".join(str(k) for k in key["concat"])
    return str(key)


def list_table() -> list[dict[str, Any]] | None:
    """Our table as nft JSON objects, or None when it does not exist."""
    res = run(NAME, ["nft", "-j", "list", "table", "inet", n.NFT_TABLE])
    if not res.ok:
        err = res.stderr.decode(errors="replace")
        if "No such file or directory" in err:
            return None
        raise RuleToolFailed(f"nft list table {TABLE} failed", err.strip())
    items: list[dict[str, Any]] = json.loads(res.stdout or b"{}").get("nftables", [])
    return items


def _elements(items: list[dict[str, Any]]) -> list[NftElement]:
    out = []
    for item in items:
        m = item.get("map")
        if not m:
            continue
        for key, verdict in m.get("elem", []):
            jump = verdict.get("jump") or verdict.get("goto") if isinstance(verdict, dict) else None
            target = jump.get("target") if isinstance(jump, dict) else None
            if isinstance(target, str):
                out.append(NftElement(m["name"], _key_text(key), target))
    return out


class NftablesBackend:
    name = NAME

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def apply(self, att: Attachment, cfg: FirewallConfig, *, fresh: bool = False) -> None:
        """Fast path: the table exists. Else one transaction that also declares it (safe to race).
        Idempotent (own chains flushed and refilled, elements added), so fresh changes nothing here."""
        del fresh
        plan = nft_plan(att, cfg)
        try:
            _apply(nft_add_text(plan, bootstrap=False), f"nft ADD for {att.owner.key}")
        except RuleToolFailed:
            _apply(nft_add_text(plan), f"nft ADD for {att.owner.key}")

    def remove_exact(self, att: Attachment, cfg: FirewallConfig) -> None:
        plan = nft_plan(att, cfg)
        if not plan.chains and not plan.elements:
            return
        try:
            _apply(nft_delete_text(plan.elements, list(n.nft_chains(att.owner.key)), ensure=True), "nft DEL")
        except RuleToolFailed:
            self.remove_by_key(att.owner.key)

    def remove_by_key(self, key: str) -> None:
        items = list_table()
        if items is None:
            return
        own = set(n.nft_chains(key))
        elements = [e for e in _elements(items) if e.chain in own]
        chains = [c["chain"]["name"] for c in items if "chain" in c and c["chain"]["name"] in own]
        if elements or chains:
            _apply(nft_delete_text(elements, chains, ensure=False), f"nft DEL for {key}")

    def problems(self, att: Attachment, cfg: FirewallConfig) -> list[str]:
        plan = nft_plan(att, cfg)
        if not plan.chains:
            return []
        try:
            items = list_table()
        except RuleToolFailed as exc:
            return [str(exc)]
        if items is None:
            return [f"missing table {TABLE} ({NAME})"]
        have = {(r["rule"]["chain"], r["rule"].get("comment", "")) for r in items if "rule" in r}
        counts: dict[str, int] = {}
        for r in items:
            if "rule" in r:
                counts[r["rule"]["chain"]] = counts.get(r["rule"]["chain"], 0) + 1
        out = [f"missing {desc} ({NAME})" for chain, rules in plan.chains.items() for _, desc in rules
               if (chain, desc[:127].replace('"', "'")) not in have]
        elements = set(_elements(items))
        out += [f"missing map element {e.map} {{ {e.key} : jump {e.chain} }} ({NAME})"
                for e in plan.elements if e not in elements]
        out += [f"base chain {c} has {counts.get(c, 0)} of its {len(rules)} rules ({NAME})"
                for c, rules in NFT_BASE_RULES.items() if counts.get(c, 0) < len(rules)]
        return out
