"""The guard's config parsing and rule text (pure; no root)."""

from __future__ import annotations

import ipaddress

import pytest

from cni_ignite.errors import InvalidConfig
from cni_ignite.guard import rules
from cni_ignite.guard.config import OFF, AddressPair, GuardConfig, parse_guard

A4, A6 = ipaddress.ip_address("10.61.0.2"), ipaddress.ip_address("fd00:61::2")


def test_guard_is_off_unless_asked_for():
    assert parse_guard({}) == OFF and parse_guard({"guard": False}) == OFF
    assert parse_guard({"guard": True}) == GuardConfig(enabled=True)
    assert parse_guard({"guard": {}}).enabled
    assert not parse_guard({"guard": {"enabled": False}}).enabled


def test_allowed_address_pairs_parse():
    g = parse_guard({"guard": {"allowedAddressPairs": [
        {"ipAddress": "10.61.0.100"}, {"ipAddress": "fd01::/64", "macAddress": "02:00:5E:00:01:07"}]}})
    assert g.pairs == (AddressPair(ipaddress.ip_network("10.61.0.100/32")),
                       AddressPair(ipaddress.ip_network("fd01::/64"), "02:00:5e:00:01:07"))


@pytest.mark.parametrize("guard", [
    "yes", 1, {"enabled": "true"}, {"allowedAddressPairs": {}}, {"allowedAddressPairs": ["10.0.0.1"]},
    {"allowedAddressPairs": [{"ipAddress": "0.0.0.0/0"}]}, {"allowedAddressPairs": [{"ipAddress": "::/0"}]},
    {"allowedAddressPairs": [{"ipAddress": "10.0.0.1%eth0"}]},
    {"allowedAddressPairs": [{"ipAddress": "10.0.0.1", "macAddress": "01:00:5e:00:00:01"}]},
    {"allowedAddressPairs": [{"ipAddress": "10.0.0.1", "macAddress": "zz"}]},
])
def test_error_when_the_guard_key_is_bad(guard):
    with pytest.raises(InvalidConfig):
        parse_guard({"guard": guard})


def test_eui64_link_local():
    assert str(rules.eui64_link_local("02:61:00:00:00:02")) == "fe80::61:ff:fe00:2"
    assert str(rules.eui64_link_local("00:11:22:33:44:55")) == "fe80::211:22ff:fe33:4455"


def test_attachment_adds_link_locals_and_pairs_and_splits_prefixes():
    g = parse_guard({"guard": {"allowedAddressPairs": [
        {"ipAddress": "10.61.7.0/24", "macAddress": "02:00:5e:00:01:07"}, {"ipAddress": "10.61.0.2"}]}})
    att = rules.attachment("veth1", ["02:61:00:00:00:02", ""], [A4, A6], g, trunk=True)
    assert att.macs == ("02:00:5e:00:01:07", "02:61:00:00:00:02")
    els = rules.elements(att)
    assert els["ports"] == els["trunks"] == ['"veth1"']
    assert els["addr4"] == ['"veth1" . 10.61.0.2'] and els["net4"] == ['"veth1" . 10.61.7.0/24']
    assert els["addr6"] == ['"veth1" . fd00:61::2', '"veth1" . fe80::5eff:fe00:107', '"veth1" . fe80::61:ff:fe00:2']
    assert els["nd6"][0] == '"veth1" . 0xfd000061000000000000000000000002'
    assert els["net6"] == els["ndnet6"] == []


def test_prefix_in_nd_sets_is_a_range():
    g = GuardConfig(True, (AddressPair(ipaddress.ip_network("fd01::/64")),))
    els = rules.elements(rules.attachment("veth1", ["02:61:00:00:00:02"], [], g))
    assert els["ndnet6"] == ['"veth1" . 0xfd010000000000000000000000000000-0xfd01000000000000ffffffffffffffff']


@pytest.mark.parametrize("port", ['veth"x', "a b", "", "x" * 16, "v;flush ruleset"])
def test_error_when_port_name_cannot_go_into_nft_text(port):
    with pytest.raises(ValueError, match="port"):
        rules.attachment(port, ["02:61:00:00:00:02"], [A4])


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "02:61:00:00:00", "02:61:00:00:00:0g\n"])
def test_error_when_mac_is_not_a_unicast_mac(mac):
    with pytest.raises(ValueError, match="MAC"):
        rules.attachment("veth1", [mac], [A4])


def test_apply_creates_the_port_and_adds_the_rest_in_one_script():
    script = rules.apply_script(rules.attachment("veth1", ["02:61:00:00:00:02"], [A4]))
    assert script.startswith(rules.skeleton())
    tail = script.removeprefix(rules.skeleton()).splitlines()
    assert tail[0] == f'create element {rules.TABLE} ports {{ "veth1" }}'
    assert all(line.startswith(f"add element {rules.TABLE} ") for line in tail[1:])
    assert "net4" not in script.removeprefix(rules.skeleton())


