"""The node agent's control loop: adopt or write the network config, lease this host's subnet (CAS), write the
subnet file, reconcile the data plane with every lease in etcd, then follow the watch incrementally.

    run()  loop:  config -> lease -> list (full reconcile) -> watch ... until stop
                  any EtcdError: keep the data plane as it is, back off (0.1 s doubling to 5 s), start over
    keepalive thread: refreshes the etcd lease every min(TTL/3, 5 s); a lost lease or a failed refresh closes
                  the watch, so the loop resyncs (and re-leases the same subnet).

Stopping (SIGTERM/SIGINT) leaves the data plane and the lease in place, as flanneld does: a restarted agent
finds its lease by its public IP and keeps the subnet; a host that stays away loses it after the TTL.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import forward, masq
from .dataplane import HostGwPlane, Peer, VxlanPlane, resolve_underlay
from .etcd import Etcd, EtcdError, KeyValue, TlsFiles, Watch, compare, delete_op, put_op
from .netconfig import ConfigError, LeaseAttrs, NetworkConfig, subnet_from_key, subnet_key
from .subnetfile import (
    DEFAULT_SUBNET_FILE,
    SubnetFile,
    agent_state_path,
    read_subnet_file,
    write_agent_state,
    write_subnet_file,
)

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from .dataplane import DataPlane, Underlay

__all__ = ["Agent", "Options"]

log = logging.getLogger("cni_ignite.node")

RACE_RETRIES = 10
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0


@dataclass(frozen=True)
class Options:
    endpoints: list[str]
    prefix: str = "/coreos.com/network"
    network: str = "10.61.0.0/16"
    subnet_len: int = 24
    backend: str = "vxlan"
    vni: int = 1
    port: int = 8472
    iface: str | None = None
    public_ip: str | None = None
    subnet_file: str = DEFAULT_SUBNET_FILE
    ttl: int = 24 * 3600
    ip_masq: bool = True  # flannel's --ip-masq: masquerade traffic leaving the whole network (masq.py)
    forward_rules: bool = True  # flannel's --iptables-forward-rules: accept forwarding in the network (forward.py)
    tls: TlsFiles = field(default_factory=TlsFiles)


class _Resync(Exception):
    """Leave the watch and start the loop over (our lease vanished)."""


@dataclass
class _Lease:
    subnet: ipaddress.IPv4Network
    lease_id: int
    attrs: LeaseAttrs


class Agent:
    def __init__(self, opts: Options, ipr: IPRoute, etcd: Etcd | None = None) -> None:
        self.opts = opts
        self.ipr = ipr
        self.etcd = etcd or Etcd(opts.endpoints, opts.tls)
        self.prefix = opts.prefix.rstrip("/")
        self.stopping = threading.Event()
        self.config: NetworkConfig | None = None
        self.underlay: Underlay | None = None
        self.plane: DataPlane | None = None
        self.lease: _Lease | None = None
        self.lease_lost = False
        self._watch: Watch | None = None
        self._keeper: threading.Thread | None = None

    # --- keys -------------------------------------------------------------------------------------
    @property
    def config_key(self) -> bytes:
        return f"{self.prefix}/config".encode()

    @property
    def subnets_prefix(self) -> bytes:
        return f"{self.prefix}/subnets/".encode()

    def _key(self, subnet: ipaddress.IPv4Network) -> bytes:
        return self.subnets_prefix + subnet_key(subnet).encode()

    def _subnet_of(self, key: bytes) -> ipaddress.IPv4Network | None:
        if not key.startswith(self.subnets_prefix):
            return None
        return subnet_from_key(key[len(self.subnets_prefix):].decode(errors="replace"))

    # --- the loop ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask run() to return (safe from a signal handler or another thread)."""
        self.stopping.set()
        watch = self._watch
        if watch is not None:
            watch.interrupt()

    def run(self) -> None:
        backoff = BACKOFF_MIN
        while not self.stopping.is_set():
            try:
                self._cycle()
                backoff = BACKOFF_MIN
            except _Resync as exc:
                log.info("resync: %s", exc)
            except EtcdError as exc:
                if self.stopping.is_set():
                    break
                log.warning("etcd: %s; data plane kept, retrying in %.1f s", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
        log.info("stopped; data plane and lease left in place")

    def _cycle(self) -> None:
        if self.config is None:
            self.config = self._network_config()
        if self.plane is None:
            self.plane = self._make_plane(self.config)
            if not self.opts.ip_masq:
                masq.remove()  # --no-ip-masq: what an earlier run with masquerading put in place goes
            if not self.opts.forward_rules:
                forward.remove()  # --no-iptables-forward-rules: likewise
        if self.lease is None or self.lease_lost:
            self._acquire(self.config, self.plane)
            self._start_keeper()
        peers, revision = self._list(self.config)
        self.plane.reconcile(peers)
        log.info("reconciled %d peer(s) at revision %d", len(peers), revision)
        self._follow(revision + 1)

    # --- config -----------------------------------------------------------------------------------
    def _network_config(self) -> NetworkConfig:
        opts = self.opts
        kv, _ = self.etcd.get(self.config_key)
        if kv is None:
            want = NetworkConfig.make(opts.network, opts.subnet_len, opts.backend, opts.vni, opts.port)
            if self.etcd.txn([compare(self.config_key, "CREATE", 0)], [put_op(self.config_key,
                                                                            want.to_json().encode())]):
                log.info("wrote network config %s", want.to_json())
                return want
            kv, _ = self.etcd.get(self.config_key)
            if kv is None:
                raise EtcdError("network config vanished right after another writer created it")
        try:
            found = NetworkConfig.parse(kv.value)
        except ConfigError as exc:
            # A config we cannot run is an operator's problem: say so and retry slowly rather than exit.
            raise EtcdError(f"{self.config_key.decode()}: {exc}") from exc
        log.info("adopted network config %s", found.to_json())
        if (str(found.network), found.backend) != (opts.network, opts.backend):
            log.warning("etcd's network config (%s, %s) differs from our flags (%s, %s); etcd's wins",
                        found.network, found.backend, opts.network, opts.backend)
        return found

    def _make_plane(self, config: NetworkConfig) -> DataPlane:
        self.underlay = resolve_underlay(self.ipr, self.opts.iface, self.opts.public_ip)
        log.info("underlay %s (%s, mtu %d), backend %s", self.underlay.ifname, self.underlay.address,
                 self.underlay.mtu, config.backend)
        if config.backend == "vxlan":
            return VxlanPlane(self.ipr, config.network, self.underlay, config.vni, config.port, config.direct_routing)
        return HostGwPlane(self.ipr, config.network, self.underlay)

    @property
    def public_ip(self) -> ipaddress.IPv4Address:
        assert self.underlay is not None
        return ipaddress.IPv4Address(self.opts.public_ip) if self.opts.public_ip else self.underlay.address

    # --- the lease --------------------------------------------------------------------------------
    def _leases(self) -> dict[ipaddress.IPv4Network, tuple[KeyValue, LeaseAttrs | None]]:
        kvs, _ = self.etcd.range(self.subnets_prefix, prefix=True)
        found: dict[ipaddress.IPv4Network, tuple[KeyValue, LeaseAttrs | None]] = {}
        for kv in kvs:
            subnet = self._subnet_of(kv.key)
            if subnet is None:
                continue
            try:
                found[subnet] = (kv, LeaseAttrs.parse(kv.value))
            except ConfigError:
                found[subnet] = (kv, None)  # taken, whatever it says
        return found

    def _acquire(self, config: NetworkConfig, plane: DataPlane) -> None:
        mac = plane.prepare()
        attrs = LeaseAttrs(self.public_ip, config.backend, mac, config.vni)
        for _ in range(RACE_RETRIES):
            subnet = self._try_acquire(config, attrs)
            if subnet is not None:
                break
        else:
            raise EtcdError(f"no subnet after {RACE_RETRIES} tries (network full or heavy contention)")
        plane.configure(subnet)
        if self.opts.ip_masq:  # before the subnet file: a plugin that reads FLANNEL_IPMASQ=true finds it in place
            try:
                kind = masq.install(config.network, subnet)
            except (masq.MasqError, OSError) as exc:
                raise ValueError(f"cannot install the network-wide masquerade: {exc}") from exc
            log.info("masquerading traffic leaving %s (%s)", config.network, kind)
        if self.opts.forward_rules:
            try:
                if forward.install(config.network):
                    log.info("accepting forwarding from and to %s (iptables %s)", config.network, forward.IPT_CHAIN)
            except (masq.MasqError, OSError) as exc:  # traffic may still flow (FORWARD policy ACCEPT): go on
                log.warning("cannot install the forward rules for %s: %s", config.network, exc)
        write_subnet_file(self.opts.subnet_file, SubnetFile(config.network, subnet, plane.mtu, self.opts.ip_masq))
        self._write_state(config, subnet)
        log.info("leased %s (lease %x, ttl %d s); wrote %s", subnet, self.lease.lease_id if self.lease else 0,
                 self.opts.ttl, self.opts.subnet_file)

    def _write_state(self, config: NetworkConfig, subnet: ipaddress.IPv4Network) -> None:
        """Who we are, for `cni-ignite status` (never needed by the plugins; a failure is only logged)."""
        tls = self.opts.tls
        doc = {"pid": os.getpid(), "endpoints": list(self.opts.endpoints), "prefix": self.prefix,
               "tls": {"ca": tls.ca, "cert": tls.cert, "key": tls.key}, "backend": config.backend,
               "network": str(config.network), "subnet": str(subnet), "public_ip": str(self.public_ip),
               "ip_masq": self.opts.ip_masq, "forward_rules": self.opts.forward_rules, "lease_ttl": self.opts.ttl,
               "leased_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            write_agent_state(self.opts.subnet_file, doc)
        except OSError as exc:
            log.warning("cannot write %s: %s", agent_state_path(self.opts.subnet_file), exc)

    def _try_acquire(self, config: NetworkConfig, attrs: LeaseAttrs) -> ipaddress.IPv4Network | None:
        leases = self._leases()
        value = attrs.to_json().encode()
        # 1. A lease that already carries our public IP (we restarted): keep that subnet, CAS on its revision.
        for subnet, (kv, found) in sorted(leases.items()):
            if found is None or found.public_ip != attrs.public_ip:
                continue
            if not config.holds(subnet):
                log.info("our old lease %s is outside the network config: deleting it", subnet)
                self.etcd.txn([compare(kv.key, "MOD", kv.mod_revision)], [delete_op(kv.key)])
                continue
            lease_id = self.etcd.grant(self.opts.ttl)
            if self.etcd.txn([compare(kv.key, "MOD", kv.mod_revision)], [put_op(kv.key, value, lease_id)]):
                if kv.lease and kv.lease != lease_id:
                    self._revoke_quietly(kv.lease)
                self.lease, self.lease_lost = _Lease(subnet, lease_id, attrs), False
                log.info("reclaimed %s (lease with our public IP %s)", subnet, attrs.public_ip)
                return subnet
            self._revoke_quietly(lease_id)
            return None
        # 2. The subnet in our subnet file (flannel's "previous subnet"), if free; 3. a random free one.
        prev = read_subnet_file(self.opts.subnet_file)
        taken = set(leases)
        if prev is not None and config.holds(prev.subnet) and prev.subnet not in taken:
            choice = prev.subnet
        else:
            free = [s for s in config.candidates() if s not in taken]
            if not free:
                raise EtcdError(f"network {config.network} has no free /{config.subnet_len} left")
            choice = random.choice(free[:100])
        key = self._key(choice)
        lease_id = self.etcd.grant(self.opts.ttl)
        if self.etcd.txn([compare(key, "CREATE", 0)], [put_op(key, value, lease_id)]):
            self.lease, self.lease_lost = _Lease(choice, lease_id, attrs), False
            log.info("took %s in etcd", choice)
            return choice
        log.info("%s was taken by another host meanwhile; trying again", choice)
        self._revoke_quietly(lease_id)
        return None

    def _revoke_quietly(self, lease_id: int) -> None:
        try:
            self.etcd.revoke(lease_id)
        except EtcdError as exc:
            log.debug("revoke %x: %s", lease_id, exc)

    def _start_keeper(self) -> None:
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper = threading.Thread(target=self._keep_alive, name="lease-keepalive", daemon=True)
            self._keeper.start()

    def _keep_alive(self) -> None:
        interval = max(0.5, min(self.opts.ttl / 3, 5.0))
        healthy = True
        while not self.stopping.wait(interval):
            lease = self.lease
            if lease is None or self.lease_lost:
                continue
            try:
                ttl = self.etcd.keepalive(lease.lease_id)
            except EtcdError as exc:
                if healthy:
                    log.warning("lease keepalive: %s", exc)
                healthy = False
                self._interrupt()
                continue
            if not healthy:
                log.info("lease keepalive works again")
                healthy = True
            if ttl <= 0:
                log.warning("etcd lost our lease for %s: leasing it again", lease.subnet)
                self.lease_lost = True
                self._interrupt()

    def _interrupt(self) -> None:
        watch = self._watch
        if watch is not None:
            watch.interrupt()

    # --- peers ------------------------------------------------------------------------------------
    def _peer(self, config: NetworkConfig, subnet: ipaddress.IPv4Network, attrs: LeaseAttrs | None) -> Peer | None:
        if attrs is None or attrs.backend != config.backend or not subnet.subnet_of(config.network):
            return None
        if self.lease is not None and subnet == self.lease.subnet:
            return None
        if config.backend == "vxlan" and not attrs.vtep_mac:
            return None
        return Peer(subnet, attrs.public_ip, attrs.vtep_mac)

    def _list(self, config: NetworkConfig) -> tuple[dict[ipaddress.IPv4Network, Peer], int]:
        kvs, revision = self.etcd.range(self.subnets_prefix, prefix=True)
        peers: dict[ipaddress.IPv4Network, Peer] = {}
        own_seen = False
        for kv in kvs:
            subnet = self._subnet_of(kv.key)
            if subnet is None:
                continue
            if self.lease is not None and subnet == self.lease.subnet:
                own_seen = True
            try:
                attrs: LeaseAttrs | None = LeaseAttrs.parse(kv.value)
            except ConfigError as exc:
                log.warning("ignoring %s: %s", kv.key.decode(errors="replace"), exc)
                attrs = None
            peer = self._peer(config, subnet, attrs)
            if peer is not None:
                peers[subnet] = peer
        if not own_seen:
            self.lease_lost = True
            raise _Resync("our own lease is gone from etcd")
        return peers, revision

    def _follow(self, start: int) -> None:
        assert self.config is not None and self.plane is not None
        watch = self.etcd.watch_prefix(self.subnets_prefix, start)
        self._watch = watch
        try:
            if self.stopping.is_set():
                return
            for _revision, events in watch.batches():
                for ev in events:
                    self._on_event(self.config, self.plane, ev.deleted, ev.kv)
                if self.lease_lost:
                    raise _Resync("our lease needs renewing")
        except EtcdError:
            if self.stopping.is_set():
                return
            raise
        finally:
            self._watch = None
            watch.close()

    def _on_event(self, config: NetworkConfig, plane: DataPlane, deleted: bool, kv: KeyValue) -> None:
        subnet = self._subnet_of(kv.key)
        if subnet is None:
            return
        if self.lease is not None and subnet == self.lease.subnet:
            if deleted:
                self.lease_lost = True  # expired or deleted by hand: lease it again (same subnet if free)
            return
        if deleted:
            log.info("peer %s left", subnet)
            plane.remove(subnet)
            return
        try:
            attrs: LeaseAttrs | None = LeaseAttrs.parse(kv.value)
        except ConfigError as exc:
            log.warning("ignoring %s: %s", kv.key.decode(errors="replace"), exc)
            attrs = None
        peer = self._peer(config, subnet, attrs)
        if peer is None:
            plane.remove(subnet)
        else:
            log.info("peer %s at %s%s", subnet, peer.public_ip, f" ({peer.vtep_mac})" if peer.vtep_mac else "")
            plane.apply(peer)

