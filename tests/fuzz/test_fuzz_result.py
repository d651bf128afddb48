"""Results of every spec version: encode, decode, convert down and up; libcni (Go) is the oracle for the
versions it knows (0.1.0 … 1.0.0; libcni 1.1.2 predates 1.1.0)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hypothesis import example, given
from hypothesis import strategies as st
from strategies import cni_results, result_docs

from cni_ignite.errors import CniError, DecodingFailure, IncompatibleVersion
from cni_ignite.result import Interface, IPConfig, Result, Route, decode, encode
from cni_ignite.version import SUPPORTED, at_least

if TYPE_CHECKING:
    from conftest import Oracle

LIBCNI_VERSIONS = tuple(v for v in SUPPORTED if not at_least(v, "1.1.0"))


def carried(res: Result, version: str) -> Result:
    """What a result in `version` can carry of `res` (the spec's shapes; libcni's conversions)."""
    if not at_least(version, "0.3.0"):
        first = {fam: next((ip for ip in res.ips if ip.address.version == fam), None) for fam in (4, 6)}
        ips = tuple(IPConfig(address=ip.address, gateway=ip.gateway) for ip in first.values() if ip is not None)
        routes = tuple(Route(dst=r.dst, gw=r.gw) for fam in (4, 6) if first[fam] is not None
                       for r in res.routes if r.dst.version == fam)
        return Result(ips=ips, routes=routes, dns=res.dns)
    if at_least(version, "1.1.0"):
        return res
    return res._replace(interfaces=tuple(Interface(name=i.name, mac=i.mac, sandbox=i.sandbox) for i in res.interfaces),
                        routes=tuple(Route(dst=r.dst, gw=r.gw) for r in res.routes))


def has_ip(res: Result) -> bool:
    return bool(res.ips)


@given(cni_results(), st.sampled_from(SUPPORTED))
def test_encode_then_decode_keeps_what_the_version_carries(res: Result, version: str) -> None:
    if not at_least(version, "0.3.0") and not has_ip(res):
        try:
            encode(res, version)
        except IncompatibleVersion:
            return
        raise AssertionError("a 0.2.0 result without an address was printed")
    doc = encode(res, version)
    assert doc["cniVersion"] == version
    assert decode(doc) == carried(res, version)


@given(cni_results(), st.sampled_from(SUPPORTED), st.sampled_from(SUPPORTED))
def test_converted_down_and_up_keeps_what_the_lower_version_carries(res: Result, a: str, b: str) -> None:
    lo, hi = sorted((a, b), key=lambda v: tuple(int(x) for x in v.split(".")))
    if not at_least(lo, "0.3.0") and not has_ip(res):
        return
    up = decode(encode(decode(encode(res, lo)), hi))
    assert up == carried(res, lo)
    assert decode(encode(up, lo)) == carried(res, lo)  # and down again is stable


@given(result_docs())
def test_decoded_result_reencodes_to_its_own_decoding(doc: Any) -> None:
    try:
        res = decode(doc)
    except DecodingFailure:
        return
    for v in SUPPORTED:
        try:
            again = decode(encode(res, v))
        except IncompatibleVersion:
            assert not at_least(v, "0.3.0") and not res.ips
            continue
        assert again == carried(res, v)


def _ours(doc: dict[str, Any], to: str) -> dict[str, Any] | None:
    try:
        return encode(decode(doc), to)
    except CniError:
        return None


@given(cni_results(oracle_safe=True), st.sampled_from(LIBCNI_VERSIONS), st.lists(st.sampled_from(LIBCNI_VERSIONS),
                                                                                   min_size=1, max_size=7, unique=True))
def test_conversion_matches_libcni(oracle: Oracle, res: Result, source: str, targets: list[str]) -> None:
    """Our encoding in `source`, converted by libcni to each target, equals ours converted to it: same
    JSON document, or both refuse (0.2.0 without an address)."""
    try:
        doc = encode(res, source)
    except IncompatibleVersion:
        return
    answers = oracle.ask([{"op": "convert", "result": doc, "to": t} for t in targets])
    for to, ans in zip(targets, answers, strict=True):
        ours = _ours(doc, to)
        if not ans["ok"]:
            assert ours is None, f"libcni refused {source}->{to} ({ans['error']}) but we printed {ours}"
            continue
        assert ours is not None, f"libcni converted {source}->{to} to {ans['result']}, we refused"
        assert ours == ans["result"], f"{source}->{to}: ours {ours} != libcni {ans['result']}"


@given(result_docs(), st.sampled_from(LIBCNI_VERSIONS))
@example(doc={"cniVersion": "0.1.0", "ip4": {}}, to="0.2.0")  # the long run's find: see below
def test_a_result_libcni_reads_we_read_the_same(oracle: Oracle, doc: Any, to: str) -> None:
    """Any document (valid or broken) that libcni reads and converts, we read and convert to the same
    JSON; where libcni refuses, we may be more lenient (see the report) but never crash."""
    if not isinstance(doc, dict):
        return
    if doc.get("cniVersion") not in LIBCNI_VERSIONS or doc["cniVersion"] == to:
        return  # libcni passes a result through unconverted (and unchecked) when asked for its own version
    if (not at_least(doc["cniVersion"], "0.3.0") and not at_least(to, "0.3.0")
            and not any(isinstance(doc.get(k), dict) for k in ("ip4", "ip6"))):
        # 0.1.0 <-> 0.2.0 is a copy in libcni, even without an address; a result we print always holds one
        # (like libcni's own 0.3+ -> 0.2 conversion, ours refuses an address-less 0.2.0 result)
        return
    if any(v is None for k in ("interfaces", "ips", "routes") if isinstance(doc.get(k), list) for v in doc[k]):
        return  # a null entry: libcni copies it through (or panics, see below); we refuse it (code 6)
    [ans] = oracle.ask([{"op": "convert", "result": doc, "to": to}])
    ours = _ours(doc, to)
    if ans["ok"] and "<nil>" in json.dumps(ans["result"]):
        # libcni read an address object without its address: the zero IPNet prints as "<nil>", which no
        # runtime can use; we refuse such a document (a CNI error, never a crash)
        assert ours is None, f"libcni printed {ans['result']}, we printed {ours} for {doc}"
        return
    if ans["ok"]:
        assert ours == ans["result"], f"libcni {ans['result']} != ours {ours} for {doc}"


# ------------------------------------------------------------------------------------------ regressions
# Found by test_a_result_libcni_reads_we_read_the_same: the shape was chosen by the keys present, not by
# cniVersion as libcni does.

def test_an_address_object_without_its_address_is_refused_not_printed_as_nil() -> None:
    """Found by the long run (tests/fuzz/RESULTS.md): libcni copies {"ip4": {}} from 0.1.0 to 0.2.0 and prints
    its zero IPNet as "<nil>"; we refuse the document as malformed (6)."""
    for doc in ({"cniVersion": "0.1.0", "ip4": {}}, {"cniVersion": "0.2.0", "ip6": {"gateway": "fd00::1"}}):
        try:
            decode(doc)
        except DecodingFailure as exc:
            assert exc.code == 6
        else:
            raise AssertionError(f"{doc} decoded")


def test_a_0_1_0_result_with_an_ips_key_reads_as_0_1_0() -> None:
    doc = {"cniVersion": "0.1.0", "ips": True}  # minimal failing input: libcni ignores "ips" in 0.1.0
    assert decode(doc) == Result()
    doc = {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}, "ips": [{"address": "10.9.9.9/24"}]}
    assert [str(ip.address) for ip in decode(doc).ips] == ["10.0.0.2/24"]


def test_a_1_0_0_result_ignores_ip4_and_ip6_keys() -> None:
    doc = {"cniVersion": "1.0.0", "ip4": {"ip": "10.0.0.2/24"}, "ips": [{"address": "10.0.0.3/24"}]}
    assert [str(ip.address) for ip in decode(doc).ips] == ["10.0.0.3/24"]
    assert decode({"cniVersion": "0.4.0", "ip4": {"ip": "10.0.0.2/24"}}) == Result()


def test_a_result_with_a_null_route_is_a_decoding_failure(oracle: Oracle) -> None:
    """Found by test_a_result_libcni_reads_we_read_the_same: libcni 1.1.2 copies "routes":[null] into a
    0.3+ result and panics converting it to 0.x (nil dereference; the oracle reports the panic and lives
    on); we refuse the document (code 6) rather than carry a null route."""
    doc = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}], "routes": [None]}
    down, same_shape = oracle.ask([{"op": "convert", "result": doc, "to": "0.2.0"},
                                   {"op": "convert", "result": doc, "to": "0.4.0"}])
    assert not down["ok"] and "panic" in down["error"], down
    assert same_shape["ok"] and same_shape["result"]["routes"] == [None], same_shape
    try:
        decode(doc)
    except DecodingFailure as exc:
        assert exc.code == 6
    else:
        raise AssertionError("a null route was decoded")
