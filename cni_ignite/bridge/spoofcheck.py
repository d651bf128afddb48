"""``macspoofchk``: drop frames entering the bridge from an attachment's port whose source MAC is not
the attachment's (the container's, and in VM bridge mode the guest's too).

nftables, bridge family, table ``cni_ignite_spoofchk``: the base chain ``prerouting`` (filter hook,
priority -300, as the reference) holds one rule ``iifname vmap @ports``; each attachment has a chain
``mac-<hash>`` and an element ``"<host veth>" : jump mac-<hash>`` in the map. The host veth name is
derived from the attachment, so DEL removes exactly its element and chain without listing anything.
Every change is one ``nft -f -`` transaction; re-adding what exists is harmless, so ADD and DEL are
idempotent and safe under concurrency. The texts ride inside the firewall's nftables transaction when
there is one (``firewall_glue.PortFilters``).
"""

from __future__ import annotations

from ..errors import CniError
from ..hostexec import find_program, run

TABLE = "bridge cni_ignite_spoofchk"
_BASE = (
    f"add table {TABLE}\n"
    f"add chain {TABLE} prerouting {{ type filter hook prerouting priority -300; policy accept; }}\n"
    f"add map {TABLE} ports {{ type ifname : verdict; }}\n"
)


def _chain(port: str) -> str:
    return "mac-" + port.removeprefix("veth")


def _nft(script: str, what: str) -> None:
    done = run([find_program("nft"), "-f", "-"], stdin=script.encode())
    if not done.ok:
        raise CniError(f"macspoofchk: {what} failed", done.stderr.decode(errors="replace").strip())


def setup_text(port: str, macs: list[str]) -> str:
    """The ``nft -f -`` text of setup (idempotent: also sent inside the firewall's transaction)."""
    chain = _chain(port)
    allowed = ", ".join(macs)
    return (_BASE
            + f"flush chain {TABLE} prerouting\n"
            + f"add rule {TABLE} prerouting iifname vmap @ports\n"
            + f"add chain {TABLE} {chain}\nflush chain {TABLE} {chain}\n"
            + f"add rule {TABLE} {chain} ether saddr {{ {allowed} }} return\n"
            + f"add rule {TABLE} {chain} drop\n"
            + f'add element {TABLE} ports {{ "{port}" : jump {chain} }}\n')


def teardown_text(port: str) -> str:
    """The ``nft -f -`` text of teardown (succeeds whether the entry exists or not)."""
    chain = _chain(port)
    return (_BASE
            + f"add chain {TABLE} {chain}\n"
            + f'add element {TABLE} ports {{ "{port}" : jump {chain} }}\n'
            + f'delete element {TABLE} ports {{ "{port}" }}\n'
            + f"flush chain {TABLE} {chain}\ndelete chain {TABLE} {chain}\n")


def setup(port: str, macs: list[str]) -> None:
    _nft(setup_text(port, macs), "setup")


def teardown(port: str) -> None:
    _nft(teardown_text(port), "teardown")


def present(port: str) -> bool:
    done = run([find_program("nft"), "list", "chain", *TABLE.split(), _chain(port)])
    return done.ok and b"drop" in done.stdout
