"""Applying, removing and checking the guard with ``nft -f -`` (through firewall._exec / hostexec).

    apply(att)               ADD: one transaction of the port's elements when this version of the skeleton
                             is in place (lean, ~12 ms cheaper), else with the skeleton; when the port is
                             guarded already (an ADD again, or leftovers of a lost DEL, perhaps with other
                             addresses) it fails as a whole: purge the port's elements and apply again,
                             so only `att` stays allowed
    remove(port, att=None)   DEL: with the attachment (rebuilt from prevResult: the same MACs and
                             addresses ADD applied), one add-then-delete transaction (elements only, else
                             with the sets declared); without it, found by
                             the port name: the dry run tells whether the port is guarded at all (the
                             usual second DEL: nothing to do); only a port that is still guarded with
                             unknown elements costs a listing of the table (purge, O(ports))
    check(att) -> [problem]  CHECK: the fixed chains as nft lists them and this layout's version mark,
                             then the port's elements
    guarded(port) -> bool
    quarantine(att)          GC of an attachment that is no longer valid: its port stays guarded, nothing
                             allowed (its addresses go back to the IPAM)

Every function works on the attachment's layout (``rules.tables``): the bridge port's one bridge-family
table, or a routed veth's ``inet`` and ``arp`` tables (``att.routed``; ``routed=True`` when only the
port's name is known).

On a bridge port with firewall rules in the nftables backend, the plugin sends the lean scripts inside the
firewall's transaction instead (``bridge.firewall_glue.PortFilters``) and calls ``apply``/``remove`` only
when that did not go.

Per-call cost does not grow with the number of guarded ports on the ADD/DEL path: element-only
transactions, and nft 1.0.6 fetches no set elements for them (measured; see tests/integration).
"""

from __future__ import annotations

from ..firewall._exec import RuleToolFailed, ToolMissing, checked, run
from . import rules

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Any

    from .rules import Attachment

BACKEND = "guard"
_NFT = ("nft", "-f", "-")
_DRY = ("nft", "-c", "-f", "-")


def apply(att: Attachment) -> None:
    if run(BACKEND, _NFT, rules.lean_apply_script(att)).ok:  # the skeleton is in place: elements only
        return
    try:
        checked(BACKEND, _NFT, rules.apply_script(att), "guard apply")
    except RuleToolFailed:
        # The port is guarded already: drop whatever it was allowed before, then apply exactly `att`.
        purge(att.port, routed=att.routed)
        checked(BACKEND, _NFT, rules.apply_script(att), "guard apply")


def remove(port: str, att: Attachment | None = None, *, routed: bool = False) -> None:
    """Remove every guard element of `port` (a bridge port, or with `routed` / ``att.routed`` a routed veth);
    succeeds when there is none (or no nft at all)."""
    routed = att.routed if att is not None else routed
    try:
        if att is not None and (run(BACKEND, _NFT, rules.lean_remove_script(att)).ok
                                or run(BACKEND, _NFT, rules.remove_script(att)).ok):
            return
        if guarded(port, routed=routed):
            purge(port, routed=routed)
    except ToolMissing:
        return  # no nft: no guard was ever applied


def quarantine(att: Attachment) -> None:
    """GC: keep `att`'s port in the guard with nothing allowed (``rules.quarantine_script``); nothing to do
    when the port is not guarded (or there is no nft)."""
    try:
        if not run(BACKEND, _NFT, rules.quarantine_script(att)).ok and guarded(att.port, routed=att.routed):
            checked(BACKEND, _NFT, rules.quarantine_script(att), "guard quarantine")
    except ToolMissing:
        return


def guarded(port: str, *, routed: bool = False) -> bool:
    """Whether `port` is in a ``ports`` set of the layout's tables (False when they do not exist): a dry-run
    delete (``nft -c``) per table, O(1); ``get element`` would fetch every set's elements."""
    return any(run(BACKEND, _DRY, f'delete element {t.name} ports {{ "{port}" }}\n').ok
               for t in rules.tables(routed))


def purge(port: str, *, routed: bool = False) -> None:
    """Delete every element of `port` in every guard set of the layout, found by listing its tables (the
    O(n) path); one transaction."""
    from .. import _json as json

    cmds: list[dict[str, Any]] = []
    for t in rules.tables(routed):
        listed = run(BACKEND, ("nft", "-j", "list", "table", *t.name.split()))
        if not listed.ok:
            continue  # no table, nothing to purge in it
        family, table = t.name.split()
        for item in json.loads(listed.stdout).get("nftables", []):
            s = item.get("set")
            if not s:
                continue
            mine = [e for e in s.get("elem", []) if _port_of(e) == port]
            if mine:
                cmds.append({"delete": {"element": {"family": family, "table": table, "name": s["name"],
                                                    "elem": mine}}})
    if cmds:
        checked(BACKEND, ("nft", "-j", "-f", "-"), json.dumps({"nftables": cmds}), "guard purge")


def _port_of(elem: Any) -> str | None:
    """The port (first key part) of a listed element: ``"veth1"`` or ``{"concat": ["veth1", ...]}``."""
    if isinstance(elem, dict) and "elem" in elem:  # an element with attributes (timeout, comment ...)
        elem = elem["elem"].get("val")
    if isinstance(elem, str):
        return elem
    if isinstance(elem, dict) and isinstance(elem.get("concat"), list) and elem["concat"]:
        first = elem["concat"][0]
        return first if isinstance(first, str) else None
    return None


def check(att: Attachment) -> list[str]:
    """What is wrong with the guard of `att`: [] when the fixed chains and all its elements are there.
    The elements cost a dry-run transaction (O(1)); the chains, one listing of the table (O(ports):
    nft lists sets with their elements; 20 ms with 500 ports)."""
    try:
        problems: list[str] = []
        layout = rules.tables(att.routed)
        for t in layout:
            listed = run(BACKEND, ("nft", "-t", "list", "table", *t.name.split()))
            if not listed.ok:
                return [f"guard table {t.name} is missing: {listed.stderr.decode(errors='replace').strip()}"]
            text = listed.stdout.decode(errors="replace")
            problems += rules.chain_problems(text, t.chains)
            if f"chain {rules.layout_mark(att.routed)} {{" not in text:  # rules whose listing hides a change
                problems.append(f"guard table {t.name} is another version of the layout (no chain "
                                f"{rules.layout_mark(att.routed)})")
        if run(BACKEND, _DRY, rules.check_script(att)).ok:
            return problems
        where = len(layout) > 1  # name the table when the layout has several
        for t, elems in rules.table_elements(att):
            for name, items in elems.items():
                for item in items:
                    if not run(BACKEND, _DRY, f"delete element {t.name} {name} {{ {item} }}\n").ok:
                        problems.append(f"guard element missing: {t.name + ' ' if where else ''}{name} {{ {item} }}")
        return problems
    except ToolMissing as exc:
        return [f"guard: {exc}"]
