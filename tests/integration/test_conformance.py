"""The conformance suite (``python -m conformance``) run as a test.

Our plugins must pass every case at every cniVersion, from source and frozen. The suite is also run
against Debian's reference plugins to show that it judges: it must pass them where they are right
and flag the leaks they are known for (CNI-NOTES §3.12, masquerade rules left after DEL without a netns).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
OURS = REPO / "conformance" / "ignite.conflist"
REFERENCE = REPO / "conformance" / "ignite-reference.conflist"
GO_PLUGINS = Path("/usr/lib/cni")
FROZEN = Path(os.environ.get("CNI_IGNITE_DIST", str(REPO / "dist"))) / "cni-ignite" / "cni-ignite"
VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def run_suite(cni_path: Path, conflist: Path, out: Path) -> list[dict[str, Any]]:
    report = out / "report.json"
    res = subprocess.run([sys.executable, "-m", "conformance", "--cni-path", str(cni_path), "--conflist",
                          str(conflist), "--report", str(report)], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=False)
    assert report.is_file(), f"suite crashed ({res.returncode}): {res.stderr[-3000:]}"
    rows: list[dict[str, Any]] = json.loads(report.read_text())["rows"]
    print(res.stdout)
    return rows


def assert_all_pass(rows: list[dict[str, Any]]) -> None:
    bad = [f"[{r['version'] or 'any'}] {r['case']}: {r['status']}: expected {r['expected']}; seen {r['seen']}"
           for r in rows if r["status"] in ("FAIL", "BLOCKED")]
    assert not bad, "\n".join(bad)
    # Skips are only for verbs a version does not have; every cniVersion must run the whole chain.
    not_run = [f"[{r['version']}] {r['case']}: {r['seen']}" for r in rows
               if r["status"] == "SKIP" and (r["case"] == "chain" or r["case"].startswith("VERSION"))]
    assert not not_run, "\n".join(not_run)
    for v in VERSIONS:
        assert any(r["version"] == v and r["case"].startswith("ADD: every plugin") and r["status"] == "PASS"
                   for r in rows), f"no chain run at {v}"


def test_our_plugins_pass_every_case_at_every_version_from_source(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "ignite-bridge").exists():
        pytest.fail(f"ignite-bridge is not installed in {bindir}; run `make setup`")
    assert_all_pass(run_suite(bindir, OURS, tmp_path))


@pytest.mark.frozen
def test_our_plugins_pass_every_case_at_every_version_frozen(tmp_path: Path) -> None:
    if not (FROZEN.is_file() and os.access(FROZEN, os.X_OK)):
        pytest.skip(f"no frozen bundle at {FROZEN}: run `make build` (`make test` builds it first)")
    bindir = tmp_path / "cni-bin"
    bindir.mkdir()
    for name in ("ignite-bridge", "ignite-ipam"):
        (bindir / name).symlink_to(FROZEN)
    assert_all_pass(run_suite(bindir, OURS, tmp_path))


def test_suite_flags_the_reference_masquerade_leak_and_passes_its_clean_del(tmp_path: Path) -> None:
    if not (GO_PLUGINS / "bridge").is_file():
        pytest.skip(f"no reference plugins in {GO_PLUGINS}")
    rows = run_suite(GO_PLUGINS, REFERENCE, tmp_path)
    by = {(r["version"], r["case"]): r for r in rows}
    for v in ("0.4.0", "1.0.0"):
        assert by[(v, "ADD: every plugin exits 0 with a result")]["status"] == "PASS"
        assert by[(v, "traffic: container pings its gateway")]["status"] == "PASS"
        # A plain DEL of the reference chain leaves nothing: the suite does not cry wolf.
        assert by[(v, "DEL: nothing left in the host namespace (links, rules, leases)")]["status"] == "PASS"
        for case in ("DEL with the netns already deleted", 'DEL with CNI_NETNS=""'):
            assert by[(v, f"{case}: DEL exit 0")]["status"] == "PASS"
            leak = by[(v, f"{case}: nothing left in the host namespace")]
            assert leak["status"] == "FAIL", leak
            assert "MASQUERADE" in leak["seen"] and "POSTROUTING" in leak["seen"], leak["seen"]
        nocaps = by[(v, "DEL without runtimeConfig (capability args lost): nothing left in the host namespace")]
        assert nocaps["status"] == "FAIL" and "DNAT" in nocaps["seen"], nocaps
    # firewall supports only 0.4.0+: 0.3.1 runs without it and says so, rather than failing.
    assert by[("0.3.1", "VERSION: firewall lists 0.3.1")]["status"] == "SKIP"
    assert by[("0.3.1", "ADD: result shape")]["status"] == "PASS"
    # v1.1.1 answers GC/STATUS with code 3 ("missing containerID") instead of 1.
    assert by[("", "GC bridge: 1.1.0 conf")]["status"] == "FAIL"
