"""The iptables backend: one ``iptables-restore --noflush --wait`` (``ip6tables-restore`` for IPv6)
per family per verb; its input holds the nat and filter tables. Before it, an ADD lists the built-in
chains whose entry rules it needs (``iptables -S <chain>``, side by side; flat in the number of
attachments, unlike a ``-C`` line in the batch, which makes iptables-nft fetch every rule of the table).
When one is missing, or the batch fails (shared chains absent: first ADD), the missing shared chains
and entry rules are created (one ``iptables-save -t`` per table, under a lock, tolerating a concurrent
creator, never flushing a shared chain) and the batch is retried once. DEL removes exactly the rules a
state record describes, or, without one (or if that fails), what our own shared chains reference for
the attachment's key (``iptables -S <our chain>``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING

from ..errors import CniError
from . import naming as n
from ._exec import RuleToolFailed, checked, run, run_all
from .rules import (
    IPT_BOOTSTRAP_CHAINS,
    SHARED_IPT,
    entries_missing,
    entry_listings,
    iptables_add_text,
    iptables_delete_text,
    iptables_plan,
    iptables_repair_text,
    norm_spec,
    saved_rules,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .base import Attachment, FirewallConfig
    from .rules import IptPlan

NAME = "iptables"


def _tool(family: int, what: str) -> str:
    return f"{'ip6' if family == 6 else 'ip'}tables{what}"


def _restore(family: int, text: str) -> None:
    checked(NAME, [_tool(family, "-restore"), "--noflush", "--wait"], text, f"{_tool(family, '-restore')}")


class IptablesBackend:
    name = NAME
    layout = 1

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def apply(self, att: Attachment, cfg: FirewallConfig, *, fresh: bool = False) -> None:
        """fresh: no state record named earlier rules of this key. Then the attachment's first own chain
        is listed too (flat); if it exists, rules of an ADD whose record was lost are still in the shared
        chains and are removed by key first (appending them again would duplicate them)."""
        plans = [p for p in (iptables_plan(att, cfg, 4), iptables_plan(att, cfg, 6)) if p.rules]
        wanted = [(p.family, table, chain) for p in plans for table, chain in entry_listings(p)]
        if fresh:
            wanted += [(p.family, "nat", p.own_chains["nat"][0]) for p in plans]
        listed = _list_chains(wanted)
        for plan in plans:
            family = plan.family
            if fresh and listed[(family, "nat", plan.own_chains["nat"][0])] is not None:
                self.remove_by_key(att.owner.key, families=(family,))
            if entries_missing(plan, {(t, c): text for (f, t, c), text in listed.items() if f == family}):
                self.bootstrap(family)  # first ADD on the host, or someone flushed a built-in chain
            text = "".join(iptables_add_text(plan, t) for t in plan.tables())
            try:
                _restore(family, text)
            except RuleToolFailed:
                self.bootstrap(family)
                _restore(family, text)

    # ---------------------------------------------------------------------------------------- bootstrap
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            os.makedirs(self.state_dir, mode=0o755, exist_ok=True)
            fd = os.open(os.path.join(self.state_dir, "iptables.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield  # no lock: the retry below still tolerates a concurrent creator
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def bootstrap(self, family: int) -> None:
        """Create whichever shared chains and entry rules are missing; never flush a shared chain."""
        with self._lock():
            for attempt in range(3):
                text = "".join(iptables_repair_text(family, table, self._save(family, table))
                               for table in IPT_BOOTSTRAP_CHAINS)
                if not text:
                    return
                try:
                    _restore(family, text)
                    return
                except RuleToolFailed:
                    if attempt == 2:
                        raise

    def _save(self, family: int, table: str) -> str:
        tool = _tool(family, "-save")
        return checked(NAME, [tool, "-t", table], what=f"{tool} -t {table}").stdout.decode(errors="replace")

    # ------------------------------------------------------------------------------------------- delete
    def remove_exact(self, att: Attachment, cfg: FirewallConfig, layout: int = 1) -> None:
        """Remove the rules a state record describes; fall back to remove_by_key when that fails."""
        del layout  # one layout so far
        for family in (4, 6):
            plan = iptables_plan(att, cfg, family)
            if not plan.rules:
                continue
            text = "".join(iptables_delete_text(t, _shared_specs(plan, t), plan.own_chains.get(t, []))
                           for t in plan.tables())
            try:
                _restore(family, text)
            except RuleToolFailed:
                self.remove_by_key(att.owner.key, families=(family,))

    def remove_by_key(self, key: str, families: tuple[int, ...] = (4, 6)) -> None:
        """Remove whatever our shared chains hold for key, and key's own chains (lists only our chains)."""
        cmt, own = n.comment(key), n.ipt_chains(key)
        for family in families:
            text = ""
            for table, shared in SHARED_IPT.items():
                found, any_chain = [], False
                for chain in shared:
                    res = run(NAME, [_tool(family, ""), "-w", "-t", table, "-S", chain])
                    if not res.ok:
                        err = res.stderr.decode(errors="replace").strip()
                        if chain_absent(err):
                            continue
                        raise RuleToolFailed(f"{_tool(family, '')} -t {table} -S {chain} failed ({NAME})", err)
                    any_chain = True
                    for line in res.stdout.decode().splitlines():
                        if line.startswith("-A ") and (cmt in line or any(f"-j {c}" in line for c in own)):
                            found.append(line[3:])
                if any_chain:
                    text += iptables_delete_text(table, found, list(own) if table == "nat" else [])
            if text:
                _restore(family, text)

    def prune(self) -> None:
        """Nothing is shared per network in this layout."""

    # -------------------------------------------------------------------------------------------- check
    def problems(self, att: Attachment, cfg: FirewallConfig) -> list[str]:
        out: list[str] = []
        for family in (4, 6):
            plan = iptables_plan(att, cfg, family)
            for table in plan.tables():
                out += _table_problems(family, table, plan)
        return out


