"""The iptables backend: one ``iptables-restore --noflush --wait`` (``ip6tables-restore`` for IPv6)
per family per verb; its input holds the nat and filter tables.

Layout 2: the rules an attachment puts into a shared chain go into one of its 16 bucket sub-chains
(by the key's first hex digit). iptables-nft reads only the chains a batch names (measured: a ``-D`` in
a chain of 3,000 rules costs ~17 ms of CPU, in a small chain beside it ~1 ms), so a DEL's ``-D`` reads
1/16 of the shared rules; ipset (``-m set``) would make it flat but needs the ``ipset`` tool, which is
not installed by default. An ADD lists nothing: its batch ``-N``'s the key's own chains (fails when
they exist: rules of a lost record) and ``-C``'s the entry rules in built-in chains (fails when one was
flushed). When the batch fails, rules of the key are swept, the missing shared chains and entry rules
are created (one ``iptables-save -t`` per table, under a lock, tolerating a concurrent creator, never
flushing a shared chain) and the batch is retried once. DEL removes exactly the rules a state record
describes (layout 1 records: in the shared chains themselves), or, without one (or if that fails),
what the shared chains and the key's buckets reference for the key (``iptables -S <chain>``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from ..errors import CniError
from . import naming as n
from ._exec import RuleToolFailed, checked, run_all
from .rules import (
    IPT_BOOTSTRAP_CHAINS,
    IPT_LAYOUT,
    SHARED_IPT,
    iptables_add_text,
    iptables_delete_text,
    iptables_plan,
    iptables_repair_text,
    norm_spec,
    saved_rules,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .base import Attachment, FirewallConfig, Joint
    from .rules import IptPlan

NAME = "iptables"


def _tool(family: int, what: str) -> str:
    return f"{'ip6' if family == 6 else 'ip'}tables{what}"


def _restore(family: int, text: str) -> None:
    checked(NAME, [_tool(family, "-restore"), "--noflush", "--wait"], text, f"{_tool(family, '-restore')}")


class IptablesBackend:
    name = NAME
    layout = IPT_LAYOUT

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def apply(self, att: Attachment, cfg: FirewallConfig, *, fresh: bool = False,
              joint: Joint | None = None) -> None:
        """One restore per family that checks what it needs in the same batch (``-N`` own chains, ``-C``
        entry rules). When it fails (first ADD on the host, a flushed built-in chain, or own chains of a
        lost record), rules of the key are swept (they are found by listing the key's bucket chains),
        the shared chains and entry rules repaired, and the batch retried once."""
        del fresh, joint  # -N tells whether rules of this key exist: no record needed; joint: nft only
        for plan in (p for p in (iptables_plan(att, cfg, 4), iptables_plan(att, cfg, 6)) if p.rules):
            text = "".join(iptables_add_text(plan, t) for t in plan.tables())
            try:
                _restore(plan.family, text)
            except RuleToolFailed:
                self.remove_by_key(att.owner.key, families=(plan.family,))
                self.bootstrap(plan.family)
                _restore(plan.family, text)

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
    def remove_exact(self, att: Attachment, cfg: FirewallConfig, layout: int = IPT_LAYOUT,
                     joint: Joint | None = None) -> None:
        """Remove the rules a state record describes (in the layout that made them: layout 1 in the shared
        chains, 2 in their buckets); fall back to remove_by_key when that fails. `joint` is nftables
        text: never sent here (the caller applies it on its own)."""
        del joint
        for family in (4, 6):
            plan = iptables_plan(att, cfg, family, layout)
            if not plan.rules:
                continue
            text = "".join(iptables_delete_text(t, _shared_specs(plan, t), plan.own_chains.get(t, []))
                           for t in plan.tables())
            try:
                _restore(family, text)
            except RuleToolFailed:
                self.remove_by_key(att.owner.key, families=(family,))

    def remove_by_key(self, key: str, families: tuple[int, ...] = (4, 6)) -> None:
        """Remove whatever our shared chains (layout 1) and the key's buckets (layout 2) hold for key, and
        key's own chains that exist (a batch whose filter part failed may leave them alone). Lists only
        those chains, side by side; the shared ones shrink as layout-1 attachments go."""
        cmt, own = n.comment(key), n.ipt_chains(key)
        for family in families:
            wanted = [(table, c) for table, shared in SHARED_IPT.items()
                      for c in (*shared, *(n.ipt_bucket(s, key) for s in shared))]
            wanted += [("nat", c) for c in own]
            done = run_all(NAME, [[_tool(family, ""), "-w", "-t", t, "-S", c] for t, c in wanted])
            found: dict[str, list[str]] = {"nat": [], "filter": []}
            existing: list[str] = []
            for (table, chain), res in zip(wanted, done, strict=True):
                if not res.ok:
                    err = res.stderr.decode(errors="replace").strip()
                    if chain_absent(err):
                        continue
                    raise RuleToolFailed(f"{_tool(family, '')} -t {table} -S {chain} failed ({NAME})", err)
                if chain in own:
                    existing.append(chain)
                    continue
                found[table] += [line[3:] for line in res.stdout.decode().splitlines()
                                 if line.startswith("-A ") and (cmt in line or any(f"-j {c}" in line for c in own))]
            text = "".join(iptables_delete_text(t, found[t], existing if t == "nat" else [])
                           for t in ("nat", "filter") if found[t] or (t == "nat" and existing))
            if text:
                _restore(family, text)

    def prune(self) -> None:
        """Nothing is shared per network in this layout."""

    # -------------------------------------------------------------------------------------------- check
    def problems(self, att: Attachment, cfg: FirewallConfig, layout: int = IPT_LAYOUT) -> list[str]:
        out: list[str] = []
        for family in (4, 6):
            plan = iptables_plan(att, cfg, family, layout)
            for table in plan.tables():
                out += _table_problems(family, table, plan)
        return out


# What iptables says when a chain (or its table) does not exist: legacy "No chain/target/match by that
# name" ("Table does not exist" without the table), iptables-nft 1.8.x "chain `X' in table `t' is
# incompatible, use 'nft' tool." Any other failure (permission, lock, missing module) is an error.
_ABSENT = ("No chain/target/match by that name", "Table does not exist", "' is incompatible, use 'nft' tool")


def chain_absent(stderr: str) -> bool:
    return any(text in stderr for text in _ABSENT)


def _shared_specs(plan: IptPlan, table: str) -> list[str]:
    own = plan.own_chains.get(table, [])
    return [f"{r.chain} {r.spec}" for r in plan.rules if r.table == table and r.chain not in own]


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
