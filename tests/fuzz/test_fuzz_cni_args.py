"""CNI_ARGS against the reference: libcni's ``types.LoadArgs`` (pkg/types/args.go, libcni 1.1.2).

The rules it implements, which ``reference`` below restates and ``parse_cni_args`` must follow:

1. An empty CNI_ARGS is no arguments.
2. Otherwise the text is split on every ``;``, and each piece on every ``=``: a piece that does not
   split into exactly two (``K``, ``K=a=b``, and the empty piece of ``K=V;`` or ``;;``) is an error.
3. A key is a Go field name, matched case-sensitively (``ip`` is not ``IP``); a later pair for the same
   key replaces the value.
4. ``IgnoreUnknown``'s value must be a boolean text (``1``, ``0``, ``true``, ``false``, any case), else
   it is an error, whether or not there are unknown keys.
5. Keys that are not fields are an error unless the last ``IgnoreUnknown`` is true.

Excluded from the comparison: ``CommonArgs`` as a key (libcni finds the embedded struct by that name and
fails, a quirk of reflection no runtime relies on).

The oracle runs libcni's code on each generated text (tests/fuzz/oracle, with the keys ignite-ipam knows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import assume, given
from strategies import cni_args

from cni_ignite.errors import CniError, InvalidEnvironment
from cni_ignite.ipam.plugin import KNOWN_ARGS
from cni_ignite.netconf import parse_cni_args

if TYPE_CHECKING:
    from conftest import Oracle


def reference(text: str, known: frozenset[str]) -> dict[str, str] | None:
    """libcni's LoadArgs as rules 1-5 above; None = an error."""
    if text == "":
        return {}
    values: dict[str, str] = {}
    ignore, unknown = False, False
    for pair in text.split(";"):
        kv = pair.split("=")
        if len(kv) != 2:
            return None
        key, value = kv
        if key == "IgnoreUnknown":
            if value.lower() not in ("1", "0", "true", "false"):
                return None
            ignore = value.lower() in ("1", "true")
        elif key in known:
            values[key] = value
        else:
            unknown = True
    if unknown and not ignore:
        return None
    return values


def ours(text: str) -> dict[str, str] | None:
    try:
        return parse_cni_args(text, KNOWN_ARGS)
    except CniError as exc:
        assert isinstance(exc, InvalidEnvironment), repr(exc)
        return None


@given(cni_args())
def test_cni_args_follow_the_load_args_rules(text: str) -> None:
    assert ours(text) == reference(text, KNOWN_ARGS)


@given(cni_args())
def test_cni_args_match_libcni(oracle: Oracle, text: str) -> None:
    assume("CommonArgs" not in text)
    [ans] = oracle.ask([{"op": "args", "args": text}])
    want = {k: v for k, v in ans["values"].items() if v} if ans["ok"] else None
    ref = reference(text, KNOWN_ARGS)
    assert (None if ref is None else {k: v for k, v in ref.items() if v}) == want, (text, ans)  # the model is right
    got = ours(text)
    assert (None if got is None else {k: v for k, v in got.items() if v}) == want, (text, ans)


# ------------------------------------------------------------------------------------------ regressions

@pytest.mark.parametrize("text", ["IP=10.0.0.2;", ";IP=10.0.0.2", "IgnoreUnknown=1;;K8S_POD_NAME=x", ";"])
def test_cni_args_with_an_empty_pair_are_refused_as_libcni_does(text: str) -> None:
    with pytest.raises(InvalidEnvironment, match="invalid pair"):
        parse_cni_args(text, KNOWN_ARGS)


@pytest.mark.parametrize("text", ["IgnoreUnknown=yes", "IgnoreUnknown=", "IgnoreUnknown=2;IP=10.0.0.2",
                                  "IgnoreUnknown=on;K8S_POD_NAME=x"])
def test_ignore_unknown_that_is_not_a_boolean_is_refused_as_libcni_does(text: str) -> None:
    with pytest.raises(InvalidEnvironment, match="IgnoreUnknown"):
        parse_cni_args(text, KNOWN_ARGS)


@pytest.mark.parametrize(("text", "want"), [("IgnoreUnknown=False;IP=10.0.0.2", {"IP": "10.0.0.2"}),
                                            ("IgnoreUnknown=0;IgnoreUnknown=TRUE;X=1", {})])
def test_ignore_unknown_booleans_in_any_case_and_the_last_one_counts(text: str, want: dict[str, str]) -> None:
    assert parse_cni_args(text, KNOWN_ARGS) == want
