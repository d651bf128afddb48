"""``json.loads``/``json.load``/``json.dumps`` for the plugins' path, on ``_json`` (the C accelerator the ``json``
package itself runs) without importing the ``json`` package: that import pulls ``re`` (and ``enum``, the regex
parser and compiler) and compiles its patterns, ~3-5 ms of CPU on every plugin call (benchmarks/IMPORTS.md).

The results are json's own, because the same C scanner and encoder do the work, set up as ``json.loads(s)``
and ``json.dumps(obj, separators=..., default=...)`` set them up (every other option at its default). Whatever
these functions do not handle themselves is handed to the real ``json`` (imported then): a failure (the error
raised is json's: ``JSONDecodeError`` "Expecting value"/"Extra data", ``TypeError``, ``UnicodeDecodeError``),
bytes in UTF-16/32 or with a BOM, a str with a BOM.
tests/unit/test_fast_json.py compares both on generated documents and on broken input.
"""

from __future__ import annotations

from _json import encode_basestring_ascii as _c_ascii
from _json import make_encoder as _c_make_encoder
from _json import make_scanner as _c_make_scanner

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any

_WS = " \t\n\r"  # json.decoder.WHITESPACE: r"[ \t\n\r]*"
_NOT_UTF8_START = (b"\x00", b"\xef", b"\xfe", b"\xff")  # what may be a BOM, or UTF-16/32 (json.detect_encoding)
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Decoder:
    """The attributes the C scanner reads of a ``json.JSONDecoder()`` (json.scanner.c_make_scanner)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = _c_make_scanner(_Decoder())  # type: ignore[arg-type]  # typeshed wants a make_scanner; any such object does


def _json() -> Any:
    import json

    return json


def loads(s: str | bytes | bytearray) -> Any:
    """``json.loads(s)``."""
    if isinstance(s, str):
        text = s
        if text.startswith("\ufeff"):
            return _json().loads(s)  # raises json's "Unexpected UTF-8 BOM"
    elif isinstance(s, (bytes, bytearray)) and s[:1] not in _NOT_UTF8_START and s[1:2] != b"\x00":
        text = s.decode("utf-8", "surrogatepass")  # what json.detect_encoding picks for such bytes
    else:
        return _json().loads(s)
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except (StopIteration, SystemError, ValueError):
        # StopIteration: no value at `start`. SystemError: the C scanner met a syntax error and, with the json
        # package not imported, could not build its JSONDecodeError (CPython 3.11's _json looks json.decoder up
        # in sys.modules only and returns NULL without an exception). Either way json itself says what is wrong.
        return _json().loads(s)
    if end != len(text) and text[end:].lstrip(_WS):
        return _json().loads(s)  # raises json's "Extra data"
    return obj


def load(fp: IO[str] | IO[bytes]) -> Any:
    """``json.load(fp)``."""
    return loads(fp.read())


def _default(o: object) -> Any:
    """``json.JSONEncoder.default``."""
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj: Any, *, separators: tuple[str, str] | None = None, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(obj, separators=separators, default=default)``."""
    if isinstance(obj, str):
        return str(_c_ascii(obj))
    item_sep, key_sep = separators if separators is not None else (", ", ": ")
    # json.JSONEncoder.iterencode(o, _one_shot=True) with check_circular, ensure_ascii, allow_nan and no indent
    encode = _c_make_encoder({}, default if default is not None else _default, _c_ascii, None, key_sep, item_sep,
                             False, False, True)
    return "".join(encode(obj, 0))
