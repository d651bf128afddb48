"""cni-ignite: CNI bridge and IPAM plugins for microVM hosts."""

from __future__ import annotations

from collections import namedtuple  # loaded by functools (re, json) anyway on every plugin path

# Not ``from typing import TYPE_CHECKING``: importing ``typing`` costs ~2.5 ms on every plugin call
# (benchmarks/IMPORTS.md); mypy and ruff treat a module-level ``TYPE_CHECKING = False`` the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_NOT_COPIED = frozenset({"__module__", "__qualname__", "__annotations__", "__orig_bases__"})


class _RecordMeta(type):
    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
        if not bases:  # Record itself
            return super().__new__(mcls, name, bases, ns)
        annotations = ns.get("__annotations__", {})
        fields = tuple(annotations)
        cls = namedtuple(name, fields, defaults=[ns[f] for f in fields if f in ns],  # type: ignore[misc]
                         module=ns["__module__"])
        cls.__qualname__ = ns.get("__qualname__", name)
        cls.__annotations__ = annotations  # typing.get_type_hints works as on a NamedTuple
        for key, value in ns.items():
            if key not in fields and key not in _NOT_COPIED:
                setattr(cls, key, value)
        return cls


class Record(metaclass=_RecordMeta):
    """``typing.NamedTuple``'s class syntax at ``collections.namedtuple``'s cost, for the plugins' value types.

    ``typing.NamedTuple`` turns every field's annotation (a string, under ``from __future__ import
    annotations``) into a ForwardRef with one ``compile()`` each: 0.13 ms for a 2-field class, 0.79 ms for 30
    fields, against 0.06 / 0.26 ms here (benchmarks/IMPORTS.md). Use it so that mypy still sees a NamedTuple
    (and, on a plugin's path, without importing ``typing`` at all: ``TYPE_CHECKING = False`` is understood by
    mypy and ruff like ``typing.TYPE_CHECKING``)::

        TYPE_CHECKING = False
        if TYPE_CHECKING:
            from typing import NamedTuple as Record
        else:
            from cni_ignite import Record

        class Addr(Record):
            ip: str
            prefix: int = 24

    The class is a ``collections.namedtuple`` (fields, defaults, ``_replace``, ``_asdict``, equality and
    hashing as a tuple) with the body's methods, docstring and ``__annotations__``.
    """
