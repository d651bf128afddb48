"""`make release`'s tarball (packaging/release.sh): what it holds, that its .sha256 verifies, that it is
reproducible from the same bundle, and that it installs and runs on a machine with no Python at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from typing import TYPE_CHECKING

import pytest
from bundle import DIST, EXE, MINIMAL_PATH, REPO, python_installations

if TYPE_CHECKING:
    from pathlib import Path

SUPPORTED = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def make_release(out: Path, epoch: str = "1700000000") -> Path:
    env = {"PATH": MINIMAL_PATH, "DIST": str(DIST), "RELEASE_DIR": str(out), "SOURCE_DATE_EPOCH": epoch}
    res = subprocess.run(["bash", str(REPO / "packaging" / "release.sh")], capture_output=True, env=env,
                         cwd=REPO, timeout=300, check=False)
    assert res.returncode == 0, res.stderr.decode() + res.stdout.decode()
    [tarball] = out.glob("cni-ignite-*-linux-*.tar.gz")
    return tarball


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_release(tmp_path_factory.mktemp("release"))


def test_release_is_named_by_version_and_arch_and_its_sha256_verifies(release: Path) -> None:
    version = subprocess.run([str(EXE), "version"], capture_output=True, env={"PATH": MINIMAL_PATH}, check=True,
                             timeout=60).stdout.decode().strip()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    assert release.name == f"cni-ignite-{version}-linux-{arch}.tar.gz"
    sums = release.with_name(release.name + ".sha256")
    assert sums.read_text().split() == [subprocess.run(["sha256sum", str(release)], capture_output=True,
                                                       check=True).stdout.decode().split()[0], release.name]
    res = subprocess.run(["sha256sum", "-c", sums.name], cwd=release.parent, capture_output=True, check=False)
    assert res.returncode == 0 and res.stdout.decode().strip() == f"{release.name}: OK"


def test_release_holds_the_bundle_links_conf_readme_license_flat_like_cni_plugins(release: Path) -> None:
    with tarfile.open(release) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    top = {n.removeprefix("./").split("/")[0] for n in names} - {"", "."}
    assert top >= {"cni-ignite", "ignite-bridge", "ignite-ipam", "conf", "README.md", "LICENSE"}
    assert top <= {"cni-ignite", "ignite-bridge", "ignite-ipam", "conf", "systemd", "README.md", "LICENSE"}
    by_name = {m.name: m for m in members}
    assert by_name["./ignite-bridge"].issym() and by_name["./ignite-bridge"].linkname == "cni-ignite/cni-ignite"
    assert by_name["./ignite-ipam"].linkname == "cni-ignite/cni-ignite"
    assert by_name["./cni-ignite/cni-ignite"].mode & 0o111
    assert "./conf/10-ignite.conflist" in by_name
    assert "./cni-ignite/_internal/conf/10-ignite.conflist" in by_name  # what `install` writes
    # warm start (docs/WORKER.md): the launcher `install --worker` links to, its build id, the worker's unit
    assert by_name["./cni-ignite/cni-ignite-launch"].mode & 0o111
    assert "./cni-ignite/_internal/cni-ignite.build-id" in by_name
    assert {"./systemd/cni-ignite-worker.service", "./systemd/cni-ignite-node.service"} <= set(by_name)
    bundled = sorted(str(p.relative_to(DIST)) for p in (DIST / "cni-ignite").rglob("*"))
    assert sorted(n.removeprefix("./") for n in names if n.startswith("./cni-ignite/")) == bundled


def test_release_entries_are_sorted_with_fixed_owner_and_mtime(release: Path) -> None:
    with tarfile.open(release) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)  # GNU tar --sort=name: byte order of the path
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert {m.mtime for m in members} == {1700000000}
    assert not any(m.mode & 0o022 for m in members if not m.issym())  # nothing group/world-writable
    with release.open("rb") as f:
        head = f.read(10)
    assert head[4:8] == b"\0\0\0\0"  # gzip -n: no timestamp in the header


def test_release_is_reproducible_from_the_same_bundle(release: Path, tmp_path: Path) -> None:
    again = make_release(tmp_path)
    assert again.read_bytes() == release.read_bytes()


@pytest.mark.privileged
def test_release_unpacks_installs_and_runs_where_no_python_is_installed(release: Path, tmp_path: Path) -> None:
    """As on a fresh Debian 12 without Python (every installation hidden under an empty tmpfs in a private
    mount namespace): verify, unpack, `cni-ignite install` into temporary dirs, one VERSION call each."""
    hide = python_installations()
    assert not any(str(tmp_path).startswith(p + "/") for p in hide)
    mounts = "; ".join(f"mount -t tmpfs -o size=1m none {p}" for p in hide)
    unpacked, bin_dir, conf_dir = tmp_path / "unpacked", tmp_path / "opt-cni-bin", tmp_path / "etc-cni-net.d"
    script = (f"set -e; {mounts}; test ! -e {sys.executable}; "
              f"cd {release.parent}; sha256sum -c --quiet {release.name}.sha256; "
              f"mkdir {unpacked}; tar -xzf {release} -C {unpacked}; cd /; "
              f"{unpacked}/cni-ignite/cni-ignite install --bin-dir {bin_dir} --conf-dir {conf_dir}; "
              f"echo ---; env -i CNI_COMMAND=VERSION {bin_dir}/ignite-bridge </dev/null; echo; "
              f"env -i CNI_COMMAND=VERSION {bin_dir}/loopback </dev/null; echo; "
              f"env -i CNI_COMMAND=VERSION {unpacked}/ignite-ipam </dev/null")
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, env={"PATH": MINIMAL_PATH}, timeout=120, check=False)
    assert res.returncode == 0, res.stderr.decode() + res.stdout.decode()
    install_out, _, answers = res.stdout.decode().partition("---\n")
    assert "installed cni-ignite" in install_out
    for line in answers.split():
        assert json.loads(line)["supportedVersions"] == SUPPORTED
    assert os.readlink(bin_dir / "loopback") == "cni-ignite.d/cni-ignite"  # the bin dir had none
    assert json.loads((conf_dir / "10-ignite.conflist").read_text()) == json.loads(
        (unpacked / "conf" / "10-ignite.conflist").read_text())
    # The installed copy uninstalls itself; the unpacked folder is not needed any more.
    res = subprocess.run([str(bin_dir / "cni-ignite.d" / "cni-ignite"), "uninstall", "--bin-dir", str(bin_dir)],
                         capture_output=True, env={"PATH": MINIMAL_PATH}, timeout=60, check=False, cwd="/")
    assert res.returncode == 0, res.stderr.decode()
    assert not bin_dir.exists() and not conf_dir.exists()
