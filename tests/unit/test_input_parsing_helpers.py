"""Go-style key lookup (go-cni's capitalised capability keys) and strict address parsing (no scope IDs)."""

from __future__ import annotations

import pytest

from cni_ignite import ipparse
from cni_ignite.netconf import go_get, go_view, parse_netconf


def test_go_get_prefers_the_exact_key_and_else_matches_ignoring_case() -> None:
    assert go_get({"HostPort": 8080}, "hostPort") == 8080
    assert go_get({"hostPort": 1, "HostPort": 2}, "hostPort") == 1
    assert go_get({"HOSTPORT": 1, "HostPort": 2}, "hostPort") == 2  # Go keeps the last one it assigns
    assert go_get({}, "hostPort", "none") == "none"


def test_go_view_renames_go_field_names_to_the_canonical_keys() -> None:
    go_cni = {"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp", "HostIP": ""}
    assert go_view(go_cni, ("hostPort", "containerPort", "protocol", "hostIP")) == {
        "hostPort": 8080, "containerPort": 80, "protocol": "udp", "hostIP": ""}


def test_runtime_config_capability_keys_are_found_in_any_case() -> None:
    conf = parse_netconf(b'{"cniVersion":"1.0.0","name":"n","type":"t",'
                         b'"runtimeConfig":{"PortMappings":[{"HostPort":1}],"other":2}}')
    assert conf.runtime_config == {"portMappings": [{"HostPort": 1}], "other": 2}


@pytest.mark.parametrize("text", [
    "fe80::1%lo",
    "fe80::1%lo\nCOMMIT\n*filter\n-I INPUT 1 -j ACCEPT",
    "fd00:96::2%1",
    "10.0.0.1\n",
    " 10.0.0.1",
    "10.0.0.1;",
])
def test_scoped_or_padded_addresses_are_refused(text: str) -> None:
    for parse in (ipparse.ip_address, ipparse.ip_interface, ipparse.ip_network):
        with pytest.raises(ValueError):
            parse(text)


def test_non_strings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        ipparse.ip_address(167772161)


def test_plain_addresses_parse_to_their_canonical_text() -> None:
    assert str(ipparse.ip_address("FD00:96:0::2")) == "fd00:96::2"
    assert str(ipparse.ip_interface("10.0.0.2/24")) == "10.0.0.2/24"
    assert str(ipparse.ip_network("10.0.0.0/255.255.255.0")) == "10.0.0.0/24"


def test_absurdly_nested_json_is_a_decoding_error_not_an_internal_one() -> None:
    from cni_ignite.errors import DecodingFailure

    with pytest.raises(DecodingFailure):
        parse_netconf(b"[" * 100_000)
