"""Faults injected with strace into the frozen plugin (issue 13): once Python runs, every call answers with
exactly one JSON object on stdout (its result or a CNI error), never a traceback or "Failed to execute
script" alone, and a failed write of the answer leaves nothing else behind.

The window is every openat of the plugin process after the bootloader has extracted the entry script (the
last open of the executable without O_CLOEXEC). Before it, the bootloader (C) and the interpreter's own
start-up run, which cannot answer; benchmarks/IMPORTS.md lists what happens there. strace counts a
syscall per process, so ``when=N`` faults the plugin's N-th openat (children count their own).
ADDs run in a throwaway host netns with a container netns per call and temp dataDir/stateDir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from bundle import EXE, MINIMAL_PATH
from test_frozen_bridge import network

if TYPE_CHECKING:
    from pathlib import Path

    from nsutil import Namespaces

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
SAMPLES = int(os.environ.get("CNI_IGNITE_FAULT_SAMPLES", "30"))  # the ADD sweep; more for a full run


def strace(plugin: Path, env: dict[str, str], stdin: bytes, *opts: str, netns: str = "",
           ) -> subprocess.CompletedProcess[bytes]:
    argv = ["strace", "-qq", *opts, "env", "-i", *(f"{k}={v}" for k, v in env.items()), str(plugin)]
    # strace traces env too: it execs the plugin in the same process, so the counts below include env's
    # few openats; the window is found in the same kind of run, so they cancel out.
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=120, check=False)


def openat_window(plugin: Path, env: dict[str, str], stdin: bytes, trace: Path, netns: str = "") -> range:
    res = strace(plugin, env, stdin, "-e", "trace=openat", "-o", str(trace), netns=netns)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    lines = trace.read_text().splitlines()
    exe_opens = [i for i, ln in enumerate(lines, 1) if f'"{EXE}", O_RDONLY)' in ln]
    assert exe_opens, "the bootloader's extraction of the entry script was not seen"
    return range(exe_opens[-1] + 1, len(lines) + 1)


def sample(window: range, k: int = SAMPLES) -> list[int]:
    if len(window) <= k:
        return list(window)
    step = len(window) / k
    return sorted({window.start + int(i * step) for i in range(k)} | {window.start, window.stop - 1})


def one_object(res: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """stdout is exactly one JSON object; its kind agrees with the exit status."""
    out = res.stdout.decode(errors="replace")
    why = f"stdout={out!r} stderr={res.stderr.decode(errors='replace')[-600:]!r}"
    try:
        doc = json.loads(out)
    except ValueError:
        pytest.fail(f"stdout is not one JSON object (rc {res.returncode}): {why}")
    assert isinstance(doc, dict), why
    assert out.count("\n") == 1 and out.endswith("\n"), why
    assert ("code" in doc) == (res.returncode != 0), why
    if "code" in doc:
        assert isinstance(doc["code"], int) and doc["msg"], why
        assert doc["cniVersion"], why
    return doc


def test_version_answers_one_object_whatever_openat_fails(plugin_dir: Path, tmp_path: Path) -> None:
    plugin = plugin_dir / "ignite-bridge"
    env = {"PATH": MINIMAL_PATH, "CNI_COMMAND": "VERSION"}
    stdin = b'{"cniVersion":"0.4.0"}'
    window = openat_window(plugin, env, stdin, tmp_path / "trace")
    codes = set()
    for n in window:  # VERSION opens few files: every one of them
        res = strace(plugin, env, stdin, "-o", "/dev/null", "-e", "trace=openat",
                     "-e", f"inject=openat:error=EIO:when={n}")
        doc = one_object(res)
        codes.add(doc.get("code"))
        assert doc["cniVersion"] == "0.4.0", (n, doc)  # the config's version, also when skel never ran
    assert 5 in codes  # some faults did hit the import phase


@pytest.mark.privileged
def test_bridge_add_answers_one_object_whatever_openat_fails(plugin_dir: Path, tmp_path: Path,
                                                             netns: Namespaces) -> None:
    from nsutil import path

    host = netns.new("cnit-flth")
    conf = network(tmp_path)
    conf["cniVersion"] = "1.0.0"
    stdin = json.dumps(conf).encode()
    plugin = plugin_dir / "ignite-bridge"

    def env(ctr: str, cid: str) -> dict[str, str]:
        return {"PATH": MINIMAL_PATH, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": path(ctr),
                "CNI_IFNAME": "eth0", "CNI_PATH": str(plugin_dir)}

    openat_window(plugin, env(netns.new("cnit-fltc"), "fault-first"), stdin, tmp_path / "trace", netns=host)
    window = openat_window(plugin, env(netns.new("cnit-fltc"), "fault-dry"), stdin, tmp_path / "trace", netns=host)
    errors = 0
    for n in sample(window):
        ctr = netns.new("cnit-fltc")
        res = strace(plugin, env(ctr, f"fault-{n}"), stdin, "-f", "-o", "/dev/null", "-e", "trace=openat",
                     "-e", f"inject=openat:error=EIO:when={n}", netns=host)
        doc = one_object(res)
        if "code" in doc:
            errors += 1
            assert doc["cniVersion"] == "1.0.0", (n, doc)
        if os.environ.get("CNI_IGNITE_FAULT_LOG"):
            print(n, res.returncode, res.stdout[:400])
    assert errors, "no sampled fault made the ADD fail: the window missed the import phase"


def _stdout_write_index(plugin: Path, env: dict[str, str], stdin: bytes, trace: Path, netns: str = "") -> int:
    res = strace(plugin, env, stdin, "-e", "trace=write", "-o", str(trace), netns=netns)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    writes = [ln for ln in trace.read_text().splitlines() if ln.startswith("write(")]
    ours = [i for i, ln in enumerate(writes, 1) if ln.startswith("write(1,")]
    assert len(ours) == 1, writes  # the answer goes out in one write
    return ours[0]


def test_failed_write_of_the_version_answer_leaves_stdout_empty(plugin_dir: Path, tmp_path: Path) -> None:
    plugin = plugin_dir / "ignite-ipam"
    env = {"PATH": MINIMAL_PATH, "CNI_COMMAND": "VERSION"}
    k = _stdout_write_index(plugin, env, b"", tmp_path / "trace")
    res = strace(plugin, env, b"", "-o", "/dev/null", "-e", "trace=write", "-e", f"inject=write:error=EIO:when={k}")
    assert res.returncode != 0
    assert res.stdout == b"", res.stdout
    assert b"writing the answer to stdout failed" in res.stderr


@pytest.mark.privileged
def test_failed_write_of_the_add_result_leaves_stdout_empty(plugin_dir: Path, tmp_path: Path,
                                                             netns: Namespaces) -> None:
    """Before: the result stayed buffered and was flushed at exit behind an error object (unparseable)."""
    from nsutil import path

    host = netns.new("cnit-flwh")
    conf = network(tmp_path)
    stdin = json.dumps(conf).encode()
    plugin = plugin_dir / "ignite-bridge"

    def env(cid: str) -> dict[str, str]:
        ctr = netns.new("cnit-flwc")
        return {"PATH": MINIMAL_PATH, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": path(ctr),
                "CNI_IFNAME": "eth0", "CNI_PATH": str(plugin_dir)}

    _stdout_write_index(plugin, env("write-first"), stdin, tmp_path / "trace", netns=host)  # makes the bridge
    k = _stdout_write_index(plugin, env("write-dry"), stdin, tmp_path / "trace", netns=host)  # as the next one
    res = strace(plugin, env("write-fault"), stdin, "-o", "/dev/null", "-e", "trace=write",
                 "-e", f"inject=write:error=EIO:when={k}", netns=host)
    assert res.returncode != 0
    assert res.stdout == b"", res.stdout
    assert b"writing the answer to stdout failed" in res.stderr


def test_entry_knows_the_supported_versions_without_importing() -> None:
    """packaging/entry.py answers import failures with a literal copy of version.SUPPORTED."""
    import importlib.util

    from bundle import REPO

    from cni_ignite.version import SUPPORTED

    spec = importlib.util.spec_from_file_location("cni_ignite_entry", REPO / "packaging" / "entry.py")
    assert spec is not None and spec.loader is not None
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    assert entry.CNI_VERSIONS == SUPPORTED
    assert entry._top_level_cni_version(b'{"args":{"cniVersion":"x"},"cniVersion" : "0.4.0",'
                                        b'"prevResult":{"cniVersion":"1.0.0"}}') == "0.4.0"
    assert entry._top_level_cni_version(b'{"name":"a\\"cniVersion\\"","cniVersion":"1.0.0"}') == "1.0.0"
    assert entry._top_level_cni_version(b"not json") == ""
    text = 'a"b\\c\n\u00e9\U0001f600'
    assert json.loads(entry._json_str(text)) == text
