"""The iptables backend: one ``iptables-restore --noflush --wait`` (``ip6tables-restore`` for IPv6)
per family per verb; its input holds the nat and filter tables. Shared chains are assumed to exist;
when the batch fails they are created (under a lock, tolerating a concurrent creator) and the batch is
retried once. DEL removes exactly the rules a state record describes, or, without one (or if that
fails), what our own shared chains reference for the attachment's key (``iptables -S <our chain>``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
from typing import TYPE_CHECKING

from ..errors import CniError
from . import naming as n
from ._exec import RuleToolFailed, checked, run
from .rules import (
    IPT_BOOTSTRAP_CHAINS,
    SHARED_IPT,
    iptables_add_text,
    iptables_bootstrap_text,
    iptables_delete_text,
    iptables_plan,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .base import Attachment, FirewallConfig
    from .rules import IptPlan

NAME = "iptables"
ENTRY = {n.IPT_POSTROUTING: "POSTROUTING", n.IPT_DNAT: "PREROUTING", n.IPT_FORWARD: "FORWARD"}


def _tool(family: int, what: str) -> str:
    return f"{'ip6' if family == 6 else 'ip'}tables{what}"


def _restore(family: int, text: str) -> None:
    checked(NAME, [_tool(family, "-restore"), "--noflush", "--wait"], text, f"{_tool(family, '-restore')}")


class IptablesBackend:
    name = NAME

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def apply(self, att: Attachment, cfg: FirewallConfig) -> None:
        for family in (4, 6):
            plan = iptables_plan(att, cfg, family)
            if not plan.rules:
                continue
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
        """Create whichever shared chains are missing, with their entry jumps; never flush one."""
        with self._lock():
            for attempt in range(3):
                text = ""
                for table, chains in IPT_BOOTSTRAP_CHAINS.items():
                    existing = self._chains(family, table)
                    missing = [c for c in chains if c not in existing]
                    if missing:
                        text += iptables_bootstrap_text(family, table, missing)
                if not text:
                    return
                try:
                    _restore(family, text)
                    return
                except RuleToolFailed:
                    if attempt == 2:
                        raise

    def _chains(self, family: int, table: str) -> set[str]:
        res = checked(NAME, [_tool(family, "-save"), "-t", table], what=f"{_tool(family, '-save')} -t {table}")
        return {line[1:].split()[0] for line in res.stdout.decode().splitlines() if line.startswith(":")}

    # ------------------------------------------------------------------------------------------- delete
    def remove_exact(self, att: Attachment, cfg: FirewallConfig) -> None:
        """Remove the rules a state record describes; fall back to remove_by_key when that fails."""
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
                        continue
                    any_chain = True
                    for line in res.stdout.decode().splitlines():
                        if line.startswith("-A ") and (cmt in line or any(f"-j {c}" in line for c in own)):
                            found.append(line[3:])
                if any_chain:
                    text += iptables_delete_text(table, found, list(own) if table == "nat" else [])
            if text:
                _restore(family, text)

    # -------------------------------------------------------------------------------------------- check
    def problems(self, att: Attachment, cfg: FirewallConfig) -> list[str]:
        out: list[str] = []
        for family in (4, 6):
            plan = iptables_plan(att, cfg, family)
            for table in plan.tables():
                out += _table_problems(family, table, plan)
        return out


def _shared_specs(plan: IptPlan, table: str) -> list[str]:
    shared = SHARED_IPT[table]
    return [f"{r.chain} {r.spec}" for r in plan.rules if r.table == table and r.chain in shared]


def _norm(spec: str) -> tuple[str, ...]:
    return tuple(sorted(shlex.split(spec)))


def _table_problems(family: int, table: str, plan: IptPlan) -> list[str]:
    tool = _tool(family, "-save")
    try:
        res = checked(NAME, [tool, "-t", table], what=f"{tool} -t {table}")
    except CniError as exc:
        return [f"cannot list {table} ({tool}): {exc}"]
    have: set[tuple[str, tuple[str, ...]]] = set()
    raw: list[tuple[str, str]] = []
    for line in res.stdout.decode().splitlines():
        if line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            have.add((chain, _norm(spec)))
            raw.append((chain, spec + " "))
    fam = f"IPv{family}"
    out = [f"missing {r.desc} ({NAME}, {fam})" for r in plan.rules
           if r.table == table and (r.chain, _norm(r.spec)) not in have]
    for chain, builtin in ENTRY.items():
        needed = any(r.chain == chain for r in plan.rules if r.table == table)
        if needed and not any(c == builtin and f"-j {chain} " in s for c, s in raw):
            out.append(f"missing jump {builtin} -> {chain} ({NAME}, {fam})")
    return out
