"""firewall.nfnl parses nf_tables GETTABLE dump replies; pyroute2's nftables message class is the oracle
(it encodes the replies, as the kernel would)."""

from __future__ import annotations

import pytest

from cni_ignite.firewall.nfnl import FAMILIES, NFNL_SUBSYS_NFTABLES, parse_tables

nftsocket = pytest.importorskip("pyroute2.netlink.nfnetlink.nftsocket", reason="needs pyroute2 (the oracle)")


def table_msg(family: int, name: str, flags: int = 0) -> bytes:
    m = nftsocket.nft_table_msg()
    m["header"]["type"] = (NFNL_SUBSYS_NFTABLES << 8) | nftsocket.NFT_MSG_NEWTABLE
    m["nfgen_family"] = family
    m["attrs"] = [("NFTA_TABLE_NAME", name), ("NFTA_TABLE_FLAGS", flags), ("NFTA_TABLE_USE", 3)]
    m.encode()
    return bytes(m.data[: m["header"]["length"]])


def test_every_family_is_named_as_nft_list_tables_names_it():
    msgs = [table_msg(f, f"t{f}") for f in FAMILIES]
    assert parse_tables(msgs) == [f"table {name} t{f}" for f, name in FAMILIES.items()]


def test_names_of_any_length_and_an_unknown_family():
    assert parse_tables([table_msg(1, "cni_ignite"), table_msg(2, "n" * 31), table_msg(99, "x")]) == [
        "table inet cni_ignite", f"table ip {'n' * 31}", "table 99 x"]


def test_no_tables():
    assert parse_tables([]) == []
