"""Runs the cases: per-plugin VERSION and error checks once, then the whole chain once per cniVersion.

Each cniVersion gets its own throwaway host namespace, IPAM dataDir and result cache, so the version
runs are independent (and run in parallel threads). Within a version, scenarios run one after another,
each one snapshotting the host namespace before its first ADD and after its last DEL.
"""

from __future__ import annotations

import copy
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import cases as c
from . import snapshot
from .driver import Attachment, Runtime
from .hostns import Namespaces, path
from .scenarios import Scenarios

VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")


@dataclass
class Suite:
    cni_path: list[Path]
    netlist: dict[str, Any]
    versions: tuple[str, ...] = VERSIONS
    jobs: int = 4
    rows: list[c.Row] = field(default_factory=list)
    supported: dict[str, set[str]] = field(default_factory=dict)
    kept: set[str] = field(default_factory=set)  # shared leftovers the allowances let through
    plugin_env: dict[str, str] = field(default_factory=dict)  # added to every exec's environment (--plugin-env)

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
            if p.get("type") == "ignite-bridge":  # its rule records (and port registry) stay in the run's folder
                p["stateDir"] = str(data_dir.parent / f"{data_dir.name}-state")
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
            rt = Runtime(self.cni_path, ns.host, root / "cache", plugin_env=self.plugin_env)
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
            rt = Runtime(self.suite.cni_path, ns.host, self.root / "cache", plugin_env=self.suite.plugin_env)
            Scenarios(self, rt, ns, nl).run_all()
        return self.rows


