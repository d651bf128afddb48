"""The chain scenarios run at one cniVersion inside one host namespace, one after another.

Each scenario snapshots the host namespace before its first ADD and after its last DEL:
basic ADD/CHECK/DEL/DEL, DEL with the netns gone, with CNI_NETNS="", without runtimeConfig, two
containers plus GC of a lost one (1.1.0), and STATUS (1.1.0).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import time
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import cases as c
from . import snapshot
from .driver import V040, V110, Attachment, ChainError
from .hostns import ns_json, path

if TYPE_CHECKING:
    from pathlib import Path

    from .driver import Runtime
    from .hostns import Namespaces
    from .suite import VersionRun

PORTMAP = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}
CHECK_HINT = "SPEC §CHECK (0.4.0+): must tolerate CHECK right after ADD; should fail when a listed resource is missing"
AFTER_ADD = ("ADD: every result carries the conf's cniVersion", "ADD: chained plugins pass prevResult on",
             "ADD: result shape", "ADD: addresses and routes configured in the container",
             "traffic: container pings its gateway", "CHECK: passes after ADD",
             "CHECK: fails after the container address is removed")
GC_CASES = ("GC: exit 0", "GC: releases the stale attachment's lease", "GC: keeps the valid lease",
            "GC: CHECK of the kept attachment passes", "GC: nothing left after GC and DEL of the kept one")
LEAK_HINT = "SPEC §DEL: remove the attachment and 'any modifications added'; CNI-NOTES §3.12/§3.13 list known leaks"


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
