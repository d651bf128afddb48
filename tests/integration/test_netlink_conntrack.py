"""ctnetlink delete by protocol and original destination port, checked with pyroute2's Conntrack as oracle."""

from __future__ import annotations

import sys

import pytest
from nsutil import in_ns

pytestmark = pytest.mark.privileged

DRIVER = """
import socket, sys
from pyroute2 import Conntrack
from cni_ignite.netlink import conntrack

def entries():
    return sorted((e.tuple_orig.proto, e.tuple_orig.dport) for e in Conntrack().dump_entries())

for port in (9999, 9999, 9999, 9998):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('127.0.0.1', port)); s.close()
srv = socket.socket(); srv.bind(('127.0.0.1', 9999)); srv.listen()
t = socket.create_connection(('127.0.0.1', 9999), timeout=2)  # a tcp entry on the same port stays
before = entries()
deleted = conntrack.delete_by_dst_port('udp', [9999])
print(before, deleted, entries(), conntrack.delete_by_dst_port('udp', []), sep='|')
"""


def test_udp_entries_of_the_port_are_deleted_and_nothing_else(netns):
    ns = netns.new()
    in_ns(ns, ["nft", "add table ip t; add chain ip t c { type filter hook output priority 0; }; "
                      "add rule ip t c ct state new accept"])
    out = in_ns(ns, [sys.executable, "-c", DRIVER]).stdout.decode().strip()
    before, deleted, after, none = out.split("|")
    assert before == "[(6, 9999), (17, 9998), (17, 9999), (17, 9999), (17, 9999)]"
    assert deleted == "3"
    assert after == "[(6, 9999), (17, 9998)]"
    assert none == "0"
