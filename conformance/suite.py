"""Runs the cases: per-plugin VERSION and error checks once, then the whole chain once per cniVersion.

Each cniVersion gets its own throwaway host namespace, IPAM dataDir and result cache, so the version
runs are independent (and run in parallel threads). Within a version, scenarios run one after another,
each one snapshotting the host namespace before its first ADD and after its last DEL.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import itertools
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import cases as c
from . import snapshot
from .driver import V040, V110, Attachment, ChainError, Runtime
from .hostns import Namespaces, ns_json, path

VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
PORTMAP = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}
CHECK_HINT = "SPEC §CHECK (0.4.0+): must tolerate CHECK right after ADD; should fail when a listed resource is missing"
AFTER_ADD = ("ADD: every result carries the conf's cniVersion", "ADD: chained plugins pass prevResult on",
             "ADD: result shape", "ADD: addresses and routes configured in the container",
             "traffic: container pings its gateway", "CHECK: passes after ADD",
             "CHECK: fails after the container address is removed")
GC_CASES = ("GC: exit 0", "GC: releases the stale attachment's lease", "GC: keeps the valid lease",
            "GC: CHECK of the kept attachment passes", "GC: nothing left after GC and DEL of the kept one")
LEAK_HINT = "SPEC §DEL: remove the attachment and 'any modifications added'; CNI-NOTES §3.12/§3.13 list known leaks"


@dataclass
class Suite:
    cni_path: list[Path]
    netlist: dict[str, Any]
    versions: tuple[str, ...] = VERSIONS
    jobs: int = 4
    rows: list[c.Row] = field(default_factory=list)
    supported: dict[str, set[str]] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)  # shared leftovers the allowances let through

    # ------------------------------------------------------------------------------------- helpers

    @property
    def bridge(self) -> str:
        return str(self.netlist["plugins"][0].get("bridge", "cni0"))

    def plugin_types(self) -> list[str]:
        out: list[str] = []
        for p in self.netlist["plugins"]:
            for t in (p["type"], (p.get("ipam") or {}).get("type")):
                if t and t not in out:
                    out.append(t)
        return out

    def netlist_at(self, version: str, data_dir: Path, plugins: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        nl = copy.deepcopy(self.netlist)
        nl["cniVersion"] = version
        nl.pop("cniVersions", None)
        if plugins is not None:
            nl["plugins"] = copy.deepcopy(plugins)
        for p in nl["plugins"]:
            if isinstance(p.get("ipam"), dict) and p["ipam"].get("type"):
                p["ipam"]["dataDir"] = str(data_dir)  # host-local and ignite-ipam share the key
        return nl

    def run(self) -> list[c.Row]:
        with tempfile.TemporaryDirectory(prefix="cnconf-") as tmp:
            root = Path(tmp)
            self.per_plugin(root / "plugins")
            with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
                done = list(pool.map(lambda v: VersionRun(self, v, root / v).run(), self.versions))
            for rows in done:
                self.rows += rows
        return self.rows

    # ---------------------------------------------------------------------------- per-plugin cases

    def per_plugin(self, root: Path) -> None:
        root.mkdir(parents=True)
        with Namespaces() as ns:
            rt = Runtime(self.cni_path, ns.host, root / "cache")
            for t in self.plugin_types():
                probe = rt.version(t)
                self.rows.append(c.version_shape(t, probe))
                sv = probe.out.get("supportedVersions") if isinstance(probe.out, dict) else None
                self.supported[t] = set(sv) if isinstance(sv, list) else set()
                self.rows.append(c.version_echo(t, {v: rt.version(t, v) for v in self.versions}))
            cont = ns.new()
            before = snapshot.take(ns.host, bridge=self.bridge, data_dir=root / "data")
            for owner in self.netlist["plugins"]:
                kinds = [owner["type"]] + ([owner["ipam"]["type"]] if (owner.get("ipam") or {}).get("type") else [])
                for t in kinds:
                    if not any(r.case.startswith(f"error {t}:") for r in self.rows):
                        self.error_cases(rt, t, owner, path(cont), root / "data")
            after = snapshot.take(ns.host, bridge=self.bridge, data_dir=root / "data")
            problems, _ = snapshot.leftovers(before, after, [snapshot.Identity("cnconf-err")])
            self.rows.append(c.row("", "error cases leave nothing behind in the host namespace", not problems,
                                   "no new links, rules or leases after rejected ADDs", "; ".join(problems),
                                   "SPEC §Error: a rejected request must not allocate"))

    def error_cases(self, rt: Runtime, t: str, owner: dict[str, Any], netns: str, data: Path) -> None:
        ok_versions = [v for v in self.versions if v in self.supported.get(t, set())] or ["1.0.0"]
        nl = self.netlist_at(ok_versions[-1], data, [owner])
        conf = rt.build_conf(nl, nl["plugins"][0], None)
        att = Attachment("cnconf-err", netns, "eth0")
        add = "ADD"
        rows = [
            c.error_row(f"error {t}: missing CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME",
                        [rt.exec(t, add, conf, att=att, unset=("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"))], 4,
                        names=("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
                        hint="SPEC §Error code 4: 'the error message must contain the names of invalid variables'"),
            c.error_row(f"error {t}: stdin is not JSON", [rt.exec(t, add, b"{not json", att=att)], 6,
                        hint="SPEC §Error code 6: failed to decode content"),
            c.error_row(f"error {t}: unsupported cniVersion (9.9.9, 1.0.1)",
                        [rt.exec(t, add, {**conf, "cniVersion": v}, att=att) for v in ("9.9.9", "1.0.1")], 1,
                        hint="SPEC §Error code 1; versions match by exact string"),
            c.error_row(f"error {t}: invalid CNI_CONTAINERID 'bad/id!'",
                        [rt.exec(t, add, conf, att=replace(att, container_id="bad/id!"))], 4,
                        hint="SPEC §Parameters: container ID is alphanumeric plus _ . -; code 4 invalid env"),
            c.error_row(f"error {t}: invalid CNI_IFNAME ('a/b', 16 chars)",
                        [rt.exec(t, add, conf, att=replace(att, ifname=n)) for n in ("a/b", "abcdefghijklmnop")], 4,
                        hint="SPEC §Parameters: ifname ≤ 15 chars, no '/', ':' or whitespace; code 4 invalid env"),
        ]
        self.rows += rows
        nl110 = self.netlist_at("1.1.0", data, [owner])
        conf110 = rt.build_conf(nl110, nl110["plugins"][0], None)
        supports = "1.1.0" in self.supported.get(t, set())
        gc_conf = {**conf110, "cni.dev/valid-attachments": [], "cni.dev/attachments": []}
        # GC with an empty valid list releases everything: use an empty dataDir so nothing real is touched.
        self.rows.append(c.status_or_gc_unversioned(t, "STATUS", rt.exec(t, "STATUS", conf110), supports))
        self.rows.append(c.status_or_gc_unversioned(t, "GC", rt.exec(t, "GC", gc_conf), supports))


@dataclass
class VersionRun:
    suite: Suite
    v: str
    root: Path
    rows: list[c.Row] = field(default_factory=list)

    def add_row(self, case: str, ok: bool, expected: str, seen: str, hint: str = "") -> None:
        self.rows.append(c.row(self.v, case, ok, expected, seen, hint))

    def skip(self, case: str, reason: str) -> None:
        self.rows.append(c.skip(self.v, case, reason))

    def blocked(self, case: str, reason: str) -> None:
        self.rows.append(c.blocked(self.v, case, reason))

    def chain(self) -> list[dict[str, Any]] | None:
        sup = self.suite.supported
        usable: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        for p in self.suite.netlist["plugins"]:
            kinds = [p["type"]] + ([p["ipam"]["type"]] if (p.get("ipam") or {}).get("type") else [])
            missing = [k for k in kinds if self.v not in sup.get(k, set())]
            (dropped if missing else usable).append(p)
            for k in missing:
                self.skip(f"VERSION: {k} lists {self.v}", f"not applicable: {k} supports {sorted(sup.get(k, set()))}")
        if not dropped:
            self.add_row(f"VERSION: every plugin lists {self.v}", True, "", "")
        if dropped and dropped[0] is self.suite.netlist["plugins"][0]:
            self.skip("chain", f"not applicable: the main plugin does not support {self.v}; no chain cases")
            return None
        if dropped:
            self.skip("chain", "running without " + ", ".join(p["type"] for p in dropped))
        return usable

    def run(self) -> list[c.Row]:
        plugins = self.chain()
        if plugins is None:
            return self.rows
        self.root.mkdir(parents=True)
        nl = self.suite.netlist_at(self.v, self.root / "data", plugins)
        with Namespaces() as ns:
            rt = Runtime(self.suite.cni_path, ns.host, self.root / "cache")
            Scenarios(self, rt, ns, nl).run_all()
        return self.rows


def _cid(role: str) -> str:
    return f"cnconf-{role}-{uuid.uuid4().hex[:8]}"


@dataclass
class Scenarios:
    vr: VersionRun
    rt: Runtime
    ns: Namespaces
    nl: dict[str, Any]

    @property
    def v(self) -> str:
        return self.vr.v

    @property
    def data(self) -> Path:
        return self.vr.root / "data"

    def snap(self) -> snapshot.Snapshot:
        return snapshot.take(self.ns.host, bridge=self.vr.suite.bridge, data_dir=self.data)

    def identity(self, att: Attachment, res: Any) -> snapshot.Identity:
        ident = snapshot.Identity(att.container_id)
        if isinstance(res, dict):
            for ip in res.get("ips") or []:
                with contextlib.suppress(ValueError):
                    ident.ips.add(str(ipaddress.ip_interface(ip.get("address")).ip))
            for i in res.get("interfaces") or []:
                if isinstance(i, dict) and not i.get("sandbox") and i.get("name") != self.vr.suite.bridge:
                    ident.links.add(str(i.get("name")))
        return ident

    def leak_row(self, case: str, before: snapshot.Snapshot, idents: list[snapshot.Identity]) -> None:
        # Deleting a netns destroys its veth pairs asynchronously: give links up to ~3 s to go.
        for _ in range(15):
            problems, allowed = snapshot.leftovers(before, self.snap(), idents)
            if not any(p.startswith(("link ", "addr ")) for p in problems):
                break
            time.sleep(0.2)
        self.vr.suite.kept.update(allowed)
        self.vr.add_row(case, not problems, "host namespace as before the ADD (allowances listed below)",
                        "; ".join(problems), LEAK_HINT)

    def try_add(self, att: Attachment, label: str) -> Any:
        try:
            res, _ = self.rt.add(self.nl, att)
            return res
        except ChainError as exc:
            self.vr.add_row(f"{label}: ADD exit 0", False, "exit 0 with a result", exc.call.brief())
            return None

    def try_del(self, att: Attachment, case: str, hint: str = "") -> bool:
        try:
            self.rt.delete(self.nl, att)
            self.vr.add_row(case, True, "", "")
            return True
        except ChainError as exc:
            self.vr.add_row(case, False, "exit 0", exc.call.brief(), hint)
            return False

    def run_all(self) -> None:
        for step in (self.basic, self.del_netns_gone, self.del_empty_netns, self.del_without_caps,
                     self.two_containers_gc, self.status):
            try:
                step()
            except Exception as exc:  # a broken step must not hide the others; it still shows as a failure
                self.vr.add_row(f"{step.__name__}: ran to completion", False, "no harness error",
                                f"{type(exc).__name__}: {exc}")

    # -------------------------------------------------------------------------------------- basic

    def basic(self) -> None:
        before = self.snap()
        ns_a = self.ns.new()
        att = Attachment(_cid("a"), path(ns_a), "eth0", PORTMAP)
        calls: list[Any] = []
        try:
            res, calls = self.rt.add(self.nl, att)
        except ChainError as exc:
            res = None
            self.vr.add_row("ADD: every plugin exits 0 with a result", False, "exit 0 and a JSON result",
                            exc.call.brief())
        if res is not None:
            self.vr.add_row("ADD: every plugin exits 0 with a result", True, "", "")
            self.after_add(att, ns_a, res, calls)
        else:
            for case in AFTER_ADD:
                self.vr.blocked(case, "ADD failed")
        ok = self.try_del(att, "DEL: exit 0", "SPEC §DEL")
        if ok:
            gone = not ns_json(ns_a, ["ip", "-j", "link", "show", "dev", att.ifname])
            self.vr.add_row("DEL: container interface removed", gone, f"no {att.ifname} in the container",
                            "still there")
        self.try_del(att, "DEL: second DEL exit 0 (cache gone, no prevResult)",
                     "SPEC §DEL: plugins MUST accept multiple DELs and succeed if the interface is missing")
        self.leak_row("DEL: nothing left in the host namespace (links, rules, leases)", before,
                      [self.identity(att, res)])
        self.ns.delete(ns_a)

    def after_add(self, att: Attachment, ns_a: str, res: dict[str, Any], calls: list[Any]) -> None:
        v = self.v
        wrong = [f"{call.plugin}: {(call.out or {}).get('cniVersion')!r}" for call in calls
                 if (call.out or {}).get("cniVersion") != v]
        self.vr.add_row("ADD: every result carries the conf's cniVersion", not wrong, f"cniVersion {v!r}",
                        ", ".join(wrong), "SPEC §Result: output version must match the conf cniVersion")
        if len(calls) > 1:
            lost = []
            for prev, nxt in itertools.pairwise(calls):
                for key in ("ips", "interfaces"):
                    for item in (prev.out or {}).get(key) or []:
                        if item not in ((nxt.out or {}).get(key) or []):
                            lost.append(f"{nxt.plugin} dropped {key} {item}")
            self.vr.add_row("ADD: chained plugins pass prevResult on", not lost, "ips/interfaces of prevResult kept",
                            "; ".join(lost), "SPEC §ADD: a plugin given prevResult must output it")
        else:
            self.vr.skip("ADD: chained plugins pass prevResult on", "not applicable: a single-plugin chain")
        problems = c.result_problems(v, res, att)
        self.vr.add_row("ADD: result shape", not problems, f"a valid {v} result naming {att.ifname} in the sandbox",
                        "; ".join(problems), "SPEC §Result for this version")
        missing = c.addresses_present(ns_a, res, att) + c.routes_missing(ns_a, res)
        self.vr.add_row("ADD: addresses and routes configured in the container", not missing,
                        "every result address on the interface and route in the table", "; ".join(missing))
        gws = sorted({ip["gateway"] for ip in c.container_ips(res, att) if ip.get("gateway")})
        if gws:
            failed = [f"{g}: {out}" for g in gws if (out := c.ping(ns_a, g))]
            self.vr.add_row("traffic: container pings its gateway", not failed, "ping replies", "; ".join(failed))
        else:
            self.vr.skip("traffic: container pings its gateway", "the result names no gateway")
        self.check_cases(att, ns_a, res)

    def check_cases(self, att: Attachment, ns_a: str, res: dict[str, Any]) -> None:
        if not c.needs(self.v, V040):
            self.vr.skip("CHECK: passes after ADD", f"not applicable: CHECK needs cniVersion 0.4.0, conf is {self.v}")
            self.vr.skip("CHECK: fails after the container address is removed", "not applicable: CHECK needs 0.4.0")
            return
        try:
            self.rt.check(self.nl, att)
            self.vr.add_row("CHECK: passes after ADD", True, "", "")
        except ChainError as exc:
            self.vr.add_row("CHECK: passes after ADD", False, "exit 0", exc.call.brief(), CHECK_HINT)
        c.remove_addresses(ns_a, res, att)
        try:
            self.rt.check(self.nl, att)
            self.vr.add_row("CHECK: fails after the container address is removed", False,
                            "non-zero exit with an error JSON", "CHECK exit 0", CHECK_HINT)
        except ChainError as exc:
            good = isinstance(exc.call.out, dict) and isinstance(exc.call.out.get("code"), int)
            self.vr.add_row("CHECK: fails after the container address is removed", good,
                            "non-zero exit with an error JSON", exc.call.brief(), CHECK_HINT)
        c.restore_addresses(ns_a, res, att)

    # --------------------------------------------------------------------------------- DEL variants

    def del_variant(self, label: str, slug: str, hint: str, *, gone: bool, empty: bool, no_caps: bool) -> None:
        before = self.snap()
        ns_c = self.ns.new()
        att = Attachment(_cid(slug), path(ns_c), "eth0", PORTMAP)
        res = self.try_add(att, label)
        if gone:
            self.ns.delete(ns_c)
        d = replace(att, netns="" if empty else att.netns, capability_args={} if no_caps else att.capability_args)
        self.try_del(d, f"{label}: DEL exit 0", hint)
        self.ns.delete(ns_c)
        self.leak_row(f"{label}: nothing left in the host namespace", before, [self.identity(att, res)])

    def del_netns_gone(self) -> None:
        self.del_variant("DEL with the netns already deleted", "gone",
                         "SPEC §DEL: clean up even if the container netns no longer exists", gone=True, empty=False,
                         no_caps=False)

    def del_empty_netns(self) -> None:
        self.del_variant('DEL with CNI_NETNS=""', "nonetns",
                         "SPEC 0.4.0+ §DEL: without CNI_NETNS clean up as much as possible",
                         gone=False, empty=True, no_caps=False)

    def del_without_caps(self) -> None:
        self.del_variant("DEL without runtimeConfig (capability args lost)", "nocaps",
                         "SPEC §DEL best effort; ignite's cleanup and cache-less runtimes DEL without portMappings",
                         gone=False, empty=False, no_caps=True)

    # ------------------------------------------------------------------------------ two containers / GC

    def two_containers_gc(self) -> None:
        before = self.snap()
        ns_f, ns_g = self.ns.new(), self.ns.new()
        f = Attachment(_cid("f"), path(ns_f), "eth0", PORTMAP)
        g = Attachment(_cid("g"), path(ns_g), "eth0", {})
        rf, rg = self.try_add(f, "two containers (F)"), self.try_add(g, "two containers (G)")
        if rf is None or rg is None:
            for case in ("two containers: distinct addresses", "two containers: the second one pings the gateway"):
                self.vr.blocked(case, "an ADD failed")
        else:
            af = {ip["address"] for ip in c.container_ips(rf, f)}
            ag = {ip["address"] for ip in c.container_ips(rg, g)}
            self.vr.add_row("two containers: distinct addresses", not (af & ag), "no shared address",
                            f"both got {sorted(af & ag)}")
            gws = sorted({ip["gateway"] for ip in c.container_ips(rg, g) if ip.get("gateway")})
            failed = [f"{gw}: {out}" for gw in gws if (out := c.ping(ns_g, gw))]
            self.vr.add_row("two containers: the second one pings the gateway", not failed, "ping replies",
                            "; ".join(failed))
        if not c.needs(self.v, V110):
            for case in GC_CASES:
                self.vr.skip(case, f"not applicable: GC needs cniVersion 1.1.0, conf is {self.v}")
            self.try_del(f, "two containers: DEL of the first exit 0")
            self.try_del(g, "two containers: DEL of the second exit 0")
            self.leak_row("two containers: nothing left after both DELs", before,
                          [self.identity(f, rf), self.identity(g, rg)])
            return
        if rf is None or rg is None:
            for case in GC_CASES[:4]:
                self.vr.blocked(case, "an ADD failed")
            self.try_del(f, "two containers: DEL of the first exit 0")
            self.try_del(g, "two containers: DEL of the second exit 0")
            self.leak_row(GC_CASES[4], before, [self.identity(f, rf), self.identity(g, rg)])
            return
        # F's container died and the runtime lost its state: only the plugins' GC can reclaim it.
        self.ns.delete(ns_f)
        self.rt.forget(self.nl, f)
        gc_hint = "SPEC §GC (1.1.0): release every resource not in cni.dev/valid-attachments, keep the valid ones"
        try:
            self.rt.gc(self.nl, [g])
            self.vr.add_row("GC: exit 0", True, "", "")
        except ChainError as exc:
            self.vr.add_row("GC: exit 0", False, "exit 0", exc.call.brief(), gc_hint)
        held_f, held_g = c.lease_files(self.data, f.container_id), c.lease_files(self.data, g.container_id)
        self.vr.add_row("GC: releases the stale attachment's lease", not held_f, "no lease for the stale container",
                        f"still leased: {held_f}", gc_hint)
        self.vr.add_row("GC: keeps the valid lease", bool(held_g), "the valid container keeps its lease",
                        "lease gone", gc_hint)
        try:
            self.rt.check(self.nl, g)
            self.vr.add_row("GC: CHECK of the kept attachment passes", True, "", "")
        except (ChainError, RuntimeError) as exc:
            self.vr.add_row("GC: CHECK of the kept attachment passes", False, "exit 0", str(exc), gc_hint)
        self.try_del(g, "GC: DEL of the kept attachment exit 0")
        self.ns.delete(ns_g)
        self.leak_row("GC: nothing left after GC and DEL of the kept one", before,
                      [self.identity(f, rf), self.identity(g, rg)])

    def status(self) -> None:
        if not c.needs(self.v, V110):
            self.vr.skip("STATUS: exit 0", f"not applicable: STATUS needs cniVersion 1.1.0, conf is {self.v}")
            return
        try:
            self.rt.status(self.nl)
            self.vr.add_row("STATUS: exit 0", True, "", "")
        except ChainError as exc:
            self.vr.add_row("STATUS: exit 0", False, "exit 0 (plugin can service ADD)", exc.call.brief(),
                            "SPEC §STATUS (1.1.0)")
