"""`cni-ignite status`: what is installed, the default network, its leases and the attachments with rules.

The default network is the one a runtime picks: the first file (by name) in the conf dir with a
libcni extension that parses. Its leases are read from the IPAM dataDir (ignite-ipam and host-local
share the layout). Attachments with rules come from the firewall module's state when it offers a
listing; otherwise the leases stand in for the attachments (each lease is one container/ifname).
"""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

from .errors import CniError
from .firewall.base import DEFAULT_STATE_DIR  # a plugin's "stateDir" overrides it
from .install import (
    CURRENT_LINK,
    EXECUTABLE,
    LAUNCHER,
    MANIFEST,
    PLUGIN_LINKS,
    conf_files,
    file_sha256,
    read_manifest,
)
from .ipam.config import DEFAULT_DATA_DIR
from .leases import lease_rows, print_leases

LEASE_LAYOUT_IPAM = ("ignite-ipam", "host-local")


def print_status(bin_dir: str, conf_dir: str, data_dir: str | None, state_dir: str | None, out: TextIO,
                 worker_socket: str | None = None) -> int:
    _installed(bin_dir, out, worker_socket)
    net = default_network(conf_dir)
    if net is None:
        out.write(f"default network: none ({conf_dir} has no *.conf/*.conflist/*.json that parses)\n")
        return 0
    path, doc = net
    plugins = _plugins(doc)
    name = str(doc.get("name", "?"))
    out.write(f"default network: {name} ({path}), cniVersion {doc.get('cniVersion', '?')}, "
              f"plugins: {' -> '.join(str(p.get('type', '?')) for p in plugins) or '(none)'}\n")
    ipam: dict[str, Any] = next((p["ipam"] for p in plugins if isinstance(p.get("ipam"), dict)), {})
    ipam_type = str(ipam.get("type", ""))
    if ipam:
        ranges = ipam.get("subnet") or ", ".join(
            str(r.get("subnet")) for rs in ipam.get("ranges", []) if isinstance(rs, list) for r in rs
            if isinstance(r, dict))
        if isinstance(ipam.get("subnetFile"), str):
            ranges = f"{ranges} subnetFile {ipam['subnetFile']}".strip()
        out.write(f"  ipam: {ipam_type} {ranges}\n")
    if ipam_type not in LEASE_LAYOUT_IPAM:
        out.write(f"  leases: not shown ({ipam_type or 'no ipam'} does not use the host-local layout)\n")
        return 0
    data = data_dir or str(ipam.get("dataDir") or DEFAULT_DATA_DIR)
    print_leases(data, [name], out)
    state = state_dir or next((str(p["stateDir"]) for p in plugins if p.get("stateDir")), DEFAULT_STATE_DIR)
    try:
        rules = rule_attachments(state, name)
    except (OSError, CniError) as exc:
        out.write(f"attachments with rules: cannot read {state}: {exc}\n")
        rules = None
    if rules is not None:
        out.write(f"attachments with rules ({state}): {len(rules)}\n")
        for line in rules:
            out.write(f"  {line}\n")
    else:
        rows = lease_rows(data, name) if os.path.isdir(os.path.join(data, name)) else []
        out.write("attachments (from leases; no firewall rule listing available): "
                  f"{len(rows)}\n")
        for r in rows:
            if r.state == "in use":
                out.write(f"  {r.container} {r.ifname} {r.address}{' owner ' + r.owner if r.owner else ''}\n")
    return 0


def _installed(bin_dir: str, out: TextIO, worker_socket: str | None = None) -> None:
    man = read_manifest(bin_dir)
    if man is None:
        out.write(f"installed: no ({MANIFEST} not in {bin_dir})\n")
        for name in PLUGIN_LINKS:
            path = os.path.join(bin_dir, name)
            if os.path.lexists(path):
                out.write(f"  {path} exists (not installed by `cni-ignite install`)\n")
        return
    out.write(f"installed: cni-ignite {man.get('version', '?')} in {bin_dir} ({man.get('installed_at', '?')})\n")
    current = os.path.join(bin_dir, str(man.get("current", "")))
    out.write(f"  bundle: {current}{'' if os.path.isdir(current) else '  MISSING'}\n")
    for name, target in man.get("links", {}).items():
        path = os.path.join(bin_dir, name)
        if not os.path.islink(path):
            state = "MISSING"
        elif os.readlink(path) != target:
            state = f"CHANGED (now -> {os.readlink(path)})"
        elif name != CURRENT_LINK and not os.access(os.path.join(bin_dir, CURRENT_LINK, EXECUTABLE), os.X_OK):
            state = "BROKEN"
        else:
            state = "ok"
        out.write(f"  {path} -> {target}  {state}\n")
    if any(str(t).endswith("/" + LAUNCHER) for t in man.get("links", {}).values()):
        from .worker import DEFAULT_SOCKET, describe

        out.write(f"  warm start (install --worker): worker {describe(worker_socket or DEFAULT_SOCKET)}\n")
    conf = man.get("conflist")
    if conf:
        digest = file_sha256(conf["path"])
        state = "ours, unchanged" if digest == conf["sha256"] else "removed" if digest is None else "changed by user"
        out.write(f"  conflist: {conf['path']} ({state})\n")
    else:
        out.write("  conflist: none written (the conf dir already had a network, or --no-conf)\n")
    backup = man.get("ignite_backup")
    if backup:
        kept = "kept" if file_sha256(backup["backup"]) == backup["sha256"] else "CHANGED or MISSING"
        out.write(f"  took over Ignite's default network: original {backup['backup']} ({kept}, restored by "
                  "uninstall)\n")


def default_network(conf_dir: str) -> tuple[str, dict[str, Any]] | None:
    for name in conf_files(conf_dir):
        path = os.path.join(conf_dir, name)
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            return path, doc
    return None


def _plugins(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A .conflist's plugins, or a single-plugin .conf as a list of one."""
    plugins = doc.get("plugins")
    if isinstance(plugins, list):
        return [p for p in plugins if isinstance(p, dict)]
    return [doc] if "type" in doc else []


def rule_attachments(state_dir: str, network: str) -> list[str] | None:
    """One line per attachment that has firewall rules, from cni_ignite.firewall's listing; None if the
    firewall module offers no listing."""
    import importlib

    try:
        state = importlib.import_module("cni_ignite.firewall.state")
    except ImportError:
        return None
    lister = getattr(state, "list_attachments", None)
    if lister is None:
        return None
    return [str(a) for a in lister(state_dir, network)]
