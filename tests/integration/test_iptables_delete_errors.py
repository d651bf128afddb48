"""A DEL whose iptables fails (permission denied, the xtables lock held, ...) reports a CNI error and
keeps the state record: it never mistakes a failing listing for "no such chain" and forgets rules that
are still in the kernel (DNAT included). A really absent chain is still "nothing to remove"."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import pytest
from nsutil import in_ns

from cni_ignite.firewall.base import Owner

if TYPE_CHECKING:
    from pathlib import Path

    from firewallenv import Topo

pytestmark = pytest.mark.privileged
MAPS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
FAKE = "#!/bin/sh\necho \"$(basename \"$0\") v1.8.9 (nf_tables): Permission denied (you must be root)\" >&2\nexit 1\n"


def _fake_tools(tmp_path: Path, names: tuple[str, ...]) -> str:
    folder = tmp_path / "fakebin"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(FAKE)
        (folder / name).chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


def _record(topo: Topo) -> str:
    return os.path.join(topo.state_dir, "net1", Owner("net1", "c1", "eth0").key)


@pytest.mark.parametrize("state", ["record", "record-lost"])
def test_del_with_a_failing_iptables_reports_an_error_and_keeps_the_rules_record(
        topo: Topo, tmp_path: Path, state: str) -> None:
    conf = topo.conf("iptables", runtimeConfig={"portMappings": MAPS})
    topo.add(conf)
    before = topo.ruleset()
    assert "DNAT --to-destination 10.99.0.2:80" in before
    if state == "record-lost":
        shutil.rmtree(os.path.join(topo.state_dir, "net1"))
    path = _fake_tools(tmp_path, ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore",
                                  "iptables-save", "ip6tables-save"))
    out = topo.fw(topo.req("del", topo.conf("iptables")), check=False, path=path)[0]
    assert out.get("code") == 11, out  # try again later: the record stays for the retry
    assert "Permission denied" in out["error"], out
    assert topo.ruleset() == before  # nothing was removed ...
    assert os.path.exists(_record(topo)) == (state == "record")  # ... and the record is kept
    topo.fw(topo.req("del", topo.conf("iptables")))  # with a working iptables the DEL completes
    assert "10.99.0.2" not in topo.ruleset()
    assert not os.path.exists(_record(topo))


def test_del_by_key_treats_an_absent_chain_as_nothing_to_remove(topo: Topo) -> None:
    conf = topo.conf("iptables", runtimeConfig={"portMappings": MAPS})
    topo.add(conf)
    shutil.rmtree(os.path.join(topo.state_dir, "net1"))
    in_ns(topo.host, ["iptables", "-t", "nat", "-F", "PREROUTING"])
    in_ns(topo.host, ["iptables", "-t", "nat", "-F", "OUTPUT"])
    in_ns(topo.host, ["iptables", "-t", "nat", "-F", "CNI-IGNITE-DNAT"])
    in_ns(topo.host, ["iptables", "-t", "nat", "-X", "CNI-IGNITE-DNAT"])  # one shared chain is gone
    topo.fw(topo.req("del", topo.conf("iptables")))
    assert Owner("net1", "c1", "eth0").key not in topo.ruleset()
