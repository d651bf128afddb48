"""The nftables backend: one ``nft -f -`` transaction per verb in ``table inet cni_ignite``.

Layout 2 (rules.py): an attachment is a handful of elements in shared sets and maps (plus one chain
``c-K`` when it has conditions); the base chains hold constant rules, and the m-/h- chains (masquerade
and hairpin rules of one subnet) are shared by every attachment that needs the same text. Nothing on
the ADD/DEL path lists anything, and no transaction deletes anything it does not have to (a deletion
costs an RCU grace period of wall time).

ADD sends its elements, its own chain, and a shared chain only when the state dir says it is that
chain's first user (``state.shared_ref``), assuming the table exists. When that fails, one transaction
(re)declares the table, its sets, maps and base chains with ``add`` (idempotent, safe to race),
rewrites the base chains' constant rules and the shared chains, and adds the elements; if that fails
too and no state record named earlier rules, rules of the key left by a lost record are swept (a
listing: rare path) and the transaction is retried once.

DEL removes the elements and chain a state record describes, and a shared chain when the state dir
says it was its last user (``state.shared_unref``): one transaction, exact, touching nothing else.
The kernel refuses to delete a chain an element still jumps to (EBUSY: a record-less user), then the
DEL is retried without it; when an element is absent already, with each added first (nft 1.0.6 has no
``destroy``). A layout-1 record (per-attachment chains, nft_legacy) is removed with the layout-1 text.
Without a record, or when all that fails, DEL lists the table (``nft -j list table``, O(attachments):
the rare path) and removes every element whose comment names the key, every verdict-map element that
jumps to one of the key's chains, and those chains. When a DEL removed a layout-1 attachment, it lists
the table's chains and, once no layout-1 chain is left, removes the layout-1 base chains and maps. GC
removes shared chains left unused (e.g. by a DEL that lost a race).

A ``Joint`` (base.py: the bridge port's guard and macspoofchk text) rides in ADD's fast-path transaction
and DEL's first attempt: the attachment's whole nft side is one ``nft`` exec per verb, and a DEL's
netlink socket, which waits for an RCU grace period on close once it deleted elements (the kernel's
NETLINK_URELEASE -> nf_tables_trans_destroy_flush_work -> synchronize_rcu, ~10 ms of wall time), is
closed once. When that transaction fails the backend goes on without it and ``joint.sent`` stays False.
"""

from __future__ import annotations

from .. import _json as json
from ..errors import IOFailure
from . import naming as n
from . import state
from ._exec import RuleToolFailed, checked, run, run_all
from .rules import NFT_BASE_RULES, NftElem, nft_add_text, nft_bootstrap_text, nft_delete_text, nft_plan

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from .base import Attachment, FirewallConfig, Joint

NAME = "nftables"
TABLE = f"inet {n.NFT_TABLE}"
LAYOUT = 2


def _apply(text: str, what: str) -> None:
    checked(NAME, ["nft", "-f", "-"], text, what)


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


def _part(value: object, kind: str) -> str:
    """One field of an element key or map value in nft's JSON → the text nft parses."""
    if isinstance(value, dict):
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            return f"{value['range'][0]}-{value['range'][1]}"
        if "concat" in value:
            return " . ".join(_part(v, "") for v in value["concat"])
        for verdict in ("jump", "goto"):
            if verdict in value:
                return f"{verdict} {value[verdict]['target']}"
    return f'"{value}"' if kind == "ifname" else str(value)


def _key_text(val: object, types: list[str]) -> str:
    parts = val["concat"] if isinstance(val, dict) and "concat" in val else [val]
    return " . ".join(_part(v, types[i] if i < len(types) else "") for i, v in enumerate(parts))


