"""skel.run, in-process with a fake world and handlers that only parse (the real parsers of both plugins,
read-only): for any environment and stdin, the answer is one JSON line on stdout, a CNI error is never
code 999 and nothing else (a traceback) is printed."""

from __future__ import annotations

import io
import json
import tempfile
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from strategies import cni_envs, netconf_docs, stdin_bytes, to_json

from cni_ignite import skel
from cni_ignite.bridge.config import parse_bridge_config
from cni_ignite.firewall.base import parse_firewall_config
from cni_ignite.ipam import plugin as ipam_plugin
from cni_ignite.result import IPConfig, Result, decode
from cni_ignite.version import SUPPORTED

RESULT = Result(ips=(IPConfig(address=ip_interface("10.61.0.2/16")),))
LOG_DIR = Path(tempfile.mkdtemp(prefix="cni-ignite-fuzz-log-"))  # the only place a fuzzed logFile may point


def _ipam(cmd: skel.CmdArgs, *, strict: bool = True) -> None:
    ipam_plugin.config_of(cmd)
    ipam_plugin.who_of(cmd, strict=strict)


def _ipam_config(cmd: skel.CmdArgs) -> None:
    ipam_plugin.config_of(cmd)


def _bridge(cmd: skel.CmdArgs) -> None:
    cfg = parse_bridge_config(cmd.conf, cmd.args)
    parse_firewall_config(cmd.conf.raw, cmd.conf.runtime_config)
    if cfg.ipam_type == "ignite-ipam":
        _ipam(cmd)
    if cmd.conf.prev_result is not None:
        decode(cmd.conf.prev_result)


def _parse_and_return(parse: Any) -> Any:
    def add(cmd: skel.CmdArgs) -> Result:
        parse(cmd)
        return RESULT
    return add


HANDLERS = {
    "ignite-ipam": skel.Handlers(add=_parse_and_return(_ipam), delete=lambda c: _ipam(c, strict=False),
                                 check=_ipam, gc=_ipam_config,
                                 status=_ipam_config),
    "ignite-bridge": skel.Handlers(add=_parse_and_return(_bridge), delete=_bridge, check=_bridge, gc=_bridge,
                                   status=_bridge),
}


def _safe_log(raw: bytes) -> bytes:
    """A fuzzed config must not make the call log append to a real file: an absolute logFile is moved
    into LOG_DIR (kept as a plain file name, hostile characters and all)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    if isinstance(doc, dict) and isinstance(doc.get("logFile"), str) and doc["logFile"].startswith("/"):
        name = doc["logFile"].replace("/", "_").replace("\x00", "")[:100] or "log"
        doc["logFile"] = str(LOG_DIR / name) + ("\x00" if "\x00" in doc["logFile"] else "")
        return to_json(doc)
    return raw


def run(plugin: str, env: dict[str, str], raw: bytes) -> tuple[int, str, str]:
    out, err, internal = io.StringIO(), io.StringIO(), []
    rc = skel.run(HANDLERS[plugin], env=env, stdin=io.BytesIO(_safe_log(raw)), stdout=out, stderr=err,
                  about="fuzz", on_internal_error=internal.append)
    assert not internal, f"internal error: {internal[0]!r}"
    return rc, out.getvalue(), err.getvalue()


def check_answer(env: dict[str, str], rc: int, stdout: str, stderr: str) -> None:
    assert "Traceback" not in stderr and "Traceback" not in stdout
    command = env.get("CNI_COMMAND")
    if not command:
        assert rc == 0 and stdout == ""
        return
    lines = stdout.splitlines()
    if rc == 0 and command in ("DEL", "CHECK", "GC", "STATUS"):
        assert stdout == "", stdout
        return
    assert len(lines) == 1 and stdout.endswith("\n"), stdout
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    if rc == 0:
        assert command in ("ADD", "VERSION"), (command, doc)
        assert doc.get("cniVersion") in SUPPORTED
        return
    assert rc == 1
    assert isinstance(doc.get("code"), int) and doc["code"] != 999, doc
    assert isinstance(doc.get("msg"), str) and doc.get("cniVersion") in SUPPORTED, doc


@given(st.sampled_from(sorted(HANDLERS)), cni_envs(), stdin_bytes())
def test_skel_run_answers_one_json_line_and_never_999(plugin: str, env: dict[str, str], raw: bytes) -> None:
    check_answer(env, *run(plugin, env, raw))


@given(st.sampled_from(sorted(HANDLERS)), cni_envs(), netconf_docs())
def test_skel_run_with_a_config_document_never_999(plugin: str, env: dict[str, str], doc: dict[str, Any]) -> None:
    env = {**env, "CNI_COMMAND": env.get("CNI_COMMAND") or "ADD"}
    check_answer(env, *run(plugin, env, to_json(doc)))
