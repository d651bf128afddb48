"""Faults that only the frozen plugin answers wrongly, found by the long sweep (``make faults-long`` on the
bundle). Needs the frozen bundle (FAULTS_PLUGIN_DIR, else CNI_IGNITE_DIST, else dist/).

Start-up faults before the interpreter runs our entry script (the bootloader's own opens, the interpreter's
``encodings``, PyInstaller's ``pyimod0*`` bootstrap modules) cannot answer at all; RESULTS.md lists them. The
ones here come after packaging/entry.py is able to answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import harness
import pytest
from harness import REPO, Case, Scenario, run_case
from nsutil import Namespaces

pytestmark = [pytest.mark.privileged, pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")]


def bundle_exe() -> Path:
    """The frozen bundle's executable: in FAULTS_PLUGIN_DIR when that holds a bundle, else the frozen tests' one."""
    for base in (os.environ.get("FAULTS_PLUGIN_DIR", ""), os.environ.get("CNI_IGNITE_DIST", ""), str(REPO / "dist")):
        exe = Path(base, "cni-ignite", "cni-ignite") if base else None
        if exe is not None and exe.is_file() and os.access(exe, os.X_OK):
            return exe.resolve()
    pytest.skip("no frozen bundle (dist/cni-ignite/cni-ignite): run `make build`, or set FAULTS_PLUGIN_DIR")


def test_an_io_error_opening_the_bundles_module_archive_answers_code_5(tmp_path: Path) -> None:
    exe = bundle_exe()
    spaces = Namespaces()
    try:
        host, ctr = spaces.new("cnit-fhost"), spaces.new("cnit-fctr")
        conf = json.dumps({"cniVersion": "1.1.0", "name": "startnet", "type": "ignite-ipam",
                           "ipam": {"type": "ignite-ipam", "subnet": "10.61.7.0/24",
                                    "dataDir": str(tmp_path / "data")}}).encode()
        ipam = tmp_path / "bin" / "ignite-ipam"  # the plugin name is argv[0]: a link named as the plugin
        ipam.parent.mkdir()
        ipam.symlink_to(exe)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "start-ctr",
               "CNI_NETNS": f"/var/run/netns/{ctr}", "CNI_IFNAME": "eth0", "CNI_PATH": str(ipam.parent)}

        def run(*opts: str, verb: str = "ADD") -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(["ip", "netns", "exec", host, "strace", "-qq", *opts, str(ipam)], input=conf,
                                  env={**env, "CNI_COMMAND": verb}, capture_output=True, timeout=120, check=False)

        trace = tmp_path / "trace"
        clean = run("-o", str(trace), "-e", "trace=openat")
        assert clean.returncode == 0, clean.stdout.decode() + clean.stderr.decode()
        assert run("-o", "/dev/null", verb="DEL").returncode == 0
        lines = [ln for ln in trace.read_text().splitlines() if ln.startswith("openat(")]
        # Python's open() of the executable (O_CLOEXEC; the bootloader's own opens have none): the PYZ reader
        index = next(i for i, ln in enumerate(lines, 1) if f'"{exe}", O_RDONLY|O_CLOEXEC' in ln)
        res = run("-o", "/dev/null", "-e", "trace=openat", "-e", f"inject=openat:error=EIO:when={index}")
        out = res.stdout.decode()
        doc = json.loads(out)  # exactly one JSON object (entry.py answers whenever Python runs)
        assert res.returncode != 0 and doc.get("code") == 5, out + res.stderr.decode()
        assert not list((tmp_path / "data").glob("startnet/1*")), "a failed ADD left a lease"
    finally:
        spaces.cleanup()


def test_an_io_error_in_a_lazy_import_answers_code_5_without_a_traceback(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    exe = bundle_exe()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ignite-bridge", "ignite-ipam"):
        (bin_dir / name).symlink_to(exe)
    monkeypatch.setattr(harness, "PLUGIN_DIR", bin_dir)
    with Scenario("bridge") as sc:
        sc.prepare()
        index = sc.locate("ADD", "read", r'^openat\(AT_FDCWD, "[^"]*cni_ignite/netlink/(__pycache__/)?sysctl\.')
        case = run_case(sc, Case("bridge", "ADD", "read", index, "EIO"))
    assert case.injected, f"{case.name} was not injected"
    assert case.outcome == "code-5" and not case.problems, f"{case.name}: {case.outcome} {case.problems}"
