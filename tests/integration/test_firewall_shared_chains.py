"""nftables layout 2: the masquerade/hairpin chains of one subnet are shared by its attachments. The
last DEL removes them (the state dir tells who is last, no listing), a DEL never breaks another
attachment that still jumps to one (the kernel refuses: EBUSY), and GC removes leftovers."""

from __future__ import annotations

import os
import re
import shutil
from typing import TYPE_CHECKING

import pytest
from nsutil import in_ns

from cni_ignite.firewall.base import Owner

if TYPE_CHECKING:
    from firewallenv import Topo

pytestmark = pytest.mark.privileged
MAPS = {"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}


def shared_chains(topo: Topo) -> list[str]:
    text = in_ns(topo.host, ["nft", "list", "table", "inet", "cni_ignite"], check=False).stdout.decode()
    return re.findall(r"chain ([mh]-[0-9a-f]{20}) \{", text)


def test_the_last_del_of_a_subnet_removes_its_shared_chains(topo: Topo) -> None:
    topo.add(topo.conf("nftables", **MAPS), cid="a", addrs=("10.99.0.2/24",))
    topo.add(topo.conf("nftables"), cid="b", addrs=("10.99.0.3/24",))
    assert len(shared_chains(topo)) == 2  # one masquerade chain for both, a's hairpin chain
    topo.fw(topo.req("del", topo.conf("nftables"), cid="a"))
    assert len(shared_chains(topo)) == 1  # the hairpin chain had one user
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.c2, "tcp", "192.0.2.2", 9000) == "192.0.2.1"  # b still masqueraded
    topo.fw(topo.req("del", topo.conf("nftables"), cid="b"))
    assert shared_chains(topo) == []


def test_a_del_that_thinks_it_is_last_does_not_break_another_user(topo: Topo) -> None:
    topo.add(topo.conf("nftables"), cid="a", addrs=("10.99.0.2/24",))
    topo.add(topo.conf("nftables"), cid="b", addrs=("10.99.0.3/24",))
    [chain] = shared_chains(topo)
    os.unlink(os.path.join(topo.state_dir, "_nft-shared", chain, Owner("net1", "b", "eth0").key))  # b "lost"
    topo.fw(topo.req("del", topo.conf("nftables"), cid="a"))  # tries to delete the chain: EBUSY, retried
    assert shared_chains(topo) == [chain] and Owner("net1", "a", "eth0").key not in topo.ruleset()
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.c2, "tcp", "192.0.2.2", 9000) == "192.0.2.1"
    assert topo.fw(topo.req("check", topo.conf("nftables"), cid="b", addrs=("10.99.0.3/24",)))[0]["problems"] == []


def test_del_removes_shared_chains_even_when_who_used_them_is_lost(topo: Topo) -> None:
    """A killed DEL or a lost state dir forgets the users: the next DEL tries the chains and the kernel,
    which refuses to delete a chain an element still jumps to, decides."""
    topo.add(topo.conf("nftables", **MAPS), cid="a", addrs=("10.99.0.2/24",))
    topo.add(topo.conf("nftables"), cid="b", addrs=("10.99.0.3/24",))
    shutil.rmtree(os.path.join(topo.state_dir, "_nft-shared"))
    topo.fw(topo.req("del", topo.conf("nftables"), cid="a"))
    assert len(shared_chains(topo)) == 1  # b still masquerades through the subnet's chain
    topo.fw(topo.req("del", topo.conf("nftables"), cid="b"))
    assert shared_chains(topo) == []


def test_gc_removes_shared_chains_nobody_uses(topo: Topo) -> None:
    topo.add(topo.conf("nftables", **MAPS), cid="a", addrs=("10.99.0.2/24",))
    in_ns(topo.host, ["nft", "add chain inet cni_ignite m-" + "0" * 20])  # left by a lost race
    assert len(shared_chains(topo)) == 3
    topo.fw({**topo.req("gc", topo.conf("nftables")), "valid": [["a", "eth0"]]})
    assert len(shared_chains(topo)) == 2
    topo.fw({**topo.req("gc", topo.conf("nftables")), "valid": []})
    assert shared_chains(topo) == []
