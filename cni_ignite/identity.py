"""Who an attachment belongs to (its owner): what survives a restart of the pod, VM or container.

Resolution, first match wins:
1. an explicit owner named by the runtime: ``CNI_ARGS`` ``IGNITE_OWNER=<text>`` or ``args.cni.owner``
   (both may be given only with the same value);
2. the Kubernetes pod: ``K8S_POD_NAMESPACE`` + ``K8S_POD_NAME`` from ``CNI_ARGS`` (containerd's CRI and
   CRI-O pass both), as ``k8s:<namespace>/<name>``;
3. the container ID (Ignite passes the VM's ID, which survives ``ignite stop/start``; podman's container ID
   survives ``podman restart``).

An owner is 1-253 printable characters without whitespace other than the space. The Kubernetes names must
be what the API server admits (DNS-1123: lowercase letters, digits, '-', '.'), so ``k8s:<ns>/<name>`` reads
one way only. The network and the interface name are part of the identity: :func:`owner_key` hashes
(owner, ifname), so one owner with two interfaces has two stable addresses and MACs.

Pure; ``ignite-bridge``, ``ignite-ipam`` and the per-call log use this one function. The plugins call it
with ``strict=True`` (a malformed owner is a CNI error: code 4 from CNI_ARGS, 7 from args.cni); the call
log calls it leniently (a malformed owner is ignored, the next rule applies).
"""

from __future__ import annotations

from ._sha import sha256
from .errors import InvalidConfig, InvalidEnvironment

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import Any

OWNER_ARG = "IGNITE_OWNER"
K8S_NAMESPACE, K8S_NAME = "K8S_POD_NAMESPACE", "K8S_POD_NAME"
MAX_OWNER = 253
_K8S_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def _k8s_name(text: str) -> bool:
    """A DNS-1123 subdomain (what the API server admits for namespaces and pod names); no regex: compiling
    one costs more than the rest of this module on every plugin start."""
    return (0 < len(text) <= MAX_OWNER and set(text) <= _K8S_CHARS and text[0] not in "-."
            and text[-1] not in "-.")


def _pairs(cni_args: str) -> dict[str, str]:
    """CNI_ARGS as key/value pairs, leniently (the plugin validates CNI_ARGS as a whole)."""
    out: dict[str, str] = {}
    for item in cni_args.split(";"):
        key, sep, value = item.partition("=")
        if sep and "=" not in value:
            out[key] = value
    return out


def valid_owner(text: object) -> bool:
    return (isinstance(text, str) and 0 < len(text) <= MAX_OWNER and text.isprintable()
            and text == text.strip())


def owner_of(container_id: str, cni_args: str = "", args_cni: dict[str, Any] | None = None, *,
             strict: bool = False) -> str:
    """The attachment's owner (see the module docstring). ``strict`` raises on a malformed owner."""
    pairs = _pairs(cni_args) if cni_args else {}
    from_args = (args_cni or {}).get("owner")
    from_env = pairs.get(OWNER_ARG)
    if strict:
        if from_args is not None and not valid_owner(from_args):
            raise InvalidConfig("args.cni.owner must be 1-253 printable characters", repr(from_args)[:300])
        if from_env is not None and not valid_owner(from_env):
            raise InvalidEnvironment(f"CNI_ARGS: {OWNER_ARG} must be 1-253 printable characters",
                                     repr(from_env)[:300])
        if from_args is not None and from_env is not None and from_args != from_env:
            raise InvalidConfig(f"args.cni.owner and CNI_ARGS {OWNER_ARG} name different owners",
                                f"{from_args!r} != {from_env!r}")
    for explicit in (from_args, from_env):
        if valid_owner(explicit):
            assert isinstance(explicit, str)
            return explicit
    ns, name = pairs.get(K8S_NAMESPACE, ""), pairs.get(K8S_NAME, "")
    if ns and name:
        if _k8s_name(ns) and _k8s_name(name):
            return f"k8s:{ns}/{name}"
        if strict:
            raise InvalidEnvironment("CNI_ARGS: K8S_POD_NAMESPACE/K8S_POD_NAME are not Kubernetes names",
                                     f"{ns!r}/{name!r}"[:300])
    return container_id


def owner_key(owner: str, ifname: str) -> str:
    """A file-name-safe key of (owner, ifname): the identity of one stable attachment in one network."""
    return sha256(f"{owner}\0{ifname}".encode()).hexdigest()[:32]
