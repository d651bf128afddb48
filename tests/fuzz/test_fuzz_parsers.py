"""Every parser, for any input, returns a value or raises one of our CNI errors (never 999, never a
foreign exception); and what a parser accepts is well-formed where it matters downstream."""

from __future__ import annotations

import json
import string
import sys
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    address_texts,
    any_text,
    cni_args,
    json_values,
    netconf_docs,
    port_mappings,
    result_docs,
    runtime_configs,
    stdin_bytes,
    to_json,
)

from cni_ignite import calllog, ipparse, result, version
from cni_ignite.bridge.config import parse_bridge_config
from cni_ignite.errors import CniError
from cni_ignite.firewall.base import parse_firewall_config, parse_port_mappings
from cni_ignite.ipam.config import parse_ipam
from cni_ignite.ipam.plugin import KNOWN_ARGS as IPAM_ARGS
from cni_ignite.netconf import NetConf, parse_cni_args, parse_netconf

if TYPE_CHECKING:
    from collections.abc import Callable

ADDRESS_CHARS = set(string.hexdigits.lower() + ".:/")


def cni(fn: Callable[[], Any]) -> Any:
    """fn's value, or None when it raised one of our errors (with a real code, and a printable message)."""
    try:
        return fn()
    except CniError as exc:
        assert exc.code != 999, f"internal error for a parser input: {exc!r}"
        json.dumps(exc.as_dict("1.0.0"))  # the error object can be printed
        return None


def netconf_of(doc: dict[str, Any], version: str = "1.0.0") -> NetConf | None:
    return cni(lambda: parse_netconf(to_json({"cniVersion": version, "name": "n", **doc})))


# ------------------------------------------------------------------------------------------ netconf

@given(stdin_bytes())
def test_parse_netconf_raises_only_cni_errors(raw: bytes) -> None:
    conf = cni(lambda: parse_netconf(raw))
    if conf is not None:
        assert conf.cni_version in version.SUPPORTED
        assert isinstance(conf.runtime_config, dict) and isinstance(conf.args, dict)
        assert conf.name and "\n" not in conf.name and "/" not in conf.name and "\x00" not in conf.name


@given(netconf_docs(), cni_args())
def test_ipam_config_raises_only_cni_errors(doc: dict[str, Any], args: str) -> None:
    conf = netconf_of(doc, doc.get("cniVersion") if doc.get("cniVersion") in version.SUPPORTED else "1.0.0")
    if conf is None:
        return
    cfg = cni(lambda: parse_ipam(conf, parse_cni_args(args, IPAM_ARGS)))
    if cfg is None:
        return
    assert cfg.data_dir.startswith("/") and ".." not in cfg.data_dir.split("/") and "\x00" not in cfg.data_dir
    for rs in cfg.range_sets:
        for r in rs:
            assert r.start in r.subnet and r.end in r.subnet and r.start <= r.end  # type: ignore[operator]
    for ip in (*cfg.requested, *(r.address for r in cfg.reservations)):
        assert set(str(ip)) <= ADDRESS_CHARS


@given(netconf_docs("ignite-bridge"), cni_args())
def test_bridge_config_raises_only_cni_errors(doc: dict[str, Any], args: str) -> None:
    conf = netconf_of(doc)
    if conf is None:
        return
    cfg = cni(lambda: parse_bridge_config(conf, args))
    if cfg is None:
        return
    for name in (cfg.bridge, cfg.vm.tap):
        assert 0 < len(name.encode()) <= 15 and name not in (".", "..")
        assert not any(c in "/:" or c.isspace() for c in name), name


@given(netconf_docs("ignite-bridge"))
def test_firewall_config_raises_only_cni_errors(doc: dict[str, Any]) -> None:
    conf = netconf_of(doc)
    if conf is None:
        return
    cfg = cni(lambda: parse_firewall_config(conf.raw, conf.runtime_config))
    if cfg is None:
        return
    assert cfg.state_dir.startswith("/")
    for cond in (*cfg.conditions_v4, *cfg.conditions_v6):
        assert not any(c in cond for c in "\n\r\x00;#"), cond


@given(st.one_of(st.lists(port_mappings(), max_size=6), json_values()))
def test_port_mappings_raise_only_cni_errors(raw: Any) -> None:
    maps = cni(lambda: parse_port_mappings(raw))
    for m in maps or ():
        assert 1 <= m.host_port <= 65535 and 1 <= m.container_port <= 65535
        assert m.protocol in ("tcp", "udp", "sctp")
        assert set(m.host_ip) <= ADDRESS_CHARS


