"""Naming is a pure, stable function of (network, container ID, ifname)."""

from __future__ import annotations

import pytest

from cni_ignite.firewall import naming
from cni_ignite.firewall.base import Owner


def test_key_is_stable_across_releases() -> None:
    # Pinned: changing the hash orphans every installed rule.
    assert naming.owner_key("ignite-cni-bridge", "ignite-abc123", "eth0") == "7de20a2dbd39b25e4863"


def test_ifname_is_part_of_the_identity() -> None:
    assert naming.owner_key("n", "c", "eth0") != naming.owner_key("n", "c", "eth1")


def test_fields_do_not_run_into_each_other() -> None:
    assert naming.owner_key("ab", "c", "eth0") != naming.owner_key("a", "bc", "eth0")


@pytest.mark.parametrize("cid", ["x", "a" * 64, "ignite-" + "f" * 200])
def test_iptables_chain_names_fit_28_characters(cid: str) -> None:
    key = Owner(network="some-long-network-name" * 4, container_id=cid, ifname="eth0").key
    for chain in (*naming.ipt_chains(key), naming.IPT_POSTROUTING, naming.IPT_DNAT, naming.IPT_FORWARD,
                  naming.IPT_ADMIN, naming.IPT_INPUT):
        assert len(chain) <= naming.IPT_MAX_CHAIN, chain


def test_network_dir_keeps_plain_names_and_hashes_others() -> None:
    assert naming.network_dir("ignite-cni-bridge") == "ignite-cni-bridge"
    for bad in ("../etc", "a/b", "..", ""):
        assert naming.network_dir(bad).startswith("_net-")


def test_network_dir_hashes_a_name_with_a_trailing_newline() -> None:
    # "$" would also match before a final "\n": "net\n" must not be used as a folder name as it is
    assert naming.network_dir("net\n") != "net\n"
    assert naming.network_dir("net\n").startswith("_net-")
