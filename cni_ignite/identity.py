"""Who an attachment belongs to (its owner): what survives a restart of the pod, VM or container.

Resolution, first match wins:
1. an explicit owner named by the runtime: ``CNI_ARGS`` ``IGNITE_OWNER=<text>`` or ``args.cni.owner``;
2. the Kubernetes pod: ``K8S_POD_NAMESPACE`` + ``K8S_POD_NAME`` from ``CNI_ARGS`` (containerd's CRI and
   CRI-O pass both), as ``k8s:<namespace>/<name>``;
3. the container ID (Ignite passes the VM's ID, which survives ``ignite stop/start``; podman's container ID
   survives ``podman restart``).

Pure; ``ignite-bridge``, ``ignite-ipam`` and the per-call log use this one function.
"""

from __future__ import annotations

from typing import Any

OWNER_ARG = "IGNITE_OWNER"
K8S_NAMESPACE, K8S_NAME = "K8S_POD_NAMESPACE", "K8S_POD_NAME"
MAX_OWNER = 253


def _pairs(cni_args: str) -> dict[str, str]:
    """CNI_ARGS as key/value pairs, leniently (validation is the plugin's job, not the owner's)."""
    out: dict[str, str] = {}
    for item in cni_args.split(";"):
        key, sep, value = item.partition("=")
        if sep and "=" not in value:
            out[key] = value
    return out


def owner_of(container_id: str, cni_args: str = "", args_cni: dict[str, Any] | None = None) -> str:
    pairs = _pairs(cni_args) if cni_args else {}
    explicit = (args_cni or {}).get("owner") or pairs.get(OWNER_ARG)
    if isinstance(explicit, str) and explicit and len(explicit) <= MAX_OWNER and explicit.isprintable():
        return explicit
    ns, name = pairs.get(K8S_NAMESPACE, ""), pairs.get(K8S_NAME, "")
    if ns and name:
        return f"k8s:{ns}/{name}"
    return container_id
