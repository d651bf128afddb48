"""The lease table of a host-local layout dataDir: shared by `cni-ignite leases` and `cni-ignite status`.

Not on any plugin's path: it may use filelock (the same flock the plugins and Go host-local take) and netaddr.
"""

from __future__ import annotations

import os
import time
from typing import TextIO

from .ipam.store import INDEX_DIR, lease_name, parse_lease


def lease_rows(data_dir: str, network: str) -> list[tuple[str, str, str, float]]:
    """(address, container, ifname, age seconds) of every lease of `network`, read under its lock."""
    from filelock import FileLock  # same flock as the plugins and Go host-local use

    folder = os.path.join(data_dir, network)
    rows: list[tuple[str, str, str, float]] = []
    now = time.time()
    with FileLock(os.path.join(folder, "lock"), timeout=10):
        for entry in os.scandir(folder):
            ip = lease_name(entry.name)
            if ip is None:
                continue
            with open(entry.path, "rb") as f:
                owner = parse_lease(f.read())
            cid, ifname = owner if owner else ("(empty lease)", "")
            rows.append((str(ip), cid, ifname, now - entry.stat().st_mtime))
    rows.sort(key=lambda r: (lease_name(r[0]).version, lease_name(r[0])))  # type: ignore[union-attr]
    return rows


def print_leases(data_dir: str, networks: list[str], out: TextIO) -> int:
    if not networks:
        try:
            networks = sorted(n for n in os.listdir(data_dir)
                              if n != INDEX_DIR and os.path.isdir(os.path.join(data_dir, n)))
        except FileNotFoundError:
            out.write(f"no IPAM data in {data_dir}\n")
            return 0
    for network in networks:
        if not os.path.isdir(os.path.join(data_dir, network)):
            out.write(f"network {network}: no leases ({os.path.join(data_dir, network)} does not exist)\n")
            continue
        rows = lease_rows(data_dir, network)
        out.write(f"network {network}: {len(rows)} lease(s) in {os.path.join(data_dir, network)}\n")
        if rows:
            heads = ("ADDRESS", "CONTAINER", "IFNAME")
            widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]  # type: ignore[arg-type]
            out.write("  " + "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)) + "  AGE\n")
            for addr, cid, ifname, age in rows:
                cells = (addr, cid, ifname)
                out.write("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
                out.write(f"  {human_age(age)}\n")
            out.write(f"  leased blocks: {leased_blocks(rows)}\n")
    return 0


def human_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def leased_blocks(rows: list[tuple[str, str, str, float]]) -> str:
    """The leased addresses as compact CIDR blocks (netaddr's IPSet does the merging)."""
    import netaddr

    cidrs = netaddr.IPSet(r[0] for r in rows).iter_cidrs()
    return ", ".join(str(c) for c in cidrs[:8]) + (f" (+{len(cidrs) - 8} more)" if len(cidrs) > 8 else "")