class Listed:
    """Elements (with their comments) and chains of one table listing."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.elements: list[tuple[NftElem, str]] = []  # (element, comment)
        self.chains: set[str] = set()
        self.rules: list[dict[str, Any]] = []
        for item in items:
            if "chain" in item:
                self.chains.add(item["chain"]["name"])
            elif "rule" in item:
                self.rules.append(item["rule"])
            for kind in ("set", "map"):
                s = item.get(kind)
                if not s:
                    continue
                types = s["type"] if isinstance(s["type"], list) else [s["type"]]
                for raw in s.get("elem", []):
                    key, data = (raw[0], raw[1]) if kind == "map" else (raw, None)
                    comment = ""
                    if isinstance(key, dict) and "elem" in key:
                        comment, key = key["elem"].get("comment", ""), key["elem"]["val"]
                    data_text = "" if data is None else _part(data, "")
                    self.elements.append((NftElem(s["name"], _key_text(key, types), data_text), comment))

    def of_key(self, key: str) -> tuple[list[NftElem], list[str]]:
        """The elements and chains of key: by comment, or (verdict maps) by the chain they jump to."""
        own = {*n.nft_chains(key), n.nft_cond_chain(key)}
        cmt = n.comment(key)
        elems = [e for e, c in self.elements if c == cmt or e.data.split(" ")[-1] in own]
        return elems, sorted(own & self.chains)


def _joint(joint: Joint | None, text: str) -> bool:
    """Send `text` with the joint part in one transaction when there is one not sent yet; True when it
    went (``joint.sent``). A failure is no error: the caller retries its own part without it."""
    if joint is None or joint.sent or not joint.text:
        return False
    joint.sent = run(NAME, ["nft", "-f", "-"], joint.text + text).ok
    return joint.sent


def _shared_name(name: str) -> bool:
    return name[:2] in {"m-", "h-"} and len(name) == 2 + n.KEY_LEN


def _drop_unused(chains: list[str]) -> None:
    """Delete each shared chain unless an element still jumps to it (the kernel refuses with EBUSY).
    One ``nft`` per chain, side by side; a failure is the expected "in use"."""
    if chains:
        run_all(NAME, [["nft", f"flush chain {TABLE} {c}; delete chain {TABLE} {c}"] for c in chains])


def _unref(state_dir: str, chains: Iterable[str], key: str, failed: list[str]) -> tuple[str, ...]:
    """The shared chains of `chains` that key was the last registered user of (``state.shared_unref``). A
    registration that cannot be removed keeps its chain (in use) and goes to `failed`: the DEL carries on
    with the rest and then fails (:func:`_raise_unref_failed`), so that it is repeated."""
    last = []
    for c in chains:
        try:
            if state.shared_unref(state_dir, c, key):
                last.append(c)
        except IOFailure as exc:
            failed.append(str(exc))
    return tuple(last)


def _raise_unref_failed(failed: list[str]) -> None:
    if failed:
        raise IOFailure("nft DEL incomplete: a shared chain registration is left (a repeated DEL removes it)",
                        "; ".join(failed))


def _legacy_left(chains: set[str]) -> bool:
    from .nft_legacy import is_legacy_chain

    return any(is_legacy_chain(c) for c in chains)


class NftablesBackend:
    name = NAME
    layout = LAYOUT

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def apply(self, att: Attachment, cfg: FirewallConfig, *, fresh: bool = False,
              joint: Joint | None = None) -> None:
        plan = nft_plan(att, cfg)
        what = f"nft ADD for {att.owner.key}"
        if not plan.elements:
            return
        # the shared chains this ADD is the first user of (state-dir hint); the others exist already
        new = tuple(c for c in plan.shared if state.shared_ref(self.state_dir, c, plan.key))
        fast = nft_add_text(plan, new)
        if _joint(joint, fast):  # fast path with the guard's elements: one nft for the attachment
            return
        try:
            _apply(fast, what)  # fast path: the table exists
            return
        except RuleToolFailed:
            pass
        text = nft_add_text(plan)
        try:
            _apply(nft_bootstrap_text() + text, what)
        except RuleToolFailed:
            if not fresh:
                raise
            self.remove_by_key(att.owner.key)  # e.g. a map element of this key with other data (lost record)
            _apply(nft_bootstrap_text() + text, what)

    def remove_exact(self, att: Attachment, cfg: FirewallConfig, layout: int = LAYOUT,
                     joint: Joint | None = None) -> None:
        if layout == 1:
            self._remove_legacy(att, cfg)
            return
        plan = nft_plan(att, cfg)
        if not plan.chains and not plan.elements:
            return
        chains = list(plan.chains)
        unref_failed: list[str] = []
        last = _unref(self.state_dir, plan.shared, plan.key, unref_failed)
        # 1. the common case: everything is there (and, when the state dir says this was the last user
        # of a shared chain, that chain goes too); 2. the chain is in use after all (a record-less user);
        # 3. something is absent already: each element is added first; 4. list the table.
        # The first attempt carries the guard's removal (joint): one nft, one grace period per DEL; when
        # that fails, the attempts go on without it (the caller removes the guard on its own).
        attempts = [(False, last), (False, ())] if last else [(False, ())]
        for i, (ensure, drop) in enumerate([*attempts, (True, ())]):
            text = nft_delete_text(plan.elements, chains, ensure=ensure, drop=drop)
            if not (i == 0 and _joint(joint, text)):
                try:
                    _apply(text, "nft DEL")
                except RuleToolFailed:
                    continue
            if last and not drop:  # one of them is in use after all: drop the others one by one
                _drop_unused(list(last))
            break
        else:
            self.remove_by_key(att.owner.key)
        _raise_unref_failed(unref_failed)

    def _remove_legacy(self, att: Attachment, cfg: FirewallConfig) -> None:
        from . import nft_legacy

        plan = nft_legacy.nft_plan(att, cfg)
        if plan.chains or plan.elements:
            try:
                _apply(nft_legacy.nft_delete_text(plan.elements, list(n.nft_chains(att.owner.key)), ensure=True),
                       "nft DEL (layout 1)")
            except RuleToolFailed:
                self.remove_by_key(att.owner.key)
                return
        self._cleanup_legacy()

    def _cleanup_legacy(self) -> None:
        """Once no layout-1 chain is left, remove layout 1's base chains and maps (lists chains only:
        runs after layout-1 DELs, which end when the last layout-1 attachment is gone)."""
        from .nft_legacy import LEGACY_BASE_CHAINS, LEGACY_CLEANUP

        res = run(NAME, ["nft", "-j", "list", "chains", "inet"])
        if not res.ok:
            return
        chains = {c["chain"]["name"] for c in json.loads(res.stdout or b"{}").get("nftables", [])
                  if "chain" in c and c["chain"].get("table") == n.NFT_TABLE}
        if not _legacy_left(chains) and chains.intersection(LEGACY_BASE_CHAINS):
            run(NAME, ["nft", "-f", "-"], LEGACY_CLEANUP)  # a concurrent DEL may have done it: ignore

    def remove_by_key(self, key: str) -> None:
        items = list_table()
        if items is None:
            return
        listed = Listed(items)
        elements, chains = listed.of_key(key)
        if elements or chains:
            _apply(nft_delete_text(elements, chains, ensure=False), f"nft DEL for {key}")
        used = {e.data.split(" ")[-1] for e in elements if _shared_name(e.data.split(" ")[-1])}
        used.update(state.shared_chains_of(self.state_dir, key))  # an earlier DEL may have lost the elements
        unref_failed: list[str] = []
        _drop_unused(list(_unref(self.state_dir, sorted(used), key, unref_failed)))
        if any(c in n.nft_chains(key) for c in chains):
            self._cleanup_legacy()
        _raise_unref_failed(unref_failed)

    def _legacy_problems(self, att: Attachment, cfg: FirewallConfig) -> list[str]:
        """A layout-1 attachment: its chains' rules (by comment); a new ADD moves it to layout 2."""
        from . import nft_legacy

        plan = nft_legacy.nft_plan(att, cfg)
        try:
            items = list_table()
        except RuleToolFailed as exc:
            return [str(exc)]
        have = {(r["chain"], r.get("comment", "")) for r in Listed(items or []).rules}
        return [f"missing {desc} ({NAME}, layout 1)" for chain, rules in plan.chains.items() for _, desc in rules
                if (chain, desc[:127].replace('"', "'")) not in have]

    def prune(self) -> None:
        """Remove the shared m-/h- chains no element jumps to any more (GC: lists our chains; a DEL
        whose attempt lost a race with another DEL leaves one behind)."""
        res = run(NAME, ["nft", "-j", "list", "chains", "inet"])
        if not res.ok:
            return
        for item in json.loads(res.stdout or b"{}").get("nftables", []):
            chain = item.get("chain", {})
            name = chain.get("name", "")
            if chain.get("table") == n.NFT_TABLE and _shared_name(name):
                _drop_unused([name])

    def problems(self, att: Attachment, cfg: FirewallConfig, layout: int = LAYOUT) -> list[str]:
        if layout == 1:
            return self._legacy_problems(att, cfg)
        plan = nft_plan(att, cfg)
        if not plan.chains and not plan.elements:
            return []
        try:
            items = list_table()
        except RuleToolFailed as exc:
            return [str(exc)]
        if items is None:
            return [f"missing table {TABLE} ({NAME})"]
        listed = Listed(items)
        have = {(r["chain"], r.get("comment", "")) for r in listed.rules}
        counts: dict[str, int] = {}
        for r in listed.rules:
            counts[r["chain"]] = counts.get(r["chain"], 0) + 1
        out = [f"missing {desc} in {chain} ({NAME})" for chain, rules in [*plan.shared.items(), *plan.chains.items()]
               for _, desc in rules if (chain, desc[:127].replace('"', "'")) not in have]
        elements = {e for e, _ in listed.elements}
        out += [f"missing {plan.descs[e]} ({NAME})" for e in plan.elements if e not in elements]
        out += [f"base chain {c} has {counts.get(c, 0)} of its {len(rules)} rules ({NAME})"
                for c, rules in NFT_BASE_RULES.items() if counts.get(c, 0) < len(rules)]
        return out