def test_remove_adds_then_deletes_every_element_and_the_trunk_flag():
    att = rules.attachment("veth1", ["02:61:00:00:00:02"], [A4])
    lines = rules.remove_script(att).splitlines()
    deletes = [ln for ln in lines if ln.startswith("delete element")]
    adds = [ln for ln in lines if ln.startswith("add element")]
    assert [d.replace("delete", "add", 1) for d in deletes] == adds
    assert any(" trunks " in d for d in deletes)
    assert not any("flush" in ln or "delete set" in ln or "delete table" in ln for ln in lines)


def test_chain_problems_ignore_anonymous_set_order_and_report_changes():
    listed = ("table bridge cni_ignite_guard {\n" + "".join(
        f"\tchain {name} {{\n" + ("\t\ttype filter hook prerouting priority dstnat; policy accept;\n"
                                  if name == "prerouting" else "")
        + "".join(f"\t\t{rules.as_listed(r)}\n" for r in rules_) + "\t}\n" for name, rules_ in rules.CHAINS)
        + "}\n")
    assert rules.chain_problems(listed) == []
    shuffled = listed.replace("{ ip : jump guard_ip, arp : jump guard_arp,",
                              "{ arp : jump guard_arp, ip : jump guard_ip,")
    assert rules.chain_problems(shuffled) == []
    broken = listed.replace("\t\tudp sport 67 drop\n", "")
    assert [p.split(":")[0] for p in rules.chain_problems(broken)] == ["guard chain guard_ip"]
    assert rules.chain_problems("") == [f"guard chain {name} is missing" for name, _ in rules.CHAINS]


def test_bridge_protocol_rules_depend_on_meta_protocol_not_the_outer_ethertype():
    """A tagged frame's ``ether type`` is 8021q: an ``arp``/``icmpv6`` rule left to nft's implicit ``ether type``
    dependency would never match it (a tagged RA or NA would skip its drop). The routed tables keep theirs."""
    bridge = dict(rules.CHAINS)
    for name in ("guard_arp", "guard_ip6", "guard_ip6_own"):
        for rule in bridge[name]:
            if (" arp " in f" {rule}" or "icmpv6" in rule) and not rule.startswith("ip6 saddr "):
                assert rule.startswith("meta protocol "), rule
    assert bridge["guard_vlan"][0] == "iifname != @trunks drop" and bridge["guard_vlan"][-1] == "drop"
    assert {r.split()[2] for r in bridge["guard_vlan"][1:-1]} == {"ip", "arp", "ip6"}
    routed = [r for t in rules.ROUTED_TABLES for _, chain in t.chains for r in chain]
    assert not any("meta protocol" in r for r in routed)


def test_as_listed_drops_only_a_leading_dependency():
    assert rules.as_listed("meta protocol arp arp htype != 1 drop") == "arp htype != 1 drop"
    kept = "vlan type ip meta protocol ip jump guard_ip"
    assert rules.as_listed(kept) == kept
    assert rules.as_listed("drop") == "drop"


def test_trunk_flag_goes_with_the_port_and_is_removed_with_it():
    trunk = rules.attachment("veth1", ["02:61:00:00:00:02"], [A4], trunk=True)
    assert f'create element {rules.TABLE} ports {{ "veth1" }}' in rules.apply_script(trunk)
    assert f'add element {rules.TABLE} trunks {{ "veth1" }}' in rules.lean_apply_script(trunk)
    access = rules.attachment("veth1", ["02:61:00:00:00:02"], [A4])
    assert " trunks " not in rules.lean_apply_script(access)
    for att in (trunk, access):  # DEL removes a trunk flag whatever the record says
        assert f'delete element {rules.TABLE} trunks {{ "veth1" }}' in rules.lean_remove_script(att)
    with pytest.raises(ValueError, match="routed"):
        rules.attachment("veth1", ["02:61:00:00:00:02"], [A4], trunk=True, routed=True)


def test_a_bridge_records_trunk_flag_survives_the_round_trip():
    from cni_ignite.bridge import records

    att = rules.attachment("veth1", ["02:61:00:00:00:02"], [A4, A6], trunk=True)
    assert records.guard_att(records.guard_doc(att)) == att


def test_dhcp_server_guard_drops_anything_sent_to_a_client_port_in_both_layouts():
    for t in (*rules.BRIDGE_TABLES, *rules.ROUTED_TABLES):
        chains = dict(t.chains)
        if "guard_ip" in chains:
            assert {"udp sport 67 drop", "udp dport 68 drop"} <= set(chains["guard_ip"]), t.name
            assert {"udp sport 547 drop", "udp dport 546 drop"} <= set(chains["guard_ip6"]), t.name
