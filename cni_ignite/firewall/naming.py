"""Pure naming: every attachment (network, container ID, ifname) gets a short stable key, and every
chain, comment and state path of that attachment is derived from it.

The key is the first 20 hex digits (80 bits) of sha256 over the three fields joined by NUL, so
ifname counts (two interfaces of one container on one network are separate attachments, unlike the
reference ipMasq chain, see CNI-NOTES §3.11). iptables chain names stay ≤ 28 characters.
"""

from __future__ import annotations

from .._sha import sha256

KEY_LEN = 20
IPT_MAX_CHAIN = 28

# Shared iptables chains (created on demand, never flushed or deleted by us).
IPT_POSTROUTING = "CNI-IGNITE-POSTRT"  # nat, jumped from POSTROUTING
IPT_DNAT = "CNI-IGNITE-DNAT"  # nat, jumped from PREROUTING and OUTPUT for local destinations
IPT_FORWARD = "CNI-IGNITE-FWD"  # filter, jumped from FORWARD
IPT_ADMIN = "CNI-IGNITE-ADMIN"  # filter, first rule of CNI-IGNITE-FWD; the administrator's
IPT_INPUT = "CNI-IGNITE-INPUT"  # filter, jumped from INPUT (CVE-2020-8558 localnet guard)

IPT_BUCKETS = "0123456789abcdef"  # layout 2: each shared chain's rules sit in 16 sub-chains by key[0]

NFT_TABLE = "cni_ignite"  # table inet cni_ignite

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NET_CHARS = _ALNUM | frozenset("_.-")


def _safe_net(network: str) -> bool:
    """[A-Za-z0-9][A-Za-z0-9_.-]{0,99}, with str methods (no regex compiled on every call)."""
    return 1 <= len(network) <= 100 and network[0] in _ALNUM and set(network) <= _NET_CHARS


def owner_key(network: str, container_id: str, ifname: str) -> str:
    digest = sha256("\0".join((network, container_id, ifname)).encode()).hexdigest()
    return digest[:KEY_LEN]


def comment(key: str) -> str:
    """The comment on every rule an attachment puts into a shared chain (no spaces: no quoting)."""
    return f"cni-ignite:{key}"


def ipt_masq_chain(key: str) -> str:
    return f"CNI-IGM-{key}"


def ipt_dnat_chain(key: str) -> str:
    return f"CNI-IGD-{key}"


def ipt_chains(key: str) -> tuple[str, ...]:
    return ipt_masq_chain(key), ipt_dnat_chain(key)


def ipt_bucket(shared: str, key: str) -> str:
    """Layout 2: the sub-chain of a shared chain that holds key's rules (iptables-nft fetches only the
    chains a batch touches: a DEL's ``-D`` reads 1/16 of the shared rules)."""
    return f"{shared}-{key[0]}"


def nft_post_chain(key: str) -> str:
    return f"p-{key}"


def nft_dnat_chain(key: str) -> str:
    return f"d-{key}"


def nft_fwd_chain(key: str) -> str:
    return f"f-{key}"


def nft_chains(key: str) -> tuple[str, ...]:
    """The per-attachment chains of nft layout 1 (removed by DEL; nothing creates them any more)."""
    return nft_post_chain(key), nft_dnat_chain(key), nft_fwd_chain(key)


def nft_cond_chain(key: str) -> str:
    """Layout 2: the one chain of an attachment with conditionsV4/V6 (its DNAT rules)."""
    return f"c-{key}"


def network_dir(network: str) -> str:
    """The folder name for a network's state records: the name itself when it is a plain CNI name."""
    if _safe_net(network) and network not in {".", "..", "ports"}:
        return network
    # "_" first: no CNI network name starts with it, so a hashed folder is never another network's own name
    # (nor the port registry's folder, "ports").
    return "_net-" + sha256(network.encode()).hexdigest()[:16]


__all__ = [
    "IPT_ADMIN",
    "IPT_BUCKETS",
    "IPT_DNAT",
    "IPT_FORWARD",
    "IPT_INPUT",
    "IPT_MAX_CHAIN",
    "IPT_POSTROUTING",
    "NFT_TABLE",
    "comment",
    "ipt_bucket",
    "ipt_chains",
    "ipt_dnat_chain",
    "ipt_masq_chain",
    "network_dir",
    "nft_chains",
    "nft_cond_chain",
    "nft_dnat_chain",
    "nft_fwd_chain",
    "nft_post_chain",
    "owner_key",
]
