"""The backend probe lists nf_tables tables over netlink in-process (firewall.nfnl): the same list as
``nft list tables`` in a throwaway namespace, and the same choice as the probe by exec."""

from __future__ import annotations

import sys

import pytest
from nsutil import in_ns

pytestmark = pytest.mark.privileged

PROBE = ("from cni_ignite.firewall.nfnl import list_tables; from cni_ignite.firewall.core import _probe_nft_tables;"
         "print(sorted(list_tables())); print(_probe_nft_tables())")


def probe(ns: str) -> tuple[str, str]:
    out = in_ns(ns, [sys.executable, "-c", PROBE]).stdout.decode().splitlines()
    return out[0], out[1]


def nft_tables(ns: str) -> str:
    listed = in_ns(ns, ["nft", "list", "tables"]).stdout.decode().split("\n")
    return str(sorted(line.strip() for line in listed if line.strip()))


@pytest.mark.parametrize(("tables", "choice"), [
    ((), "nftables"),
    (("inet cni_ignite", "ip nat"), "nftables"),  # our table wins
    (("ip nat",), "iptables"),  # iptables-nft's tables: an nft accept cannot override their drop
    (("ip6 filter", "bridge cni_ignite_guard", "netdev x", "arp y"), "iptables"),
    (("bridge cni_ignite_guard", "netdev x", "arp y", "inet other"), "nftables"),
])
def test_netlink_listing_equals_nft_list_tables_and_picks_the_same_backend(netns, tables, choice):
    ns = netns.new("cnit-nfnl")
    for table in tables:
        in_ns(ns, ["nft", "add", "table", *table.split()])
    listed, picked = probe(ns)
    assert listed == nft_tables(ns)
    assert picked == choice
