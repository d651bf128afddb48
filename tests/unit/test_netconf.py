"""The common network configuration and the CNI_ARGS grammar."""

from __future__ import annotations

import json

import pytest

from cni_ignite.errors import DecodingFailure, IncompatibleVersion, InvalidConfig, InvalidEnvironment
from cni_ignite.netconf import bool_field, int_field, list_field, obj_field, parse_cni_args, parse_netconf, str_field


def conf(**kw: object) -> bytes:
    doc: dict[str, object] = {"cniVersion": "1.0.0", "name": "net1", "type": "ignite-ipam"}
    doc.update(kw)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_parses_the_common_keys() -> None:
    c = parse_netconf(conf(prevResult={"ips": []}, runtimeConfig={"ips": ["10.0.0.2"]}, args={"cni": {}}))
    assert (c.cni_version, c.name, c.type) == ("1.0.0", "net1", "ignite-ipam")
    assert c.prev_result == {"ips": []}
    assert c.runtime_config == {"ips": ["10.0.0.2"]}
    assert c.args == {"cni": {}}


def test_missing_cni_version_means_0_1_0() -> None:
    assert parse_netconf(conf(cniVersion=None)).cni_version == "0.1.0"


def test_unknown_keys_and_capabilities_are_tolerated() -> None:
    c = parse_netconf(conf(capabilities={"ips": True}, whatever=[1, 2], **{"cni.dev/valid-attachments": []}))
    assert c.raw["whatever"] == [1, 2]


@pytest.mark.parametrize("raw", [b"", b"{", b"nul", b"\xff\xfe", b"[]", b'"x"', b"42"])
def test_error_when_stdin_is_not_a_json_object(raw: bytes) -> None:
    with pytest.raises(DecodingFailure):
        parse_netconf(raw)


@pytest.mark.parametrize("v", ["9.9.9", "1.0.1", "1.0"])
def test_error_when_cni_version_is_unknown(v: str) -> None:
    with pytest.raises(IncompatibleVersion) as exc:
        parse_netconf(conf(cniVersion=v))
    assert f'config is "{v}"' in exc.value.details


@pytest.mark.parametrize(("kw", "msg"), [
    ({"cniVersion": 1}, "cniVersion must be a string"),
    ({"name": None}, "missing network name"),
    ({"name": ""}, "missing network name"),
    ({"name": 5}, "missing network name"),
    ({"prevResult": []}, "prevResult must be an object"),
    ({"runtimeConfig": "x"}, "runtimeConfig must be an object"),
    ({"args": [1]}, "args must be an object"),
    ({"type": 3}, "type must be a string"),
])
def test_error_when_a_common_key_has_the_wrong_type(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(InvalidConfig, match=msg):
        parse_netconf(conf(**kw))


@pytest.mark.parametrize("name", ["../etc", "a/b", ".", "..", ".hidden", "-x", "_x", "a b", "net\n", "net\r",
                                  "n\u00e9t", "a\\b"])
def test_error_when_network_name_is_invalid(name: str) -> None:
    with pytest.raises(InvalidConfig):
        parse_netconf(conf(name=name))


@pytest.mark.parametrize("name", ["n", "net-1", "net_1.x", "A1"])
def test_valid_network_names(name: str) -> None:
    assert parse_netconf(conf(name=name)).name == name


def test_typed_field_helpers() -> None:
    doc = {"s": "x", "b": True, "i": 7, "o": {}, "l": [], "n": None}
    assert str_field(doc, "s") == "x"
    assert str_field(doc, "n", default="d") == "d"
    assert bool_field(doc, "b") is True
    assert int_field(doc, "i", lo=1, hi=9) == 7
    assert obj_field(doc, "missing") == {}
    assert list_field(doc, "l") == []
    with pytest.raises(InvalidConfig, match=r"ipam\.b must be an integer"):
        int_field(doc, "b", where="ipam.")
    with pytest.raises(InvalidConfig, match="out of range"):
        int_field(doc, "i", hi=5)
    with pytest.raises(InvalidConfig):
        bool_field(doc, "i")
    with pytest.raises(InvalidConfig):
        list_field(doc, "o")


KNOWN = frozenset({"IP", "MAC"})


@pytest.mark.parametrize(("text", "want"), [
    ("", {}),
    ("IP=10.0.0.2", {"IP": "10.0.0.2"}),
    ("IP=10.0.0.2;MAC=aa:bb:cc:dd:ee:ff", {"IP": "10.0.0.2", "MAC": "aa:bb:cc:dd:ee:ff"}),
    ("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.0.0.2", {"IP": "10.0.0.2"}),
    ("IgnoreUnknown=true;K8S_POD_NAME=x", {}),
    ("IgnoreUnknown=TRUE;foo=bar", {}),
    ("IP=", {"IP": ""}),
])
def test_cni_args_grammar(text: str, want: dict[str, str]) -> None:
    assert parse_cni_args(text, KNOWN) == want


@pytest.mark.parametrize(("text", "msg"), [
    ("IP", "invalid pair"),
    ("IP=a=b", "invalid pair"),
    ("K8S_POD_NAME=x", "unknown args"),
    ("ip=10.0.0.2", "unknown args"),  # keys are case-sensitive, as Go field names
    ("IgnoreUnknown=0;foo=1", "unknown args"),
])
def test_error_when_cni_args_break_the_grammar(text: str, msg: str) -> None:
    with pytest.raises(InvalidEnvironment, match=msg) as exc:
        parse_cni_args(text, KNOWN)
    assert exc.value.code == 4
