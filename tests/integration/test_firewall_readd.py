"""An ADD repeated after its state record was lost (state dir wiped, a crash between rules and record)
leaves one copy of each rule, not two; DEL then removes everything."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from cni_ignite.firewall.base import Owner

if TYPE_CHECKING:
    from firewallenv import Topo

pytestmark = pytest.mark.privileged
MAPS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]


@pytest.mark.parametrize("kind", ["masq-and-ports", "forward-only"])
@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_add_after_a_lost_state_record_does_not_duplicate_shared_chain_rules(topo: Topo, backend: str,
                                                                               kind: str) -> None:
    conf = topo.conf(backend, runtimeConfig={"portMappings": MAPS}) if kind == "masq-and-ports" else \
        topo.conf(backend, ipMasq=False)
    other = topo.conf(backend, runtimeConfig={"portMappings": [{**MAPS[0], "hostPort": 8081}]})
    topo.add(other, cid="other", addrs=("10.99.0.3/24", "fd99::3/64"))  # shared chains/tables exist, in use
    before = topo.ruleset()
    addrs = ("10.99.0.2/24", "fd99::2/64")
    topo.add(conf, addrs=addrs)
    once = topo.ruleset()
    os.unlink(os.path.join(topo.state_dir, "net1", Owner("net1", "c1", "eth0").key))
    topo.add(conf, addrs=addrs)
    assert topo.ruleset() == once
    assert topo.fw(topo.req("check", conf, addrs=addrs))[0]["problems"] == []
    topo.fw(topo.req("del", topo.conf(backend)))
    assert topo.ruleset() == before