# What iptables says when a chain (or its table) does not exist: legacy "No chain/target/match by that
# name" ("Table does not exist" without the table), iptables-nft 1.8.x "chain `X' in table `t' is
# incompatible, use 'nft' tool." Any other failure (permission, lock, missing module) is an error.
_ABSENT = ("No chain/target/match by that name", "Table does not exist", "' is incompatible, use 'nft' tool")


def chain_absent(stderr: str) -> bool:
    return any(text in stderr for text in _ABSENT)


def _list_chains(chains: list[tuple[int, str, str]]) -> dict[tuple[int, str, str], str | None]:
    """``iptables -S`` / ``ip6tables -S`` of each (family, table, chain), run side by side. The chains
    are constant-size, so the cost does not grow with attachments (iptables-nft fetches only the listed
    chain; a ``-C`` line in the restore batch would fetch every rule of the table: +20 ms at 500
    attachments, measured). None when a listing fails (absent chain, or any failure: the repair that
    follows lists again and reports real errors)."""
    done = run_all(NAME, [[_tool(f, ""), "-w", "-t", t, "-S", c] for f, t, c in chains])
    return {key: res.stdout.decode(errors="replace") if res.ok else None for key, res in zip(chains, done, strict=True)}


def _shared_specs(plan: IptPlan, table: str) -> list[str]:
    shared = SHARED_IPT[table]
    return [f"{r.chain} {r.spec}" for r in plan.rules if r.table == table and r.chain in shared]


def _table_problems(family: int, table: str, plan: IptPlan) -> list[str]:
    tool = _tool(family, "-save")
    try:
        res = checked(NAME, [tool, "-t", table], what=f"{tool} -t {table}")
    except CniError as exc:
        return [f"cannot list {table} ({tool}): {exc}"]
    _, have = saved_rules(res.stdout.decode(errors="replace"))
    fam = f"IPv{family}"
    out = [f"missing {r.desc} ({NAME}, {fam})" for r in plan.rules
           if r.table == table and (r.chain, norm_spec(r.spec)) not in have]
    out += [f"missing {e.desc} ({NAME}, {fam})" for e in plan.entries
            if e.table == table and (e.chain, norm_spec(e.spec)) not in have]
    return out
