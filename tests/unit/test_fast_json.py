"""cni_ignite._json gives json's results and json's errors (it runs json's own C scanner/encoder).

Compared with the real ``json`` on generated documents (valid, mutated, as str and as bytes in several
encodings) and on hand-picked broken input; and it imports neither ``json`` nor ``re``.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import pytest
from freshpy import run_fresh
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_ignite import _json

if TYPE_CHECKING:
    from pathlib import Path

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                         st.tuples(inner, inner),
                                                         st.dictionaries(st.text(), inner, max_size=5)),
                         max_leaves=25)


def outcome(fn: Any, *args: Any, **kw: Any) -> tuple[str, str]:
    """(kind, text): the value as json would print it (NaN-safe), or the exception's type and message."""
    try:
        value = fn(*args, **kw)
    except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        return type(exc).__name__, str(exc)
    return "ok", json.dumps(value) if not isinstance(value, str) else value


def same_loads(data: str | bytes) -> None:
    assert outcome(_json.loads, data) == outcome(json.loads, data)


@settings(max_examples=150, deadline=None)
@given(documents, st.sampled_from([None, (",", ":"), (", ", ": ")]))
def test_dumps_is_json_dumps(doc: Any, separators: tuple[str, str] | None) -> None:
    assert outcome(_json.dumps, doc, separators=separators) == outcome(json.dumps, doc, separators=separators)
    assert _json.dumps(doc, separators=separators, default=str) == json.dumps(doc, separators=separators, default=str)


@settings(max_examples=150, deadline=None)
@given(documents, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"]),
       st.sampled_from(["", " ", "\n", " \t\r\n"]))
def test_loads_is_json_loads_on_documents(doc: Any, encoding: str, pad: str) -> None:
    text = pad + json.dumps(doc) + pad
    same_loads(text)
    same_loads(text.encode(encoding, "surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfnulrsaINy \t\n\r\\x\ufeff\u00e9', max_size=30))
def test_loads_is_json_loads_on_fragments(text: str) -> None:
    same_loads(text)
    same_loads(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=12))
def test_loads_is_json_loads_on_bytes(data: bytes) -> None:
    same_loads(data)


@pytest.mark.parametrize("data", [
    "", " ", "{", "}", "[1,]", "[1 2]", "1 2", "01", "-", "NaN", "-Infinity", "Infinity", "nan", '"\\ud800"',
    '"a\nb"', '"\\x"', "\ufeff1", "\ufeff", "{}x", "{} \n", '{"a":1,"a":2}', "1e400", "-0", "1.0e-400", "[" * 5000,
    b"", b"\xff", b"\xef\xbb\xbf{}", b"\xef\xbb", b"\x00\x00\x00{", b"{\x00\x00\x00", b"\xfe\xff\x00{\x00}",
    b"1\x00", b"\x001", b"12\x00", b'"\xed\xa0\x80"', bytearray(b"[1]"), 5, None, ["[]"],
])
def test_loads_is_json_loads_on_broken_input(data: Any) -> None:
    same_loads(data)


def test_dumps_errors_and_special_values_are_jsons() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for doc in (loop, {(1, 2): 3}, {1: 2, 2.5: 3, False: 4, None: 5}, object(), {"a": {1, 2}}, math.nan, -math.inf,
                "\ud800", "é\x00", b"x"):
        assert outcome(_json.dumps, doc) == outcome(json.dumps, doc)


def test_load_reads_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": [1, 2]}\n')
    with (tmp_path / "a.json").open() as fh:
        assert _json.load(fh) == {"x": [1, 2]}
    with (tmp_path / "a.json").open("rb") as fh:
        assert _json.load(fh) == {"x": [1, 2]}


def test_imports_neither_json_nor_re() -> None:
    code = (
        "import sys\n"
        "from cni_ignite import _json\n"
        "_json.loads(b'{\"a\": [1, 2.5]}'); _json.dumps({'a': 1}, separators=(',', ':'))\n"
        "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))\n"
    )
    out = run_fresh(code)
    assert out.strip() == "[]"


BROKEN = ["{", '{"a"', '{"a":1', '{"a":1,}', '"abc', '[1,', "not json", "", '{"cniVersion":"1.0.0"']


def test_broken_input_raises_jsons_error_while_the_json_package_is_not_loaded() -> None:
    """A fresh process, as a plugin is: CPython 3.11's C scanner cannot build its JSONDecodeError while
    json.decoder is not in sys.modules (it answered SystemError, and the plugins 999 for a stdin that is
    not JSON): every broken input must still raise json's own JSONDecodeError with json's message."""
    code = (
        "import sys\n"
        "from cni_ignite import _json\n"
        "assert 'json.decoder' not in sys.modules\n"
        f"for text in {BROKEN!r}:\n"
        "    try:\n"
        "        _json.loads(text)\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc)\n"
        "    else:\n"
        "        print('no error')\n"
    )
    out = run_fresh(code)
    expected = []
    for text in BROKEN:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            expected.append(f"JSONDecodeError {exc}")
    assert out.splitlines() == expected
