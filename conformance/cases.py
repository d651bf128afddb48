"""The checks. Each returns a ``Row``: case name, status, and for a failure what was expected and seen.

``hint`` says where the expectation comes from (spec section or convention), so a failure explains
itself in the report without the suite knowing which implementation it is judging.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .driver import vtuple
from .hostns import in_ns, ns_json

if TYPE_CHECKING:
    from .driver import Attachment, Call

PASS, FAIL, SKIP, BLOCKED = "PASS", "FAIL", "SKIP", "BLOCKED"


@dataclass
class Row:
    version: str
    case: str
    status: str
    expected: str = ""
    seen: str = ""
    hint: str = ""


def row(version: str, case: str, ok: bool, expected: str, seen: str, hint: str = "") -> Row:
    return Row(version, case, PASS if ok else FAIL, expected, "" if ok else seen, hint)


def skip(version: str, case: str, reason: str) -> Row:
    return Row(version, case, SKIP, "", reason)


def blocked(version: str, case: str, reason: str) -> Row:
    return Row(version, case, BLOCKED, "", reason)


# ------------------------------------------------------------------------------------------- VERSION

def version_shape(plugin: str, call: Call) -> Row:
    out = call.out
    ok = (call.ok and isinstance(out, dict) and isinstance(out.get("cniVersion"), str)
          and isinstance(out.get("supportedVersions"), list)
          and all(isinstance(v, str) for v in out["supportedVersions"]) and bool(out["supportedVersions"]))
    return row("", f"VERSION {plugin}: probe with CNI_NETNS=dummy answers", ok,
               'exit 0, {"cniVersion": str, "supportedVersions": [str, …]}', call.brief(),
               "SPEC §VERSION; libcni probes with dummy CNI_NETNS/IFNAME/PATH")


def version_echo(plugin: str, calls: dict[str, Call]) -> Row:
    wrong = {v: (c.out or {}).get("cniVersion") if isinstance(c.out, dict) else c.brief() for v, c in calls.items()
             if not (isinstance(c.out, dict) and c.out.get("cniVersion") == v)}
    return row("", f"VERSION {plugin}: output cniVersion echoes the request's", not wrong,
               "cniVersion = the value on input, for " + ", ".join(calls),
               "; ".join(f"asked {v}, got {g}" for v, g in wrong.items()),
               "SPEC §VERSION output: 'cniVersion: the value of cniVersion specified on input'")


# -------------------------------------------------------------------------------------------- errors

def error_row(case: str, calls: list[Call], code: int, *, names: tuple[str, ...] = (), hint: str = "") -> Row:
    bad = []
    for c in calls:
        out = c.out
        if c.rc == 0:
            bad.append(f"exit 0: {c.brief()}")
        elif not isinstance(out, dict) or not isinstance(out.get("code"), int) or not isinstance(out.get("msg"), str):
            bad.append(f"no error JSON on stdout: {c.brief()}")
        elif out["code"] != code:
            bad.append(f"code {out['code']} ({out.get('msg')})")
        elif names and not all(n in f"{out.get('msg')} {out.get('details', '')}" for n in names):
            bad.append(f"message does not name {', '.join(names)}: {out.get('msg')}")
    return row("", case, not bad, f"non-zero exit, stdout JSON {{code: {code}, msg}}", "; ".join(bad), hint)


def status_or_gc_unversioned(plugin: str, verb: str, call: Call, supports_110: bool) -> Row:
    if supports_110:
        ok, expected = call.ok, "exit 0 (plugin supports 1.1.0)"
    else:
        ok = isinstance(call.out, dict) and call.out.get("code") == 1
        expected = "error code 1 (incompatible CNI version: plugin does not list 1.1.0)"
    return row("", f"{verb} {plugin}: 1.1.0 conf", ok, expected, call.brief(),
               f"SPEC §{verb} (1.1.0); an unsupported cniVersion is error 1 (§Error codes); "
               "code 3 would tell the runtime the container is unknown")


# -------------------------------------------------------------------------------------------- result

def _ip(text: Any) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _cidr(text: Any) -> bool:
    try:
        ipaddress.ip_interface(text)
        return isinstance(text, str) and "/" in text
    except ValueError:
        return False


def _ip_problems(version: str, ip: Any, n_ifaces: int) -> list[str]:
    if not isinstance(ip, dict) or not _cidr(ip.get("address")):
        return [f"ips entry without a CIDR address: {ip!r}"]
    p = []
    fam = str(ipaddress.ip_interface(ip["address"]).version)
    if vtuple(version) < (1, 0, 0) and ip.get("version") != fam:
        p.append(f"{ip['address']}: 'version' must be \"{fam}\" at {version}, got {ip.get('version')!r}")
    if vtuple(version) >= (1, 0, 0) and "version" in ip:
        p.append(f"{ip['address']}: 'version' must be absent at {version}")
    if "gateway" in ip and not _ip(ip["gateway"]):
        p.append(f"{ip['address']}: bad gateway {ip['gateway']!r}")
    idx = ip.get("interface")
    if idx is not None and not (isinstance(idx, int) and 0 <= idx < n_ifaces):
        p.append(f"{ip['address']}: interface index {idx!r} out of range")
    return p


def result_problems(version: str, res: Any, att: Attachment) -> list[str]:
    """Shape of a final (main-plugin) result at ``version``: ips, interfaces, routes, dns."""
    if not isinstance(res, dict):
        return [f"result is not an object: {res!r}"]
    p: list[str] = []
    ifaces = res.get("interfaces", [])
    if not isinstance(ifaces, list) or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in ifaces):
        p.append(f"interfaces malformed: {ifaces!r}")
        ifaces = []
    if not any(i.get("name") == att.ifname and i.get("sandbox") == att.netns for i in ifaces):
        p.append(f"no interface {{name: {att.ifname}, sandbox: {att.netns}}}")
    ips = res.get("ips")
    if not isinstance(ips, list) or not ips:
        p.append(f"ips missing or empty: {ips!r}")
        ips = []
    for ip in ips:
        p += _ip_problems(version, ip, len(ifaces))
    for r in res.get("routes") or []:
        if not isinstance(r, dict) or not _cidr(r.get("dst")) or ("gw" in r and not _ip(r["gw"])):
            p.append(f"bad route {r!r}")
    if "dns" in res and not isinstance(res["dns"], dict):
        p.append(f"dns is not an object: {res['dns']!r}")
    return p


def container_ips(res: dict[str, Any], att: Attachment) -> list[dict[str, Any]]:
    """The ips[] entries that belong to the container interface (or carry no interface index)."""
    ifaces = res.get("interfaces") or []
    out = []
    for ip in res.get("ips") or []:
        idx = ip.get("interface")
        if idx is None or (isinstance(idx, int) and idx < len(ifaces)
                           and ifaces[idx].get("name") == att.ifname and ifaces[idx].get("sandbox")):
            out.append(ip)
    return out


def addresses_present(ns: str, res: dict[str, Any], att: Attachment) -> list[str]:
    have = {f"{a.get('local')}/{a.get('prefixlen')}"
            for link in ns_json(ns, ["ip", "-j", "addr", "show", "dev", att.ifname])
            for a in link.get("addr_info", [])}
    want = [str(ipaddress.ip_interface(ip["address"])) for ip in container_ips(res, att)]
    return [f"{w} not on {att.ifname} (has {sorted(have)})" for w in want if w not in have]


def routes_missing(ns: str, res: dict[str, Any]) -> list[str]:
    missing = []
    for r in res.get("routes") or []:
        dst = ipaddress.ip_network(r["dst"], strict=False)
        table = ns_json(ns, ["ip", "-j", f"-{dst.version}", "route", "show"])
        name = "default" if dst.prefixlen == 0 else str(dst)
        if not any(t.get("dst") == name and ("gw" not in r or t.get("gateway") == r["gw"]) for t in table):
            missing.append(f"route {r} not in container table")
    return missing


def remove_addresses(ns: str, res: dict[str, Any], att: Attachment) -> None:
    for ip in container_ips(res, att):
        in_ns(ns, ["ip", "addr", "del", ip["address"], "dev", att.ifname])


def restore_addresses(ns: str, res: dict[str, Any], att: Attachment) -> None:
    for ip in container_ips(res, att):
        in_ns(ns, ["ip", "addr", "add", ip["address"], "dev", att.ifname])
    for r in res.get("routes") or []:
        if "gw" in r:
            in_ns(ns, ["ip", "route", "replace", r["dst"], "via", r["gw"], "dev", att.ifname])


def ping(ns: str, target: str, tries: int = 3) -> str:
    """'' when ``target`` answers from inside ``ns``; else the last ping output."""
    out = ""
    for _ in range(tries):
        res = in_ns(ns, ["ping", "-c", "1", "-W", "2", target], timeout=10)
        if res.returncode == 0:
            return ""
        out = " ".join((res.stdout + res.stderr).decode(errors="replace").split())[-200:]
        time.sleep(0.3)
    return out


def lease_files(data_dir: Any, container_id: str) -> list[str]:
    """host-local-layout lease files (``<dataDir>/<net>/<ip>`` = ``id\\r\\nifname``) held by a container."""
    out: list[str] = []
    if data_dir is None or not data_dir.is_dir():
        return out
    for f in data_dir.rglob("*"):
        if f.is_file() and f.name != "lock" and not f.name.startswith("last_reserved_ip"):
            first = f.read_bytes().decode(errors="replace").splitlines()[:1]
            if first and first[0].strip() == container_id:
                out.append(f.name)
    return sorted(out)


def needs(version: str, minimum: tuple[int, int, int]) -> bool:
    return vtuple(version) >= minimum

