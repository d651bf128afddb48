"""Spec versions: exact membership, per-verb gates."""

from __future__ import annotations

import pytest

from cni_ignite import version
from cni_ignite.errors import IncompatibleVersion


def test_supported_versions_run_from_0_1_0_to_1_1_0() -> None:
    assert version.SUPPORTED == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert version.CURRENT == "1.1.0"


@pytest.mark.parametrize("v", ["1.0.1", "0.5.0", "2.0.0", "1.0", "", "v1.0.0"])
def test_error_when_version_is_not_exactly_supported(v: str) -> None:
    with pytest.raises(IncompatibleVersion) as exc:
        version.require_supported(v)
    assert exc.value.code == 1
    assert exc.value.msg == "incompatible CNI versions"


@pytest.mark.parametrize("v", ["1.0", "a.b.c", "1.0.0.0", "1..0"])
def test_error_when_version_is_not_major_minor_patch(v: str) -> None:
    with pytest.raises(IncompatibleVersion):
        version.parse(v)


def test_versions_compare_numerically() -> None:
    assert version.parse("0.10.0") > version.parse("0.4.0")
    assert version.at_least("1.0.0", "0.4.0")
    assert not version.at_least("0.3.1", "0.4.0")


@pytest.mark.parametrize(("verb", "below", "since"),
                         [("CHECK", "0.3.1", "0.4.0"), ("GC", "1.0.0", "1.1.0"), ("STATUS", "1.0.0", "1.1.0")])
def test_verb_is_refused_below_its_spec_version(verb: str, below: str, since: str) -> None:
    with pytest.raises(IncompatibleVersion) as exc:
        version.require_verb(verb, below)
    assert exc.value.msg == f"config version does not allow {verb}"
    version.require_verb(verb, since)


@pytest.mark.parametrize("verb", ["ADD", "DEL"])
def test_add_and_del_are_allowed_at_every_version(verb: str) -> None:
    for v in version.SUPPORTED:
        version.require_verb(verb, v)
