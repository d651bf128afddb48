"""The multi-node part of `cni-ignite status`: this host's subnet (the subnet file), the agent (its state file),
and the peers: from etcd when it answers (each lease's public address, backend, VTEP MAC and time left) joined
with the kernel's routes the agent made (protocol 61); from the kernel alone when etcd does not answer.
Nothing here may make status fail: every read is guarded and reported as text.

    multi-node: 10.61.7.0/24 of 10.61.0.0/16 (gateway 10.61.7.1, mtu 1450, agent masquerades leaving traffic)
      agent: pid 812 running, vxlan, public IP 192.168.1.7, etcd http://10.0.0.1:2379 prefix /coreos.com/network
      peers (etcd): 2
        10.61.12.0/24  192.168.1.8  vxlan 5a:0c:..  lease 86382 s  routed
        10.61.30.0/24  192.168.1.9  vxlan 9e:41:..  lease 86395 s  NOT ROUTED
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["PeerRow", "kernel_routes", "print_node_status"]

RTPROT_IGNITE = "61"
ETCD_TIMEOUT = 2.0


class PeerRow(NamedTuple):
    subnet: str
    public_ip: str
    backend: str
    vtep_mac: str
    ttl: int | None  # seconds the lease has left; None when unknown
    routed: bool | None  # the kernel holds our route to it; None when unknown


def kernel_routes() -> dict[str, str] | None:
    """Our routes in the main table (protocol 61): destination -> 'via G dev D'; None when ip cannot be run."""
    import subprocess

    try:
        done = subprocess.run(["ip", "-j", "-4", "route", "show", "proto", RTPROT_IGNITE], capture_output=True,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):  # status never fails
        return None
    if done.returncode != 0:
        return None
    try:
        routes = json.loads(done.stdout or b"[]")
    except ValueError:
        return None
    return {str(r.get("dst")): f"via {r.get('gateway', '?')} dev {r.get('dev', '?')}" for r in routes
            if isinstance(r, dict)}


def _agent_state(subnet_file: str) -> dict[str, Any] | None:
    from .subnetfile import agent_state_path

    try:
        with open(agent_state_path(subnet_file), "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def etcd_peers(state: dict[str, Any], own: str, routes: dict[str, str] | None) -> list[PeerRow]:
    """Every other host's lease in etcd (raises EtcdError when etcd does not answer)."""
    from .etcd import Etcd, TlsFiles
    from .netconfig import ConfigError, LeaseAttrs, subnet_from_key

    tls = state.get("tls") or {}
    etcd = Etcd([str(e) for e in state.get("endpoints", [])],
                TlsFiles(tls.get("ca"), tls.get("cert"), tls.get("key")), timeout=ETCD_TIMEOUT)
    try:
        prefix = f"{str(state.get('prefix', '/coreos.com/network')).rstrip('/')}/subnets/".encode()
        kvs, _ = etcd.range(prefix, prefix=True)
        rows = []
        for kv in kvs:
            subnet = subnet_from_key(kv.key[len(prefix):].decode(errors="replace"))
            if subnet is None or str(subnet) == own:
                continue
            try:
                attrs: LeaseAttrs | None = LeaseAttrs.parse(kv.value)
            except ConfigError:
                attrs = None
            ttl = etcd.time_to_live(kv.lease) if kv.lease else None
            rows.append(PeerRow(str(subnet), str(attrs.public_ip) if attrs else "?", attrs.backend if attrs else "?",
                                (attrs.vtep_mac or "-") if attrs else "?", ttl,
                                None if routes is None else str(subnet) in routes))
        return rows
    finally:
        etcd.close()


def print_node_status(subnet_file: str, out: TextIO) -> None:
    from ..errors import CniError
    from ..subnetenv import read_subnet_env

    try:
        env = read_subnet_env(subnet_file)
    except CniError as exc:
        out.write(f"multi-node: {exc.msg}{': ' + exc.details if exc.details else ''}\n")
        env = None
    own = ""
    if env is not None:
        own = str(env.subnet.network)
        masq = "agent masquerades leaving traffic" if env.ipmasq else "agent does not masquerade (FLANNEL_IPMASQ=false)"
        out.write(f"multi-node: {own} of {env.network} (gateway {env.subnet.ip}, mtu {env.mtu}, {masq}); "
                  f"{subnet_file}\n")
    state = _agent_state(subnet_file)
    if state is None:
        out.write("  agent: no state file (not started with this subnet file, or an older agent)\n")
    else:
        running = "running" if _alive(state.get("pid")) else "NOT RUNNING"
        out.write(f"  agent: pid {state.get('pid', '?')} {running}, {state.get('backend', '?')}, public IP "
                  f"{state.get('public_ip', '?')}, etcd {','.join(map(str, state.get('endpoints', [])))} prefix "
                  f"{state.get('prefix', '?')}, leased {state.get('leased_at', '?')}\n")
    routes = kernel_routes()
    if state is not None and state.get("endpoints"):
        from .etcd import EtcdError

        try:
            rows = etcd_peers(state, own, routes)
        except (EtcdError, OSError, ValueError) as exc:
            out.write(f"  etcd unreachable ({exc}); the data plane keeps the peers it had\n")
        else:
            _print_rows(rows, routes, out)
            return
    if routes is None:
        out.write("  peers: unknown (cannot read the kernel's routes)\n")
        return
    out.write(f"  peers (from the kernel's routes, protocol {RTPROT_IGNITE}): {len(routes)}\n")
    for dst, how in sorted(routes.items(), key=lambda kv: _net_key(kv[0])):
        out.write(f"    {dst:<18} {how}  routed\n")


def _net_key(text: str) -> tuple[int, int]:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return (0, 0)
    return (int(net.network_address), net.prefixlen)


def _print_rows(rows: list[PeerRow], routes: dict[str, str] | None, out: TextIO) -> None:
    out.write(f"  peers (etcd): {len(rows)}\n")
    for r in sorted(rows, key=lambda r: _net_key(r.subnet)):
        ttl = "lease ?" if r.ttl is None else ("lease expired" if r.ttl < 0 else f"lease {r.ttl} s")
        state = "route unknown" if r.routed is None else "routed" if r.routed else "NOT ROUTED"
        out.write(f"    {r.subnet:<18} {r.public_ip:<15} {r.backend} {r.vtep_mac}  {ttl}  {state}\n")
    if routes is not None:
        stale = sorted(set(routes) - {r.subnet for r in rows}, key=_net_key)
        for dst in stale:
            out.write(f"    {dst:<18} {routes[dst]}  STALE (routed, no lease in etcd)\n")
