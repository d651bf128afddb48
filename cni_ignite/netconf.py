"""The network configuration common to every plugin, and the CNI_ARGS grammar; pure functions.

``parse_netconf`` turns stdin bytes into a ``NetConf``: JSON that is not an object is code 6, a bad or
missing ``name`` code 7, an unsupported ``cniVersion`` code 1. Unknown keys are kept in ``raw`` and
otherwise ignored (runtimes inject ``runtimeConfig``, ``args``, ``prevResult``, ``capabilities``,
``cni.dev/*``).
"""

from __future__ import annotations

from . import _json as json  # json's own C scanner/encoder without the json package (and re): cni_ignite/_json.py
from .errors import DecodingFailure, InvalidConfig, InvalidEnvironment
from .version import require_supported

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record
else:
    from . import Record  # a NamedTuple at namedtuple's cost (cni_ignite/__init__.py)

_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NAME_CHARS = _ALNUM + "_.-"


class _NamePattern:
    """``re.compile(pattern).match`` for the one pattern below, by str methods: no regex compiled at import
    on every plugin call (benchmarks/IMPORTS.md). ``match`` returns a bool; callers only test it."""

    pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z"  # \Z, not $: "$" also matches before a final "\n"

    @staticmethod
    def match(name: str) -> bool:
        return name[:1] != "" and name[:1] in _ALNUM and not name.strip(_NAME_CHARS)


NAME_RE = _NamePattern()


class NetConf(Record):
    cni_version: str
    name: str
    type: str
    raw: dict[str, Any]
    prev_result: dict[str, Any] | None
    runtime_config: dict[str, Any]
    args: dict[str, Any]


def load_object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise DecodingFailure("failed to decode network configuration", str(exc)[:200]) from exc
    if not isinstance(doc, dict):
        raise DecodingFailure("network configuration is not a JSON object", type(doc).__name__)
    return doc


def parse_netconf(raw: bytes) -> NetConf:
    doc = load_object(raw)
    version = doc.get("cniVersion", "0.1.0")  # libcni: a missing cniVersion means 0.1.0
    if not isinstance(version, str):
        raise InvalidConfig("cniVersion must be a string", repr(version))
    require_supported(version)
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidConfig("missing network name")
    if not NAME_RE.match(name):
        raise InvalidConfig("invalid network name", f"{name!r} must match {NAME_RE.pattern}")
    prev = doc.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise InvalidConfig("prevResult must be an object")
    return NetConf(
        cni_version=version,
        name=name,
        type=_plugin_type(doc),
        raw=doc,
        prev_result=prev,
        runtime_config=canonical_runtime_config(obj_field(doc, "runtimeConfig")),
        args=obj_field(doc, "args"),
    )


def _plugin_type(doc: dict[str, Any]) -> str:
    """``type`` (the plugin's name; libcni's NetConf decodes "Type" too); "" when missing: the skeleton
    refuses that with code 7, answering in the config's cniVersion."""
    value = go_get(doc, "type")
    if value is not None and not isinstance(value, str):
        raise InvalidConfig("type must be a string", repr(value)[:100])
    return value or ""


# ------------------------------------------------------------------------------------ Go-style keys

def go_get(obj: dict[str, Any], key: str, default: Any = None) -> Any:
    """``obj[key]`` found the way Go's encoding/json finds a struct field: the exact key first, else a key
    equal to it ignoring case (the last such key, as Go's decoder keeps the last value it assigns).

    go-cni (containerd's CRI, Ignite) marshals capability structs without JSON tags, so runtimeConfig
    values arrive as ``{"HostPort": 8080, "ContainerPort": 80, "Protocol": "udp", "HostIP": ""}``; the Go
    plugins accept those keys, and so must we."""
    if key in obj:
        return obj[key]
    folded = key.casefold()
    found = default
    for k, v in obj.items():
        if k.casefold() == folded:
            found = v
    return found


# The well-known capabilities (CNI-NOTES; CONVENTIONS.md of the spec) a plugin of ours may read.
CAPABILITIES = ("portMappings", "ipRanges", "bandwidth", "dns", "ips", "mac", "aliases", "deviceID",
                "infinibandGUID", "cgroupPath")


def canonical_runtime_config(runtime: dict[str, Any]) -> dict[str, Any]:
    """runtimeConfig with each well-known capability under its canonical key (found as Go finds it)."""
    if all(k in CAPABILITIES for k in runtime):
        return runtime
    out = {k: v for k, v in runtime.items() if not any(k.casefold() == c.casefold() for c in CAPABILITIES)}
    out.update(go_view(runtime, CAPABILITIES))
    return out


def go_view(obj: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A copy of obj holding each of ``keys`` under its canonical spelling (found by :func:`go_get`);
    the other keys are left out."""
    out: dict[str, Any] = {}
    for key in keys:
        value = go_get(obj, key, _MISSING)
        if value is not _MISSING:
            out[key] = value
    return out


_MISSING: Any = object()


# ------------------------------------------------------------------------------------ typed field access

def str_field(doc: dict[str, Any], key: str, *, default: str = "", where: str = "") -> str:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidConfig(f"{where}{key} must be a string", repr(value))
    return value


def bool_field(doc: dict[str, Any], key: str, *, default: bool = False, where: str = "") -> bool:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidConfig(f"{where}{key} must be true or false", repr(value))
    return value


def int_field(doc: dict[str, Any], key: str, *, default: int = 0, lo: int | None = None,
              hi: int | None = None, where: str = "") -> int:
    value = doc.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfig(f"{where}{key} must be an integer", repr(value))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidConfig(f"{where}{key} out of range", f"{value} not in [{lo}, {hi}]")
    return value


def obj_field(doc: dict[str, Any], key: str, *, where: str = "") -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidConfig(f"{where}{key} must be an object", repr(value))
    return value


def list_field(doc: dict[str, Any], key: str, *, where: str = "") -> list[Any]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidConfig(f"{where}{key} must be a list", repr(value))
    return value


# ------------------------------------------------------------------------------------------- CNI_ARGS

def parse_cni_args(text: str, known: frozenset[str]) -> dict[str, str]:
    """``K=V;K2=V2`` as libcni's LoadArgs reads it: every ``;``-separated piece (an empty one too, as in
    ``K=V;``) must split on ``=`` into exactly a key and a value; keys are case-sensitive and a later pair
    replaces an earlier one; ``IgnoreUnknown`` must be 1/0/true/false (any case); keys outside `known` are
    an error unless the last ``IgnoreUnknown`` is 1/true. Any violation is code 4."""
    pairs: dict[str, str] = {}
    if not text:
        return pairs
    for item in text.split(";"):
        kv = item.split("=")
        if len(kv) != 2:
            raise InvalidEnvironment("CNI_ARGS: invalid pair", repr(item))
        if kv[0] == "IgnoreUnknown" and kv[1].lower() not in ("1", "0", "true", "false"):
            raise InvalidEnvironment("CNI_ARGS: IgnoreUnknown must be 1, 0, true or false", repr(item))
        pairs[kv[0]] = kv[1]
    ignore = pairs.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(k for k in pairs if k not in known and k != "IgnoreUnknown")
    if unknown and not ignore:
        raise InvalidEnvironment("CNI_ARGS: unknown args", ", ".join(unknown))
    return {k: v for k, v in pairs.items() if k in known}
