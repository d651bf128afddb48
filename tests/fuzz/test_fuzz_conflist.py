"""Conflist documents through the admin side's readers (``cni-ignite reserve`` and ``gc``): any file
contents give a network, nothing, or one of our CNI errors."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from strategies import DEEP_SPEC, conflist_docs, to_json

from cni_ignite import gc, reserve
from cni_ignite.errors import CniError

# Each example builds a whole conflist of plugin configurations: a third of the profile's examples.
FEWER = settings(max_examples=max(8, settings.default.max_examples // 3))


@FEWER
@given(conflist_docs())
def test_reserve_reads_any_conflist_as_a_network_or_a_cni_error(doc: Any) -> None:
    if not isinstance(doc, dict):
        return
    try:
        net = reserve.network_of(doc)
    except CniError as exc:
        assert exc.code != 999, repr(exc)
        return
    assert net.conf.name == doc.get("name")


@FEWER
@given(conflist_docs(), DEEP_SPEC)
def test_gc_finds_bridge_networks_in_any_conf_dir(doc: Any, deep: tuple[int, str]) -> None:
    with tempfile.TemporaryDirectory() as conf_dir:
        Path(conf_dir, "10-x.conflist").write_bytes(to_json(doc, deep))
        try:
            found = gc.bridge_networks(conf_dir)
        except CniError as exc:
            assert exc.code != 999, repr(exc)
            return
        for conf in found:
            assert conf.type == "ignite-bridge" and conf.name
