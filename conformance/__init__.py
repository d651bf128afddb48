"""A black-box CNI conformance suite: drives any plugin chain as libcni does, in throwaway namespaces.

Run ``python -m conformance --cni-path DIR --conflist FILE [--report out.json] [--markdown out.md]``.
Modules: ``driver`` (libcni-like runtime), ``hostns`` (namespaces), ``snapshot`` (host state diff),
``cases`` (checks), ``suite`` (per-plugin cases, one run per cniVersion), ``scenarios`` (the chain
scenarios of one run), ``report`` (table, markdown, JSON).
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from .__main__ import main as _main

    return _main(argv)
