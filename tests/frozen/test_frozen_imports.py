"""What the frozen bundle loads at start: no PyInstaller runtime hook that imports inspect/subprocess/
asyncio (they cost ~90 ms per call), nothing heavy on the VERSION path, and every cni_ignite module
(most are imported lazily) present and importable frozen."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

import pytest
from bundle import EXE, MINIMAL_PATH, REPO

if TYPE_CHECKING:
    from pathlib import Path

# ctypes: PyInstaller's own bootstrap imports it on every start; packaging/boot.py replaces that bootstrap.
HEAVY_AT_ENTRY = {"inspect", "subprocess", "asyncio", "multiprocessing", "pkgutil", "typing", "logging", "ctypes"}
HEAVY_ON_VERSION = HEAVY_AT_ENTRY - {"typing"} | {"pyroute2", "filelock", "netaddr", "ctypes.util", "threading"}
DROPPED_HOOKS = {"pyi_rth_inspect", "pyi_rth_multiprocessing", "pyi_rth_pkgutil"}


def module_dumps(argv: list[str], env: dict[str, str]) -> dict[str, set[str]]:
    res = subprocess.run(argv, env={**env, "CNI_IGNITE_DEBUG_MODULES": "1"}, input=b"", capture_output=True,
                         timeout=30, check=False)
    assert res.returncode == 0, res.stderr.decode()
    dumps = [json.loads(line) for line in res.stderr.decode().splitlines() if line.startswith('{"stage"')]
    return {d["stage"]: set(d["modules"]) for d in dumps}


def test_no_runtime_hook_in_the_executable() -> None:
    from PyInstaller.archive.readers import CArchiveReader

    scripts = {name for name, (*_, typecode) in CArchiveReader(str(EXE)).toc.items() if typecode == "s"}
    assert scripts == {"cni_ignite_boot", "entry"}, sorted(scripts)  # packaging/boot.py, not pyiboot01_bootstrap
    assert not scripts & DROPPED_HOOKS, sorted(scripts)


@pytest.mark.parametrize("name", ["ignite-bridge", "ignite-ipam", "loopback"])
def test_entry_and_version_path_import_nothing_heavy(plugin_dir: Path, name: str) -> None:
    dumps = module_dumps([str(plugin_dir / name)], {"CNI_COMMAND": "VERSION", "PATH": MINIMAL_PATH})
    assert sorted(dumps["entry"] & HEAVY_AT_ENTRY) == []
    assert not any(m.startswith("cni_ignite") for m in dumps["entry"])
    loaded = {m.split(".")[0] for m in dumps["exit"]} | dumps["exit"]
    assert sorted(loaded & HEAVY_ON_VERSION) == []


def test_admin_entry_imports_nothing_heavy_either() -> None:
    dumps = module_dumps([str(EXE), "version"], {"PATH": MINIMAL_PATH})
    assert sorted(dumps["entry"] & HEAVY_AT_ENTRY) == []


def source_modules() -> list[str]:
    pkg = REPO / "cni_ignite"
    names = []
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# The multi-node agent (`cni-ignite node`) imports pyroute2's IPRoute (with asyncio): both are bundled for the
# admin command; the plugins never import them (test below).
NEEDS_PYROUTE2 = ("cni_ignite.node.__main__", "cni_ignite.node.agent", "cni_ignite.node.dataplane")


def test_every_cni_ignite_module_is_bundled_and_imports_frozen() -> None:
    modules = source_modules()
    res = subprocess.run([str(EXE)], env={"CNI_IGNITE_DEBUG_IMPORT": ",".join(modules), "PATH": MINIMAL_PATH},
                         capture_output=True, timeout=60, check=False)
    assert json.loads(res.stdout) == {"failed": {}}, res.stderr.decode()
    assert res.returncode == 0


def test_the_node_agent_imports_frozen() -> None:
    res = subprocess.run([str(EXE)], env={"CNI_IGNITE_DEBUG_IMPORT": ",".join(NEEDS_PYROUTE2), "PATH": MINIMAL_PATH},
                         capture_output=True, timeout=60, check=False)
    assert json.loads(res.stdout) == {"failed": {}}, res.stdout.decode()


def test_no_plugin_module_imports_pyroute2() -> None:
    """The plugins' rtnetlink messages are built with struct (cni_ignite/netlink/_msg.py); only the node agent
    (cni_ignite/node, the admin command's) uses pyroute2, which the bundle carries for it."""
    import ast

    def imports_pyroute2(path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "pyroute2" for n in names):
                return True
        return False

    users = [p.relative_to(REPO) for p in (REPO / "cni_ignite").rglob("*.py")
             if "node" not in p.relative_to(REPO).parts and imports_pyroute2(p)]
    assert users == []


def test_the_module_index_lists_every_bundled_module() -> None:
    """packaging/boot.py finds modules through _internal/cni-ignite.modules (written by the spec)."""
    import marshal

    internal = EXE.parent / "_internal"
    index = marshal.loads((internal / "cni-ignite.modules").read_bytes())
    for name in source_modules():
        rel, kind = index[name]
        assert (internal / rel).is_file(), name
        assert kind == ("p" if rel.endswith("__init__.pyc") else "m"), (name, rel, kind)
    assert index["_socket"][1] == "e" and (internal / index["_socket"][0]).is_file()
    assert len(index) == sum(1 for p in internal.rglob("*.pyc")) + sum(
        1 for p in internal.glob("python3.11/lib-dynload/*.so"))
