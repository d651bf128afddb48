"""VERSION from the frozen binaries the way runtimes start them: any cwd, through a symlink, with an
empty or minimal environment, on a machine without Python; and within the start-up budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bundle import EXE, MINIMAL_PATH, python_installations

SUPPORTED = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
PLUGINS = ("ignite-bridge", "ignite-ipam")
ALL_PLUGINS = (*PLUGINS, "loopback")  # loopback: the same executable, linked by install where none exists


def version(argv: list[str], *, env: dict[str, str], cwd: str = "/", stdin: bytes = b"") -> dict[str, object]:
    res = subprocess.run(argv, input=stdin, capture_output=True, env=env, cwd=cwd, timeout=30, check=False)
    assert res.returncode == 0, res.stderr.decode()
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("name", ALL_PLUGINS)
def test_version_from_other_cwd_through_symlink_with_empty_env(plugin_dir: Path, tmp_path: Path, name: str) -> None:
    doc = version([str(plugin_dir / name)], env={"CNI_COMMAND": "VERSION"}, cwd=str(tmp_path))
    assert doc == {"cniVersion": "1.1.0", "supportedVersions": SUPPORTED}


@pytest.mark.parametrize("name", ALL_PLUGINS)
def test_version_with_env_i_and_relative_symlink(plugin_dir: Path, name: str) -> None:
    # exec'd by a relative path from the plugin folder, with env -i: no HOME, no PATH, no LANG.
    res = subprocess.run(["env", "-i", "CNI_COMMAND=VERSION", f"./{name}"], input=b'{"cniVersion":"0.4.0"}',
                         capture_output=True, cwd=plugin_dir, timeout=30, check=False)
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout) == {"cniVersion": "0.4.0", "supportedVersions": SUPPORTED}


@pytest.mark.parametrize("name", ALL_PLUGINS)
def test_version_with_minimal_path_through_symlink_chain(plugin_dir: Path, tmp_path: Path, name: str) -> None:
    # /opt/cni/bin/ignite-ipam -> cni-ignite.d/cni-ignite, and cni-ignite.d -> a generation folder.
    chain = tmp_path / "chain"
    chain.mkdir()
    (chain / "cni-ignite.d").symlink_to(EXE.parent)
    (chain / name).symlink_to("cni-ignite.d/cni-ignite")
    doc = version([str(chain / name)], env={"PATH": MINIMAL_PATH, "CNI_COMMAND": "VERSION"}, cwd="/")
    assert doc["supportedVersions"] == SUPPORTED


@pytest.mark.parametrize("name", PLUGINS)
def test_frozen_version_answer_equals_the_source_plugins(plugin_dir: Path, name: str) -> None:
    """The dispatcher answers VERSION without importing the plugin; it must say what cli would."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        pytest.skip(f"{script} (the source tree's console script) is not installed")
    for stdin in (b"", b'{"cniVersion":"0.3.1"}', b'{"cniVersion":"9.9.9"}', b"not json"):
        env = {"CNI_COMMAND": "VERSION", "PATH": MINIMAL_PATH}
        assert version([str(plugin_dir / name)], env=env, stdin=stdin) == version([str(script)], env=env, stdin=stdin)


def test_plugins_without_cni_command_print_about_to_stderr(plugin_dir: Path) -> None:
    for name in ALL_PLUGINS:
        res = subprocess.run([str(plugin_dir / name)], capture_output=True, env={}, timeout=30, check=False)
        assert res.returncode == 0
        assert res.stdout == b""
        assert name in res.stderr.decode()
        assert "1.1.0" in res.stderr.decode()


@pytest.mark.privileged
def test_runs_where_no_python_is_installed(plugin_dir: Path) -> None:
    """In a private mount namespace every Python installation (system, pyenv, the venv) is hidden under an
    empty tmpfs, as on a fresh Debian 12 with no Python packages: the bundle needs none of them."""
    hide = python_installations(keep=EXE)
    mounts = "; ".join(f"mount -t tmpfs -o size=1m none {p}" for p in hide)
    script = (f"set -e; {mounts}; "
              f"test ! -e {sys.executable}; "
              f"CNI_COMMAND=VERSION {plugin_dir}/ignite-ipam </dev/null; "
              f"CNI_COMMAND=VERSION {plugin_dir}/ignite-bridge </dev/null; "
              f"{EXE} version")
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, env={"PATH": MINIMAL_PATH}, timeout=60, check=False)
    assert res.returncode == 0, res.stderr.decode()
    lines = res.stdout.decode().splitlines()
    assert json.loads(lines[0])["supportedVersions"] == SUPPORTED
    assert json.loads(lines[1])["supportedVersions"] == SUPPORTED
    assert lines[2].strip()


def test_bundle_links_only_bundled_or_base_system_libraries() -> None:
    """Every shared library the bundle needs is inside it or in Debian's essential libc6/zlib (resolved as the
    bootloader does: with LD_LIBRARY_PATH set to the bundle's _internal folder)."""
    base = ("libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "libutil.so", "ld-linux", "linux-vdso",
            "libz.so", "libgcc_s.so")
    problems = []
    for path in [EXE, *sorted(p for p in EXE.parent.rglob("*.so*") if p.is_file())]:
        res = subprocess.run(["ldd", str(path)], capture_output=True, timeout=30, check=False,
                             env={"PATH": MINIMAL_PATH, "LD_LIBRARY_PATH": str(EXE.parent / "_internal")})
        for line in res.stdout.decode().splitlines():
            name, _, where = line.strip().partition(" => ")
            target = where.split(" (")[0].strip()
            if "not found" in where:
                problems.append(f"{path.name}: {name} not found")
            elif target.startswith("/") and not target.startswith(str(EXE.parent)) and not name.startswith(base):
                problems.append(f"{path.name}: {name} from {target}")
            elif "python" in target.lower() and not target.startswith(str(EXE.parent)):
                problems.append(f"{path.name}: {name} from a Python installation {target}")
    assert not problems, problems


def test_bundle_libraries_are_stripped() -> None:
    """--strip: no ELF symbol table (.symtab) left in libpython or the extension modules."""
    libs = [p for p in EXE.parent.rglob("*.so*") if p.is_file()]
    assert any(p.name.startswith("libpython") for p in libs)
    unstripped = [p.name for p in libs if b".symtab\0" in p.read_bytes()]
    assert unstripped == []
