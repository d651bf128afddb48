"""iptables attachments made before layout 2 (rules in the shared chains CNI-IGNITE-POSTRT/-DNAT/-FWD
themselves, no bucket sub-chains on the host) keep working after the upgrade next to layout-2 ones, and
DEL with the new code removes them completely: from their layout-1 state record, or by key when the
record is lost."""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING

import pytest
from nsutil import in_ns

from cni_ignite.firewall import state
from cni_ignite.firewall.base import Attachment, Owner, parse_firewall_config
from cni_ignite.firewall.rules import iptables_plan

if TYPE_CHECKING:
    from firewallenv import Topo

pytestmark = pytest.mark.privileged
OLD_HOST = """*nat
:CNI-IGNITE-POSTRT - [0:0]
:CNI-IGNITE-DNAT - [0:0]
-I POSTROUTING 1 -j CNI-IGNITE-POSTRT
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-IGNITE-DNAT
COMMIT
*filter
:CNI-IGNITE-ADMIN - [0:0]
:CNI-IGNITE-FWD - [0:0]
:CNI-IGNITE-INPUT - [0:0]
-I CNI-IGNITE-FWD 1 -j CNI-IGNITE-ADMIN
-I FORWARD 1 -j CNI-IGNITE-FWD
-I INPUT 1 -j CNI-IGNITE-INPUT
-A CNI-IGNITE-INPUT -d 127.0.0.0/8 ! -i lo -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
"""


def add_layout_1(topo: Topo, cid: str, addr: str, *, record: bool) -> None:
    """What the earlier code did: shared chains without buckets, the attachment's rules in them (its
    ADD text: own chains declared, rules appended) and a record without "layout" / "hostIface"."""
    conf = topo.conf("iptables", runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                                  "protocol": "tcp"}]})
    cfg = parse_firewall_config(conf, conf["runtimeConfig"])
    owner = Owner("net1", cid, "eth0")
    att = Attachment(owner, (ipaddress.ip_interface(addr),), "br0")
    plan = iptables_plan(att, cfg, 4, layout=1)
    text = "".join("\n".join([f"*{t}", *(f":{c} - [0:0]" for c in plan.own_chains.get(t, [])),
                              *(f"-A {r.chain} {r.spec}" for r in plan.rules if r.table == t), "COMMIT", ""])
                   for t in plan.tables())
    in_ns(topo.host, ["iptables-restore", "--noflush"], input=(OLD_HOST + text).encode())
    if record:
        state.write(state.Record(owner=owner, backend="iptables", addresses=att.addresses, config=cfg, ports=()))
        path = state.record_path(topo.state_dir, owner)
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        del doc["layout"], doc["hostIface"]
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)


@pytest.mark.parametrize("record", [True, False], ids=["with-record", "record-lost"])
def test_layout_1_iptables_attachment_works_after_the_upgrade_and_del_removes_it(topo: Topo, record: bool) -> None:
    add_layout_1(topo, "old", "10.99.0.2/24", record=record)
    old = Owner("net1", "old", "eth0").key
    assert "-A CNI-IGNITE-FWD -d 10.99.0.2/32" in in_ns(topo.host, ["iptables-save"]).stdout.decode()
    new = topo.conf("iptables", runtimeConfig={"portMappings": [{"hostPort": 8081, "containerPort": 81,
                                                                 "protocol": "tcp"}]})
    topo.add(new, cid="new", addrs=("10.99.0.3/24",))  # the first layout-2 ADD creates the buckets
    topo.serve(topo.c1, "tcp", 80)
    topo.serve(topo.c2, "tcp", 81)
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8080) == "192.0.2.2"  # layout 1, still working
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8081) == "192.0.2.2"  # layout 2
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) == "192.0.2.1"
    assert topo.reach(topo.c2, "tcp", "192.0.2.2", 9000) == "192.0.2.1"
    topo.fw(topo.req("del", topo.conf("iptables"), cid="old"))
    rules = topo.ruleset()
    assert old not in rules and "10.99.0.2" not in rules
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8080) is None
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8081) == "192.0.2.2"
    assert topo.fw(topo.req("check", new, cid="new", addrs=("10.99.0.3/24",)))[0]["problems"] == []
    topo.fw(topo.req("del", topo.conf("iptables"), cid="new"))
    assert "cni-ignite:" not in topo.ruleset()
