"""A libcni-like runtime: runs a plugin chain exactly as ``libcni`` (containernetworking/cni) would.

- VERSION probes use libcni's env (``CNI_NETNS=dummy``, ``CNI_IFNAME=dummy``, ``CNI_PATH=dummy``).
- Every exec exports all six ``CNI_*`` variables, empty ones included (``invoke.Args.AsEnv``).
- Per-plugin stdin = plugin conf + ``name`` + ``cniVersion`` (+ ``prevResult``) + ``runtimeConfig``
  holding only the capabilities that plugin declares *and* the runtime supplies (``injectRuntimeConfig``);
  ``capabilities`` is left in, as libcni leaves it.
- ADD runs in order, each plugin getting the previous result; the final result is cached
  (``<cache>/results/<net>-<cid>-<ifname>``) with the capability args. CHECK (≥0.4.0) and DEL (in
  reverse; prevResult only for ≥0.4.0) use the cached result; DEL removes the cache entry.
- GC first DELs every cached attachment of the network that is not valid (CNI_NETNS empty, cached
  capability args), then, for ≥1.1.0, sends GC with both ``cni.dev/valid-attachments`` and the
  spec-v1.1.0 spelling ``cni.dev/attachments``. STATUS (≥1.1.0) stops at the first error.

Every call runs inside the throwaway host namespace given (``ip netns exec``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .hostns import BASE_ENV, run

if TYPE_CHECKING:
    from pathlib import Path

V040 = (0, 4, 0)
V110 = (1, 1, 0)


def vtuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (0,)


@dataclass(frozen=True)
class Attachment:
    """What a runtime knows about one container attachment (libcni's RuntimeConf)."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    capability_args: dict[str, Any] = field(default_factory=dict)
    cni_args: str = ""


@dataclass
class Call:
    """One plugin exec: what went in and what came out."""

    plugin: str
    command: str
    rc: int
    stdout: str
    stderr: str
    out: Any = None
    stdin: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def brief(self) -> str:
        text = self.stdout.strip() or self.stderr.strip()
        text = " ".join(text.split())
        return f"{self.plugin} {self.command} exit {self.rc}: {text[:300]}"


class ChainError(Exception):
    """A plugin in the chain failed; ``call`` is the failing exec."""

    def __init__(self, call: Call) -> None:
        super().__init__(call.brief())
        self.call = call


@dataclass
class Runtime:
    cni_path: list[Path]
    host_ns: str
    cache_dir: Path
    timeout: float = 60
    log: list[Call] = field(default_factory=list)
    plugin_env: dict[str, str] = field(default_factory=dict)  # e.g. CNI_IGNITE_WORKER_SOCKET for the warm start

    # ---------------------------------------------------------------------------------------- exec

    def find(self, plugin_type: str) -> Path:
        for d in self.cni_path:
            if (d / plugin_type).is_file():
                return d / plugin_type
        raise FileNotFoundError(f"plugin {plugin_type!r} not found in {':'.join(map(str, self.cni_path))}")

    def exec(self, plugin_type: str, command: str, stdin: bytes | str | dict[str, Any], *,
             env: dict[str, str] | None = None, att: Attachment | None = None,
             unset: tuple[str, ...] = ()) -> Call:
        """Exec one plugin in the host namespace. ``env`` overrides, ``unset`` removes variables."""
        full, raw = self.request(command, stdin, env=env, att=att, unset=unset)
        argv = ["ip", "netns", "exec", self.host_ns, str(self.find(plugin_type))]
        try:
            res = run(argv, input=raw, env=full, timeout=self.timeout)
            rc, so, se = res.returncode, res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
        except Exception as exc:  # subprocess.TimeoutExpired (the child is killed) or an exec failure
            rc, so, se = -1, "", f"{type(exc).__name__}: {exc}"
        try:
            out = json.loads(so) if so.strip() else None
        except ValueError:
            out = None
        call = Call(plugin_type, command, rc, so, se, out, raw.decode(errors="replace"))
        self.log.append(call)
        return call

    def request(self, command: str, stdin: bytes | str | dict[str, Any], *, env: dict[str, str] | None = None,
                att: Attachment | None = None, unset: tuple[str, ...] = ()) -> tuple[dict[str, str], bytes]:
        """The environment (all six CNI_* variables, as libcni exports them) and stdin bytes of one exec."""
        full = {**BASE_ENV, **self.plugin_env}
        full.update({"CNI_COMMAND": command, "CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": "",
                     "CNI_ARGS": "", "CNI_PATH": ":".join(map(str, self.cni_path))})
        if att is not None:
            full.update({"CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns,
                         "CNI_IFNAME": att.ifname, "CNI_ARGS": att.cni_args})
        full.update(env or {})
        for name in unset:
            full.pop(name, None)
        data = stdin if isinstance(stdin, (bytes, str)) else json.dumps(stdin)
        return full, data.encode() if isinstance(data, str) else data

    def version(self, plugin_type: str, cni_version: str = "1.1.0") -> Call:
        return self.exec(plugin_type, "VERSION", {"cniVersion": cni_version},
                         env={"CNI_NETNS": "dummy", "CNI_IFNAME": "dummy", "CNI_PATH": "dummy"})

    # ---------------------------------------------------------------------------------- stdin build

    @staticmethod
    def build_conf(netlist: dict[str, Any], plugin: dict[str, Any], att: Attachment | None,
                   prev: Any = None, *, with_prev: bool = True) -> dict[str, Any]:
        conf = copy.deepcopy(plugin)
        conf["name"] = netlist["name"]
        conf["cniVersion"] = netlist["cniVersion"]
        if prev is not None and with_prev:
            conf["prevResult"] = prev
        caps = plugin.get("capabilities") or {}
        if att is not None:
            rc = {k: v for k, v in att.capability_args.items() if caps.get(k) is True}
            if rc:
                conf["runtimeConfig"] = rc
        return conf

    # ----------------------------------------------------------------------------------------- cache

    def _cache_file(self, netlist: dict[str, Any], att: Attachment) -> Path:
        return self.cache_dir / "results" / f"{netlist['name']}-{att.container_id}-{att.ifname}"

    def cached(self, netlist: dict[str, Any], att: Attachment) -> dict[str, Any] | None:
        f = self._cache_file(netlist, att)
        if not f.is_file():
            return None
        data: dict[str, Any] = json.loads(f.read_text())
        return data

    def forget(self, netlist: dict[str, Any], att: Attachment) -> None:
        """Lose the cache entry, as a runtime that crashed or was reinstalled would."""
        self._cache_file(netlist, att).unlink(missing_ok=True)

    def _cache_add(self, netlist: dict[str, Any], att: Attachment, result: Any) -> None:
        f = self._cache_file(netlist, att)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"kind": "cniCacheV1", "containerId": att.container_id, "ifName": att.ifname,
                                 "networkName": netlist["name"], "cniArgs": att.cni_args,
                                 "capabilityArgs": att.capability_args, "result": result}))

    # ----------------------------------------------------------------------------------------- verbs

    def add(self, netlist: dict[str, Any], att: Attachment) -> tuple[Any, list[Call]]:
        """ADD in order with prevResult chaining; caches and returns the final result (raises ChainError)."""
        prev: Any = None
        calls: list[Call] = []
        for plugin in netlist["plugins"]:
            call = self.exec(plugin["type"], "ADD", self.build_conf(netlist, plugin, att, prev), att=att)
            calls.append(call)
            if not call.ok or not isinstance(call.out, dict):
                raise ChainError(call)
            prev = call.out
            prev.setdefault("cniVersion", netlist["cniVersion"])  # libcni fixupResultVersion
        self._cache_add(netlist, att, prev)
        return prev, calls

    def check(self, netlist: dict[str, Any], att: Attachment) -> list[Call]:
        cache = self.cached(netlist, att)
        if cache is None:
            raise RuntimeError("no cached result to CHECK against")
        calls: list[Call] = []
        for plugin in netlist["plugins"]:
            call = self.exec(plugin["type"], "CHECK", self.build_conf(netlist, plugin, att, cache["result"]), att=att)
            calls.append(call)
            if not call.ok:
                raise ChainError(call)
        return calls

    def delete(self, netlist: dict[str, Any], att: Attachment) -> list[Call]:
        """DEL in reverse; cached prevResult for ≥0.4.0 (none when the cache is gone); drops the cache."""
        cache = self.cached(netlist, att)
        prev = cache["result"] if cache and vtuple(netlist["cniVersion"]) >= V040 else None
        calls: list[Call] = []
        for plugin in reversed(netlist["plugins"]):
            call = self.exec(plugin["type"], "DEL", self.build_conf(netlist, plugin, att, prev), att=att)
            calls.append(call)
            if not call.ok:
                raise ChainError(call)
        self.forget(netlist, att)
        return calls

    def cached_attachments(self, netlist: dict[str, Any]) -> list[Attachment]:
        out = []
        d = self.cache_dir / "results"
        for f in sorted(d.glob(f"{netlist['name']}-*")) if d.is_dir() else []:
            data = json.loads(f.read_text())
            out.append(Attachment(data["containerId"], "", data["ifName"], data.get("capabilityArgs") or {},
                                  data.get("cniArgs") or ""))
        return out

    def gc(self, netlist: dict[str, Any], valid: list[Attachment]) -> list[Call]:
        keep = {(a.container_id, a.ifname) for a in valid}
        calls: list[Call] = []
        errors: list[Call] = []
        for stale in self.cached_attachments(netlist):
            if (stale.container_id, stale.ifname) not in keep:
                try:
                    calls += self.delete(netlist, stale)
                except ChainError as exc:
                    errors.append(exc.call)
        if vtuple(netlist["cniVersion"]) >= V110:
            listed = [{"containerID": a.container_id, "ifname": a.ifname} for a in valid]
            for plugin in netlist["plugins"]:
                conf = self.build_conf(netlist, plugin, None)
                conf["cni.dev/valid-attachments"] = listed
                conf["cni.dev/attachments"] = listed  # libcni #1101: the spec-v1.1.0 key name
                call = self.exec(plugin["type"], "GC", conf)
                calls.append(call)
                if not call.ok:
                    errors.append(call)
        if errors:
            raise ChainError(errors[0])
        return calls

    def status(self, netlist: dict[str, Any]) -> list[Call]:
        calls: list[Call] = []
        for plugin in netlist["plugins"]:
            call = self.exec(plugin["type"], "STATUS", self.build_conf(netlist, plugin, None))
            calls.append(call)
            if not call.ok:
                raise ChainError(call)
        return calls
