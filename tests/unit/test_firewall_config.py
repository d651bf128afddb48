"""Parsing the bridge conf's firewall keys: defaults, port mappings, and errors with code 7."""

from __future__ import annotations

from typing import Any

import pytest

from cni_ignite.errors import InvalidConfig
from cni_ignite.firewall.base import PortMapping, parse_firewall_config, parse_port_mappings


def test_defaults_match_the_reference() -> None:
    cfg = parse_firewall_config({"name": "n"})
    assert (cfg.backend, cfg.ip_masq, cfg.forward, cfg.snat, cfg.masq_all, cfg.mark_masq_bit) == \
        ("auto", False, True, True, False, 13)
    assert cfg.state_dir == "/run/cni/ignite"
    assert cfg.port_mappings == ()
    assert cfg.mark == 0x2000


def test_reads_every_key() -> None:
    cfg = parse_firewall_config({
        "ipMasq": True, "ipMasqBackend": "iptables", "snat": False, "masqAll": True, "markMasqBit": 5,
        "conditionsV4": ["-s", "192.0.2.0/24"], "stateDir": "/tmp/x", "forward": False,
    }, {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "TCP"}]})
    assert cfg.backend == "iptables" and cfg.ip_masq and not cfg.snat and cfg.masq_all and not cfg.forward
    assert cfg.mark == 32 and cfg.conditions_v4 == ("-s", "192.0.2.0/24") and cfg.state_dir == "/tmp/x"
    assert cfg.port_mappings == (PortMapping(host_port=8080, container_port=80, protocol="tcp"),)


def test_backend_key_wins_over_ip_masq_backend() -> None:
    assert parse_firewall_config({"backend": "nftables", "ipMasqBackend": "iptables"}).backend == "nftables"


