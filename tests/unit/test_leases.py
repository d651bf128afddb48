"""The lease table shared by `cni-ignite leases` and `cni-ignite status` (no root)."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import cni_ignite

PKG = Path(cni_ignite.__file__).parent


def imported_modules(module: str) -> set[str]:
    """Every cni_ignite module `module` imports, at the top or inside a function."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cni_ignite."):
            found.add((node.module or "").split(".")[1])
    return found


def test_status_and_admin_do_not_import_each_other_in_a_circle() -> None:
    """admin runs `status`; status must not reach back into admin for the lease table."""
    assert "status" in imported_modules("admin")
    assert "admin" not in imported_modules("status")


def test_lease_table_lists_addresses_owners_and_blocks(tmp_path: Path) -> None:
    from cni_ignite.leases import print_leases

    net = tmp_path / "n1"
    net.mkdir()
    (net / "10.61.0.3").write_bytes(b"ctr-b\r\neth0")
    (net / "10.61.0.2").write_bytes(b"ctr-a\r\neth1")
    (net / "last_reserved_ip.0").write_text("10.61.0.3")
    out = io.StringIO()
    assert print_leases(str(tmp_path), [], out) == 0
    text = out.getvalue()
    assert "network n1: 2 in use, 0 held/remembered/reserved" in text
    assert text.index("10.61.0.2") < text.index("10.61.0.3")
    assert "ctr-a" in text and "eth1" in text
    assert "leased blocks: 10.61.0.2/31" in text
