"""Routed mode's configuration, checked at parse time (code 7 before ADD changes anything), and its pure
parts: the gateway of an address and the routes the container gets."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

import pytest

from cni_ignite.bridge.config import parse_bridge_config
from cni_ignite.bridge.routed import container_routes, gateway_of
from cni_ignite.errors import InvalidConfig
from cni_ignite.netconf import parse_netconf
from cni_ignite.result import IPConfig

IPAM = {"type": "ignite-ipam", "subnet": "10.62.0.0/16"}


def conf(**extra: Any) -> Any:
    doc = {"cniVersion": "1.0.0", "name": "n", "type": "ignite-bridge", "ipam": IPAM, **extra}
    return parse_netconf(json.dumps(doc).encode())


def test_default_mode_is_the_bridge_and_routed_implies_the_gateway() -> None:
    assert parse_bridge_config(conf(), "").mode == "bridge"
    assert not parse_bridge_config(conf(), "").routed
    cfg = parse_bridge_config(conf(mode="routed"), "")
    assert cfg.routed and cfg.is_gateway and not cfg.is_default_gateway
    vm = parse_bridge_config(conf(mode="routed", isDefaultGateway=True, vm={"mode": "bridge"}), "").vm
    assert vm.mode == "bridge"


@pytest.mark.parametrize("extra", [{"mode": "l3"}, {"mode": 3}, {"mode": "routed", "vlan": 5},
                                   {"mode": "routed", "vlanTrunk": [{"id": 5}]}, {"mode": "routed", "bridge": "x"},
                                   {"mode": "routed", "hairpinMode": True}, {"mode": "routed", "promiscMode": True},
                                   {"mode": "routed", "portIsolation": True}, {"mode": "routed", "macspoofchk": True},
                                   {"mode": "routed", "forceAddress": True}, {"mode": "routed", "isGateway": False},
                                   {"mode": "routed", "ipam": {}}])
def test_error_when_routed_mode_is_asked_for_what_only_a_bridge_has(extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig):
        parse_bridge_config(conf(**extra), "")


def test_keys_left_at_their_defaults_are_accepted_in_routed_mode() -> None:
    cfg = parse_bridge_config(conf(mode="routed", hairpinMode=False, vlan=0, isGateway=True), "")
    assert cfg.routed


def test_gateway_is_the_ipams_else_the_first_address_and_never_the_address_itself() -> None:
    assert gateway_of(IPConfig(address=ip_interface("10.62.0.9/16"))) == ip_address("10.62.0.1")
    ipam_gw = IPConfig(address=ip_interface("10.62.0.9/16"), gateway=ip_address("10.62.255.254"))
    assert gateway_of(ipam_gw) == ip_address("10.62.255.254")
    assert gateway_of(IPConfig(address=ip_interface("fd00:62::9/64"))) == ip_address("fd00:62::1")
    for bad in (IPConfig(address=ip_interface("10.62.0.1/16")),
                IPConfig(address=ip_interface("10.62.0.9/16"), gateway=ip_address("10.99.0.1")),
                IPConfig(address=ip_interface("10.62.0.9/32"))):
        with pytest.raises(InvalidConfig):
            gateway_of(bad)


def test_container_gets_each_subnet_once_via_its_gateway() -> None:
    ips = [IPConfig(address=ip_interface("10.62.0.9/16")), IPConfig(address=ip_interface("10.62.0.10/16")),
           IPConfig(address=ip_interface("fd00:62::9/64"))]
    assert container_routes(ips) == [(ip_network("10.62.0.0/16"), ip_address("10.62.0.1")),
                                     (ip_network("fd00:62::/64"), ip_address("fd00:62::1"))]
