"""The `loopback` plugin (cni_ignite.loopback) in throwaway namespaces, compared with the reference binary."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import pytest
from cnirun import GO_PLUGINS, Call, call
from nsutil import in_ns, path

if TYPE_CHECKING:
    from pathlib import Path

    from nsutil import Namespaces

pytestmark = pytest.mark.privileged
REFERENCE = GO_PLUGINS / "loopback"


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    """`loopback` from the source tree, as a runtime would find it in a bin dir."""
    exe = tmp_path / "bin" / "loopback"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m cni_ignite.cli loopback \"$@\"\n")
    exe.chmod(0o755)
    return exe


def conf(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "lo-net", "type": "loopback", **extra}


def lo_up(ns: str) -> bool:
    flags = in_ns(ns, ["cat", "/sys/class/net/lo/flags"]).stdout.decode()
    return bool(int(flags, 16) & 1)


def down_ns(netns: Namespaces) -> str:
    """A namespace whose lo is down, as a runtime hands it to the loopback plugin."""
    ns = netns.new("cnilo")
    in_ns(ns, ["ip", "link", "set", "lo", "down"])
    assert not lo_up(ns)
    return ns


def run(plugin: Path, command: str, ns: str | None, c: dict[str, Any], **kw: Any) -> Call:
    return call(plugin, command, c, container_id="ctr-lo", netns=path(ns) if ns else "", ifname="lo", **kw)


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_add_brings_lo_up_and_reports_it_like_the_reference(plugin: Path, netns: Namespaces, version: str) -> None:
    if not REFERENCE.exists():
        pytest.skip(f"no reference plugin at {REFERENCE}")
    ours_ns, ref_ns = down_ns(netns), down_ns(netns)
    ours = run(plugin, "ADD", ours_ns, conf(version)).ok().out
    ref = run(REFERENCE, "ADD", ref_ns, conf(version)).ok().out
    assert lo_up(ours_ns)
    assert ours and ref
    for doc, ns in ((ours, ours_ns), (ref, ref_ns)):
        assert doc["interfaces"][0].pop("sandbox") == path(ns)
        for ip in doc["ips"]:
            ip.pop("version", None)  # 0.3.x/0.4.0 carry it (spec); the reference's conversion leaves it out
    assert ours == ref
    assert [ip["address"] for ip in ours["ips"]] == ["127.0.0.1/8", "::1/128"]
    assert ours["interfaces"] == [{"name": "lo", "mac": "00:00:00:00:00:00"}]


def test_add_speaks_1_1_0(plugin: Path, netns: Namespaces) -> None:
    ns = down_ns(netns)
    out = run(plugin, "ADD", ns, conf("1.1.0")).ok().out
    assert out and out["cniVersion"] == "1.1.0" and out["interfaces"][0]["name"] == "lo"
    run(plugin, "CHECK", ns, conf("1.1.0")).ok()
    run(plugin, "GC", None, conf("1.1.0", **{"cni.dev/valid-attachments": []})).ok()
    run(plugin, "STATUS", None, conf("1.1.0")).ok()


def test_add_passes_a_prev_result_through(plugin: Path, netns: Namespaces) -> None:
    ns = down_ns(netns)
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": path(ns)}],
            "ips": [{"address": "10.1.0.2/24", "interface": 0}], "dns": {}}
    out = run(plugin, "ADD", ns, conf(prevResult=prev)).ok().out
    assert out == {**prev, "cniVersion": "1.0.0"}
    assert lo_up(ns)


def test_del_sets_lo_down_and_check_sees_it(plugin: Path, netns: Namespaces) -> None:
    ns = down_ns(netns)
    res = run(plugin, "CHECK", ns, conf())
    assert res.rc == 1 and res.out and "down" in res.out["msg"]
    run(plugin, "ADD", ns, conf()).ok()
    run(plugin, "CHECK", ns, conf()).ok()
    run(plugin, "DEL", ns, conf()).ok()
    assert not lo_up(ns)
    run(plugin, "DEL", ns, conf()).ok()  # a second DEL is success too


def test_del_without_netns_or_with_a_vanished_one_succeeds(plugin: Path, netns: Namespaces) -> None:
    ns = netns.new("cnilo")
    gone = path(ns)
    netns.cleanup()
    assert not os.path.exists(gone)
    run(plugin, "DEL", ns, conf()).ok()
    run(plugin, "DEL", None, conf()).ok()


def test_add_into_a_missing_netns_is_a_clear_error(plugin: Path) -> None:
    res = run(plugin, "ADD", "cnilo-does-not-exist", conf())
    assert res.rc == 1 and res.out
    assert res.out["code"] == 3 and "does not exist" in res.out["msg"]


def test_own_network_namespace_is_refused(plugin: Path, netns: Namespaces) -> None:
    """CNI_NETNS naming the caller's own namespace would take its lo down on DEL: refused, nothing changed.
    Run inside a throwaway namespace so that even a wrong answer never touches this machine's lo."""
    ns = netns.new("cnilo")
    for verb in ("DEL", "ADD"):
        res = run(plugin, verb, ns, conf(), host_ns=ns)
        assert res.rc == 1 and res.out, res
        assert res.out["code"] == 8 and "own network namespace" in res.out["msg"]
        assert lo_up(ns)


def test_non_loopback_address_on_lo_is_an_error_like_the_reference(plugin: Path, netns: Namespaces) -> None:
    ns = down_ns(netns)
    in_ns(ns, ["ip", "addr", "add", "192.0.2.1/32", "dev", "lo"])
    res = run(plugin, "ADD", ns, conf())
    assert res.rc == 1 and res.out and "non-loopback address 192.0.2.1" in res.out["msg"]


def test_bad_config_is_a_cni_error_not_a_traceback(plugin: Path, netns: Namespaces) -> None:
    ns = down_ns(netns)
    res = run(plugin, "ADD", ns, "{not json")
    assert res.rc == 1 and res.out and res.out["code"] == 6
    res = run(plugin, "ADD", ns, conf(prevResult={"ips": [{"address": "bogus"}]}))
    assert res.rc == 1 and res.out and res.out["code"] == 6
    assert not lo_up(ns)  # prevResult is validated before any change
