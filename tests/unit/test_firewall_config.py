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
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "TCP"}]},
    })
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
    {"runtimeConfig": []},
])
def test_error_when_a_firewall_key_is_invalid(doc: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_firewall_config(doc)
    assert info.value.code == 7