def test_host_ip_is_canonicalised_and_duplicates_dropped() -> None:
    raw = [{"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "2001:DB8::0001"}] * 2
    assert parse_port_mappings(raw) == (PortMapping(host_port=53, container_port=53, protocol="udp",
                                                    host_ip="2001:db8::1"),)


def test_mapping_families() -> None:
    maps = {ip: PortMapping(host_port=1, container_port=1, protocol="tcp", host_ip=ip)
            for ip in ("", "0.0.0.0", "::", "192.0.2.1")}
    assert [m.family() for m in maps.values()] == [None, 4, 6, 4]
    assert [m.specific_ip() for m in maps.values()] == ["", "", "", "192.0.2.1"]


@pytest.mark.parametrize("raw", [
    "nope",
    [1],
    [{"hostPort": 0, "containerPort": 80}],
    [{"hostPort": 65536, "containerPort": 80}],
    [{"hostPort": 80, "containerPort": True}],
    [{"hostPort": "80", "containerPort": 80}],
    [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}],
    [{"hostPort": 80, "containerPort": 80, "hostIP": "300.1.1.1"}],
    [{"hostPort": 80, "containerPort": 80, "hostIP": 7}],
    [{"HostPort": 80, "ContainerPort": 80, "Protocol": "icmp"}],
    [{"HostPort": 0, "ContainerPort": 80}],
])
def test_error_when_a_port_mapping_is_invalid(raw: object) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_port_mappings(raw)
    assert info.value.code == 7


@pytest.mark.parametrize("doc", [
    {"backend": "firewalld"},
    {"markMasqBit": 32},
    {"markMasqBit": True},
    {"markMasqBit": 3, "externalSetMarkChain": "KUBE-MARK-MASQ"},
    {"externalSetMarkChain": "bad chain"},
    {"backend": "nftables", "externalSetMarkChain": "KUBE-MARK-MASQ"},
    {"backend": "nftables", "conditionsV4": ["-s", "1.2.3.4"]},
    {"backend": "iptables", "conditionsV6": ["ip6", "saddr", "::1"]},
    {"conditionsV4": ["-s", "1.2.3.4"], "conditionsV6": ["ip6", "saddr", "::1"]},
    {"conditionsV4": ["-s 1.2.3.4\n-A FORWARD -j ACCEPT"]},
    {"conditionsV4": "-s"},
    {"ipMasq": "yes"},
    {"snat": 1},
    {"stateDir": "relative"},
    {"externalSetMarkChain": "KUBE-MARK-MASQ\n"},
    {"externalSetMarkChain": "KUBE-MARK-MASQ", "conditionsV4": ["ip", "saddr", "192.0.2.0/24"]},
])
def test_error_when_a_firewall_key_is_invalid(doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_firewall_config(doc)
    assert info.value.code == 7


HOSTILE = ("fe80::1%lo\nCOMMIT\n*filter\n-I INPUT 1 -m comment --comment INJECTED -j ACCEPT\nCOMMIT\n"
           "*nat\n-A CNI-IGNITE-DNAT -d fe80::1")


@pytest.mark.parametrize("host_ip", [
    HOSTILE, "fe80::1%lo", "fe80::1%", "2001:db8::1%eth0", "192.0.2.1\n", " 192.0.2.1", "192.0.2.1 ",
    "192.0.2.1/32", "::ffff:192.0.2.1%1", "[::1]", "0x7f.1",
])
def test_scoped_or_decorated_host_ip_is_refused_with_code_7(host_ip: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_port_mappings([{"hostPort": 80, "containerPort": 80, "protocol": "tcp", "hostIP": host_ip}])
    assert info.value.code == 7 and "hostIP" in info.value.msg


def test_host_ip_reaching_the_rules_is_text_of_the_parsed_address() -> None:
    (m,) = parse_port_mappings([{"hostPort": 80, "containerPort": 80, "hostIP": "FE80:0::1"}])
    assert m.host_ip == m.specific_ip() == "fe80::1" and m.family() == 6


def test_a_port_mapping_built_around_the_parser_cannot_carry_a_scope_id() -> None:
    m = PortMapping(host_port=80, container_port=80, protocol="tcp", host_ip="fe80::1%lo\nCOMMIT")
    with pytest.raises(ValueError, match="scoped"):
        m.specific_ip()


def test_go_cni_capitalised_port_mapping_keys_are_read() -> None:
    """go-cni marshals its PortMapping without JSON tags; Go's decoder matches keys ignoring case."""
    raw = [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp", "HostIP": ""},
           {"HostPort": 8443, "ContainerPort": 443, "Protocol": "TCP", "HostIP": "192.0.2.1"},
           {"hostport": 53, "CONTAINERPORT": 53, "protocol": "sctp", "hostip": "::"}]
    assert parse_port_mappings(raw) == (
        PortMapping(host_port=8080, container_port=80, protocol="udp"),
        PortMapping(host_port=8443, container_port=443, protocol="tcp", host_ip="192.0.2.1"),
        PortMapping(host_port=53, container_port=53, protocol="sctp", host_ip="::"),
    )


def test_exact_port_mapping_key_wins_over_a_case_insensitive_one() -> None:
    raw = [{"Protocol": "tcp", "protocol": "udp", "hostPort": 1, "HostPort": 2, "containerPort": 3}]
    assert parse_port_mappings(raw) == (PortMapping(host_port=1, container_port=3, protocol="udp"),)


def test_missing_or_null_protocol_means_tcp() -> None:
    raw = [{"HostPort": 1, "ContainerPort": 2}, {"hostPort": 3, "containerPort": 4, "protocol": None}]
    assert [m.protocol for m in parse_port_mappings(raw)] == ["tcp", "tcp"]


def test_port_mappings_come_from_the_runtime_config_argument_only() -> None:
    doc = {"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 2}]}}
    assert parse_firewall_config(doc).port_mappings == ()
    assert parse_firewall_config(doc, None).port_mappings == ()
    assert parse_firewall_config({}, {"portMappings": [{"HostPort": 1, "ContainerPort": 2}]}).port_mappings == (
        PortMapping(host_port=1, container_port=2, protocol="tcp"),)


def test_runtime_config_from_netconf_carries_go_cni_keys_to_the_firewall_config() -> None:
    import json

    from cni_ignite.netconf import parse_netconf

    conf = parse_netconf(json.dumps({
        "cniVersion": "1.0.0", "name": "n", "type": "ignite-bridge",
        "runtimeConfig": {"PortMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp",
                                            "HostIP": ""}]}}).encode())
    cfg = parse_firewall_config(conf.raw, conf.runtime_config)
    assert cfg.port_mappings == (PortMapping(host_port=8080, container_port=80, protocol="udp"),)


def test_base_does_not_import_core() -> None:
    """No import circle base <-> core: core imports base; base (types, parsing) imports neither core nor
    a backend, not even lazily inside a function."""
    import ast
    from pathlib import Path

    from cni_ignite.firewall import base

    tree = ast.parse(Path(base.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"core", "iptables", "nftables", "rules", "state"}, imported
    assert not hasattr(base, "open_firewall")


@pytest.mark.parametrize(("cond", "want"), [(["iifname", '"eth0"'], "nftables"), (["-i", "eth0"], "iptables")])
def test_auto_honours_the_conditions_syntax_even_when_legacy_xtables_are_loaded(
        monkeypatch: pytest.MonkeyPatch, cond: list[str], want: str) -> None:
    from cni_ignite.firewall import core

    monkeypatch.setattr(core, "_legacy_tables", lambda: True)
    cfg = parse_firewall_config({"conditionsV4": cond, "stateDir": "/nonexistent"})
    assert core.choose_backend(cfg, "n") == want
    assert core.choose_backend(parse_firewall_config({"stateDir": "/nonexistent"}), "n") == "iptables"