@given(runtime_configs())
def test_runtime_config_reaches_the_parsers_under_any_key_spelling(runtime: dict[str, Any]) -> None:
    conf = netconf_of({"type": "ignite-bridge", "runtimeConfig": runtime, "ipam": {"type": "ignite-ipam"}})
    if conf is None:
        return
    cni(lambda: parse_firewall_config(conf.raw, conf.runtime_config))
    cni(lambda: parse_ipam(conf, {}))
    cni(lambda: parse_bridge_config(conf, ""))


# ------------------------------------------------------------------------------------------ result, version

@given(result_docs())
def test_result_decode_raises_only_decoding_failure(doc: Any) -> None:
    res = cni(lambda: result.decode(doc))
    if res is None:
        return
    for v in version.SUPPORTED:  # whatever was decoded can be printed in every version (0.2.0 may refuse)
        out = cni(lambda v=v: result.encode(res, v))
        if out is not None:
            json.dumps(out)


@given(st.one_of(any_text(12), st.sampled_from(version.SUPPORTED)), st.sampled_from(["CHECK", "GC", "STATUS", "ADD"]))
def test_version_functions_raise_only_incompatible_version(text: str, verb: str) -> None:
    cni(lambda: version.parse(text))
    if cni(lambda: version.require_supported(text)) is not None:
        cni(lambda: version.require_verb(verb, text))


# ------------------------------------------------------------------------------------------ ipparse

@given(st.one_of(address_texts(), json_values(3)))
def test_ipparse_accepts_only_address_text_and_prints_only_address_characters(value: Any) -> None:
    for fn in (ipparse.ip_address, ipparse.ip_interface, ipparse.ip_network):
        try:
            parsed = fn(value)
        except ValueError:
            continue
        assert isinstance(value, str) and "%" not in value
        assert set(str(parsed)) <= ADDRESS_CHARS, (value, str(parsed))


# ------------------------------------------------------------------------------------------ call log

@given(st.dictionaries(st.sampled_from(["logFile", "logLevel", "logMaxBytes", "x"]), json_values(4)))
def test_call_log_config_never_raises(raw: dict[str, Any]) -> None:
    cfg = calllog.log_config(raw)
    if cfg is not None:
        path, _, max_bytes = cfg
        assert path.startswith("/") and "\x00" not in path and max_bytes >= 4096


# ------------------------------------------------------------------------------------------ deep nesting

def _deepest_loadable(kind: str) -> int:
    """The largest nesting depth json.loads accepts at this stack depth (it depends on the caller's stack)."""
    lo, hi = 1, sys.getrecursionlimit() + 10
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            json.loads("[" * mid + "]" * mid if kind == "list" else '{"a":' * mid + "1" + "}" * mid)
            lo = mid
        except RecursionError:
            hi = mid - 1
    return lo


@pytest.mark.parametrize("key", ["runtimeConfig", "args", "prevResult", "ipam", "dns", "vm", "capabilities"])
def test_config_nested_just_below_the_decoder_limit_is_a_cni_error_or_accepted(key: str) -> None:
    """A value nested as deep as json.loads still accepts must not overflow later, in repr() or json.dumps of
    an error message or a log line (that would be a RecursionError: code 999)."""
    top = _deepest_loadable("list")
    for depth in range(max(top - 60, 1), top + 3):
        nested = "[" * depth + "]" * depth
        raw = f'{{"cniVersion":"1.0.0","name":"n","type":"ignite-bridge","{key}":{nested}}}'.encode()
        conf = cni(lambda raw=raw: parse_netconf(raw))
        if conf is None:
            continue
        cni(lambda conf=conf: parse_bridge_config(conf, ""))
        cni(lambda conf=conf: parse_ipam(conf, {}))
        cni(lambda conf=conf: parse_firewall_config(conf.raw, conf.runtime_config))
        if conf.prev_result is not None:
            cni(lambda conf=conf: result.decode(conf.prev_result))


def test_state_dir_with_a_nul_is_refused() -> None:
    """Found reading the accepted paths of test_firewall_config_raises_only_cni_errors: ipam.dataDir refuses a
    NUL (code 7), stateDir does not, and os.listdir/open raise ValueError (not OSError) on it."""
    from cni_ignite.errors import InvalidConfig

    with pytest.raises(InvalidConfig):
        parse_firewall_config({"stateDir": "/run/cni/x\x00y"})
