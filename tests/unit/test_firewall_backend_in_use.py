"""core.backend_in_use: the backend `auto` reuses for a network is read from one record, without listing
the network's records (an ADD at 4,000 attachments listed 4,000 names) and without parsing its config."""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

from cni_ignite.firewall import core, state
from cni_ignite.firewall.base import FirewallConfig, Owner, parse_firewall_config

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def write(sd: str, cid: str, backend: str) -> None:
    cfg = FirewallConfig(backend=backend, ip_masq=True, state_dir=sd)
    state.write(state.Record(owner=Owner("net1", cid, "eth0"), backend=backend, config=cfg, ports=(),
                             addresses=(ipaddress.ip_interface("10.99.0.2/24"),)))


def test_no_folder_or_no_record_names_none(tmp_path: Path) -> None:
    assert core.backend_in_use(str(tmp_path), "net1") is None
    write(str(tmp_path), "other", "iptables")
    assert core.backend_in_use(str(tmp_path), "net2") is None


def test_a_record_names_the_backend_past_temp_files_and_unreadable_ones(tmp_path: Path) -> None:
    sd = str(tmp_path)
    write(sd, "a", "iptables")
    folder = os.path.join(sd, "net1")
    for name, text in (("x.tmp123", '{"backend": "nftables"}'), ("broken", "{"), ("odd", '["backend"]'),
                       ("unknown", '{"backend": "ebtables"}')):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    assert core.backend_in_use(sd, "net1") == "iptables"


def test_the_records_are_not_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = str(tmp_path)
    for i in range(50):
        write(sd, f"c{i}", "nftables")

    def no_listing(path: str) -> list[str]:
        raise AssertionError(f"listed {path}")

    monkeypatch.setattr(os, "listdir", no_listing)
    assert core.backend_in_use(sd, "net1") == "nftables"
    cfg = parse_firewall_config({"stateDir": sd})
    monkeypatch.setattr(core, "_legacy_tables", lambda: False)
    assert core.choose_backend(cfg, "net1") == "nftables"
