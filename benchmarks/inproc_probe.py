"""ignite-bridge run in-process (venv Python, unfrozen) with its steps timed: where an ADD/DEL spends its time.

Used by benchmarks/run.py as the ``ignite-bridge`` executable of a runtime (same env, stdin and stdout as
the plugin). It measures, in this one process: the import of the entry modules (cli, skel), the import of
the ADD/DEL path (bridge plugin, kernel adapter, netlink, IPAM, firewall modules), and then, while the
real ``skel.run`` handles the call, the time in kernel work (``bridge.kernel`` methods: netlink and
sysctl), IPAM (``ipam_call``), rules (the firewall object's add/delete) and every program exec'd through
``cni_ignite.hostexec.run`` (count, names, time). Only the outermost wrapped call counts, so nothing is
counted twice. Appends one JSON line to ``$BENCH_PROBE_OUT``. Nothing in cni_ignite is changed on disk.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()
import cni_ignite.cli  # noqa: E402
import cni_ignite.hostexec  # noqa: E402
import cni_ignite.skel  # noqa: E402

T1 = time.perf_counter()

import functools  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pkgutil  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

PHASES: dict[str, float] = {}
EXECS: list[dict[str, Any]] = []
_depth = [0]


def timed(category: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*a: Any, **k: Any) -> Any:
        outer = _depth[0] == 0
        _depth[0] += 1
        s = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            _depth[0] -= 1
            if outer:
                PHASES[category] = PHASES.get(category, 0.0) + (time.perf_counter() - s) * 1000

    return wrapper


_real_run = cni_ignite.hostexec.run


def counted_run(argv: Any, **kw: Any) -> Any:
    s = time.perf_counter()
    try:
        return _real_run(argv, **kw)
    finally:
        EXECS.append({"program": os.path.basename(argv[0]), "ms": round((time.perf_counter() - s) * 1000, 2)})


cni_ignite.hostexec.run = counted_run  # before the firewall modules bind it

T2 = time.perf_counter()
import cni_ignite.bridge.firewall_glue  # noqa: E402
import cni_ignite.bridge.ipam_call  # noqa: E402
import cni_ignite.bridge.plugin  # noqa: E402
import cni_ignite.ipam.plugin  # noqa: E402
import cni_ignite.netlink.rtnl  # noqa: E402
import cni_ignite.netlink.sysctl  # noqa: E402
from cni_ignite.bridge import kernel  # noqa: E402

FIREWALL_IMPORT_ERRORS = []
import cni_ignite.firewall  # noqa: E402

for info in pkgutil.iter_modules(cni_ignite.firewall.__path__, "cni_ignite.firewall."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        FIREWALL_IMPORT_ERRORS.append(f"{info.name}: {exc}")
T3 = time.perf_counter()

for cls in (kernel.HostNet, kernel.ContainerNet):
    for name, attr in list(vars(cls).items()):
        if callable(attr) and not name.startswith("__"):
            setattr(cls, name, timed("kernel (netlink, sysctl)", attr))
kernel.open_container = timed("kernel (netlink, sysctl)", kernel.open_container)
ipam_call = cni_ignite.bridge.ipam_call
ipam_call.add = timed("IPAM (in-process)", ipam_call.add)
ipam_call.run = timed("IPAM (in-process)", ipam_call.run)
glue = cni_ignite.bridge.firewall_glue
glue.firewall = timed("rules", glue.firewall)
glue.delete_rules = timed("rules", glue.delete_rules)
try:
    from cni_ignite.firewall.core import RuleFirewall

    for name in ("add", "delete"):
        setattr(RuleFirewall, name, timed("rules", getattr(RuleFirewall, name)))
except ImportError as exc:
    FIREWALL_IMPORT_ERRORS.append(f"cni_ignite.firewall.core: {exc}")

before = set(sys.modules)
out = io.StringIO()
T4 = time.perf_counter()
rc = cni_ignite.skel.run(cni_ignite.cli._bridge_handlers, env=os.environ, stdin=sys.stdin.buffer, stdout=out,
                         stderr=sys.stderr, about="probe", on_internal_error=cni_ignite.cli._log_internal)
T5 = time.perf_counter()
sys.stdout.write(out.getvalue())
sys.stdout.flush()
record = {
    "command": os.environ.get("CNI_COMMAND"), "rc": rc,
    "import_entry_ms": round((T1 - T0) * 1000, 2),
    "import_path_ms": round((T3 - T2) * 1000, 2),
    "run_ms": round((T5 - T4) * 1000, 2),
    "phases_ms": {k: round(v, 2) for k, v in PHASES.items()},
    "execs": EXECS,
    "modules_imported_during_run": sorted(set(sys.modules) - before),
    "firewall_import_errors": FIREWALL_IMPORT_ERRORS,
}
if os.environ.get("BENCH_PROBE_OUT"):
    with open(os.environ["BENCH_PROBE_OUT"], "a") as f:
        f.write(json.dumps(record) + "\n")
sys.exit(rc)
