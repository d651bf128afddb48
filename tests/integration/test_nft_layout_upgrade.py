"""Attachments made by the nft layout before layout 2 (per-attachment chains p-/d-/f-K, verdict maps
post4/fwd4/ports/hostports4/6 from the base chains prerouting/postrouting/forward/...) keep working
next to layout-2 attachments after an upgrade, and DEL with the new code removes them completely: from
their (layout-1) state record, or by listing the table when the record is lost. Once the last one is
gone, the layout-1 base chains and maps go too."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import TYPE_CHECKING

import pytest
from nsutil import in_ns

from cni_ignite.firewall import nft_legacy, state
from cni_ignite.firewall.base import Attachment, Owner, parse_firewall_config

if TYPE_CHECKING:
    from firewallenv import Topo

pytestmark = pytest.mark.privileged
OLD_MAPS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.1"}]


def add_layout_1(topo: Topo, cid: str, addrs: tuple[str, ...], *, record: bool, port_offset: int = 0) -> None:
    """What the earlier code did for an ADD: its nft text (bootstrap included) and its state record
    (no "layout", no "hostIface")."""
    maps = [{**m, "hostPort": m["hostPort"] + port_offset} for m in OLD_MAPS]
    conf = topo.conf("nftables", runtimeConfig={"portMappings": maps})
    cfg = parse_firewall_config(conf, conf["runtimeConfig"])
    owner = Owner("net1", cid, "eth0")
    att = Attachment(owner, tuple(ipaddress.ip_interface(a) for a in addrs), "br0")
    in_ns(topo.host, ["nft", "-f", "-"], input=nft_legacy.nft_add_text(nft_legacy.nft_plan(att, cfg)).encode())
    if record:
        state.write(state.Record(owner=owner, backend="nftables", addresses=att.addresses, config=cfg, ports=()))
        path = state.record_path(topo.state_dir, owner)
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        del doc["layout"], doc["hostIface"]
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)


def table(topo: Topo) -> str:
    return in_ns(topo.host, ["nft", "list", "table", "inet", "cni_ignite"], check=False).stdout.decode()


@pytest.mark.parametrize("record", [True, False], ids=["with-record", "record-lost"])
def test_layout_1_attachments_work_after_the_upgrade_and_del_removes_them(topo: Topo, record: bool) -> None:
    add_layout_1(topo, "old", ("10.99.0.2/24", "fd99::2/64"), record=record)
    assert " p-" in table(topo) and "map post4" in table(topo)
    new = topo.conf("nftables", runtimeConfig={"portMappings": [{"hostPort": 8081, "containerPort": 81,
                                                                 "protocol": "tcp"}]})
    topo.add(new, cid="new", addrs=("10.99.0.3/24",))
    topo.serve(topo.c1, "tcp", 80)
    topo.serve(topo.c2, "tcp", 81)
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8080) == "192.0.2.2"  # layout 1, still working
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8081) == "192.0.2.2"  # layout 2
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) == "192.0.2.1"
    assert topo.reach(topo.c2, "tcp", "192.0.2.2", 9000) == "192.0.2.1"

    topo.fw(topo.req("del", topo.conf("nftables"), cid="old"))  # as runtimes send it: no mappings
    text = table(topo)
    old = Owner("net1", "old", "eth0").key
    assert old not in text and "10.99.0.2" not in text
    for gone in ("chain prerouting", "chain postrouting", "chain forward", "chain input", "map post4",
                 "map fwd4", "map ports", "map hostports4"):
        assert gone not in text, gone  # the last layout-1 attachment took layout 1's shared parts along
    assert not os.path.exists(state.record_path(topo.state_dir, Owner("net1", "old", "eth0")))
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8080) is None
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8081) == "192.0.2.2"
    assert topo.fw(topo.req("check", new, cid="new", addrs=("10.99.0.3/24",)))[0]["problems"] == []
    topo.fw(topo.req("del", topo.conf("nftables"), cid="new"))
    assert "cni-ignite:" not in table(topo) and "10.99.0.3" not in table(topo)


def test_layout_1_base_chains_stay_while_a_layout_1_attachment_is_left(topo: Topo) -> None:
    add_layout_1(topo, "old1", ("10.99.0.2/24",), record=True)
    add_layout_1(topo, "old2", ("10.99.0.3/24",), record=True, port_offset=1)
    topo.fw(topo.req("del", topo.conf("nftables"), cid="old1"))
    text = table(topo)
    assert Owner("net1", "old1", "eth0").key not in text and "chain postrouting" in text
    topo.fw(topo.req("del", topo.conf("nftables"), cid="old2"))
    assert "chain postrouting" not in table(topo) and "cni-ignite" not in table(topo)
