"""The error family: one class per spec code, each code distinct, and the wire shape."""

from __future__ import annotations

import json

import pytest

from cni_ignite import errors
from cni_ignite.errors import CniError

SPEC_CODES = {
    "CniError": 999,
    "IncompatibleVersion": 1,
    "UnsupportedField": 2,
    "UnknownContainer": 3,
    "InvalidEnvironment": 4,
    "IOFailure": 5,
    "DecodingFailure": 6,
    "InvalidConfig": 7,
    "InvalidNetns": 8,
    "TryAgainLater": 11,
    "PluginUnavailable": 50,
    "LimitedConnectivity": 51,
}


def _subclasses() -> list[type[CniError]]:
    return [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, CniError)]


def test_every_error_class_has_a_distinct_code() -> None:
    codes = [c.code for c in _subclasses()]
    assert len(codes) == len(set(codes)), codes


def test_every_error_class_carries_its_spec_code() -> None:
    assert {c.__name__: c.code for c in _subclasses()} == SPEC_CODES


def test_every_error_class_is_exported() -> None:
    assert {c.__name__ for c in _subclasses()} <= set(errors.__all__)


@pytest.mark.parametrize("cls", _subclasses(), ids=lambda c: c.__name__)
def test_error_object_has_code_msg_details_and_version(cls: type[CniError]) -> None:
    doc = cls("it broke", "because").as_dict("0.4.0")
    assert json.loads(json.dumps(doc)) == {"cniVersion": "0.4.0", "code": cls.code, "msg": "it broke",
                                           "details": "because"}


def test_error_object_omits_empty_details() -> None:
    assert errors.InvalidConfig("bad").as_dict("1.0.0") == {"cniVersion": "1.0.0", "code": 7, "msg": "bad"}


def test_error_text_joins_msg_and_details() -> None:
    assert str(errors.IOFailure("read failed", "EIO")) == "read failed: EIO"
    assert str(errors.IOFailure("read failed")) == "read failed"


def test_not_found_is_not_a_cni_error() -> None:
    assert not issubclass(errors.NotFound, CniError)
