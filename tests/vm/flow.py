"""A runtime's flow for microVMs on ignite-bridge, shared by tests/integration/test_vm_e2e.py and demo.py.

::

    "outside" ns:  eth0 192.0.2.2/24 (route to the pod subnet via the host) -- echo server :8080
                      |
    "host" ns:     out0 192.0.2.1/24, ip_forward=1; ignite0 10.61.0.1/16 (made by the plugin)
                      |  veth per VM (made by the plugin)
    "VM" ns i:     eth0 + tap0 (tc-redirect, or an in-namespace bridge)  <-- QEMU (tests/vm/guest.py)

The plugin config is the default conflist's (``conf/10-ignite.conflist``, ``plugins[0]``) with
``"vm": {"mode": M}``, ``ipam.dataDir`` in a temp folder and a port mapping ``hostPort -> 80``, called
the way libcni does (cniVersion and name from the list, ``runtimeConfig.portMappings``, DEL with the
cached result as ``prevResult``). The VM's kernel ``ip=`` argument and MAC come from the result through
``guest.vm_net_conf`` (firecracker-go-sdk's vmconf). Nothing touches the root namespace: ``close()``
stops every QEMU and server this object started (by PID), then deletes its namespaces and temp folder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnirun import Call, call
from nsutil import Namespaces, in_ns, path

from vm import guest

if TYPE_CHECKING:
    import subprocess

REPO = Path(__file__).resolve().parents[2]
CONFLIST = REPO / "conf" / "10-ignite.conflist"
HOST_OUT_IP = "192.0.2.1"      # the host's address towards the "outside" namespace
OUTSIDE_IP = "192.0.2.2"
ECHO_PORT = 8080
BASE_HOST_PORT = 18080         # VM i gets hostPort BASE_HOST_PORT + i -> containerPort 80
MODES = ("tc-redirect", "bridge")


class FlowError(AssertionError):
    """A step of the flow did not do what it should; the message says what was seen."""


def default_plugin_conf(mode: str, data_dir: str, host_port: int | None, tap: str = "tap0") -> dict[str, Any]:
    """The default network's plugin config as libcni hands it to ignite-bridge, plus VM mode and a port mapping.

    IPAM leases go to ``<data_dir>/networks`` and the firewall's state to ``<data_dir>/firewall``
    (``stateDir``), never the machine's /var/lib/cni.
    """
    conflist = json.loads(CONFLIST.read_text())
    conf: dict[str, Any] = copy.deepcopy(conflist["plugins"][0])
    conf["cniVersion"] = conflist["cniVersion"]
    conf["name"] = conflist["name"]
    conf["vm"] = {"mode": mode, "tap": tap}
    conf["ipam"] = {**conf.get("ipam", {}), "dataDir": f"{data_dir}/networks"}
    conf["stateDir"] = f"{data_dir}/firewall"
    if host_port is not None:
        conf["runtimeConfig"] = {"portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]}
    return conf


@dataclass
class Slot:
    """One VM: its namespace, CNI config and result, what vmconf derived from it, and its QEMU."""

    index: int
    vm_id: str
    ns: str
    conf: dict[str, Any]
    host_port: int | None
    result: dict[str, Any] = field(default_factory=dict)
    net: guest.VMNetConf | None = None
    ip_param: str = ""
    mac: str = ""
    vm: guest.VM | None = None
    to_ping: float | None = None       # QEMU start -> first answered ping from the host ns
    cni_args: str = ""                 # CNI_ARGS of every call (e.g. the pod owner's K8S_POD_* keys)

    @property
    def ip(self) -> str:
        assert self.net is not None
        return str(self.net.address.ip)

    @property
    def gateway(self) -> str:
        assert self.net is not None
        return str(self.net.gateway)

    def interfaces(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(tap entry, VM pseudo-interface entry) of the result."""
        assert self.net is not None
        vm_if = next(i for i in self.result["interfaces"] if i.get("sandbox") == self.vm_id)
        tap = next(i for i in self.result["interfaces"]
                   if i.get("name") == self.net.tap_name and i.get("sandbox") != self.vm_id)
        return tap, vm_if


class World:
    """Throwaway host + outside namespaces, VM namespaces, the plugin, the guests; ``close()`` removes all."""

    def __init__(self, bin_dir: Path, mode: str, workdir: Path | None = None, *, prefix: str = "cnit",
                 overrides: dict[str, Any] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.bin_dir = Path(bin_dir)
        self.mode = mode
        self.prefix = prefix
        self.spaces = Namespaces()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"{prefix}-vme2e-"))
        self.data_dir = str(self.workdir / "ipam")
        self.host = ""
        self.outside = ""
        self.slots: list[Slot] = []
        self.servers: list[subprocess.Popen[bytes]] = []
        self.image: guest.GuestImage | None = None
        self.overrides = dict(overrides or {})  # top-level plugin keys over the default conflist's, e.g. guard

    # ------------------------------------------------------------------------------------- set-up

    def make_host(self) -> str:
        """The "host" namespace the plugin runs in, and an "outside" namespace routed through it."""
        self.host = self.spaces.new(f"{self.prefix}-host")
        self.outside = self.spaces.new(f"{self.prefix}-out")
        in_ns(self.host, ["ip", "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns",
                          path(self.outside)])
        in_ns(self.host, ["ip", "addr", "add", f"{HOST_OUT_IP}/24", "dev", "out0"])
        in_ns(self.host, ["ip", "link", "set", "out0", "up"])
        in_ns(self.host, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        in_ns(self.outside, ["ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0"])
        in_ns(self.outside, ["ip", "link", "set", "eth0", "up"])
        # A route back to the pod subnet: without masquerading the echo server would see (and answer)
        # the VM's own address, so a missing ipMasq shows up as a wrong source, not as a timeout.
        subnet = default_plugin_conf(self.mode, self.data_dir, None)["ipam"]["subnet"]
        in_ns(self.outside, ["ip", "route", "add", subnet, "via", HOST_OUT_IP])
        return self.host

    def new_slot(self, *, port_mapping: bool = True, host_port: int | None = None, vm_id: str | None = None,
                 cni_args: str = "") -> Slot:
        """A new VM namespace and its config (not added yet). ``host_port`` defaults to BASE_HOST_PORT + i;
        ``vm_id`` (CNI_CONTAINERID) to a fresh one; ``cni_args`` is passed on every call."""
        i = len(self.slots)
        ns = self.spaces.new(f"{self.prefix}-vm{i + 1}")
        if host_port is None and port_mapping:
            host_port = BASE_HOST_PORT + i
        conf = {**default_plugin_conf(self.mode, self.data_dir, host_port), **self.overrides}
        slot = Slot(i, vm_id or f"{self.prefix}-{self.mode}-vm{i + 1}-{ns[-8:]}", ns, conf, host_port,
                    cni_args=cni_args)
        self.slots.append(slot)
        return slot

    def cni(self, command: str, slot: Slot, conf: dict[str, Any] | None = None) -> Call:
        return call(self.bin_dir / "ignite-bridge", command, conf or slot.conf, host_ns=self.host,
                    container_id=slot.vm_id, netns=path(slot.ns), ifname="eth0", cni_path=str(self.bin_dir),
                    cni_args=slot.cni_args)

    def add(self, slot: Slot) -> dict[str, Any]:
        """CNI ADD, then what a runtime derives from the result: tap, netns, guest MAC, ``ip=``."""
        res = self.cni("ADD", slot)
        if res.rc != 0 or res.out is None:
            raise FlowError(f"CNI ADD for {slot.vm_id} failed (rc={res.rc}): {res.stdout.strip()} "
                            f"{res.stderr.strip()}")
        slot.result = res.out
        try:
            slot.net = guest.vm_net_conf(slot.result, slot.vm_id)
        except guest.GuestError as exc:
            raise FlowError(f"vmconf rejects the result: {exc}\n{json.dumps(slot.result, indent=1)}") from exc
        slot.ip_param = slot.net.ip_boot_param()
        slot.mac = slot.net.vm_mac
        if slot.net.netns_path != path(slot.ns):
            raise FlowError(f"the tap's sandbox is {slot.net.netns_path!r}, not CNI_NETNS {path(slot.ns)!r}")
        return slot.result

    # ------------------------------------------------------------------------------------- guests

    def boot(self, slot: Slot, *, console_tag: str = "", **kw: Any) -> guest.VM:
        """Start QEMU on the tap the result names, in the namespace the result names (returns at once).

        The console goes to ``console-<i><console_tag>.log`` in the work folder (a tag keeps a second boot
        of the same slot from overwriting the first one's console).
        """
        assert slot.net is not None
        self.image = self.image or guest.prepare_guest()
        slot.vm = guest.boot(slot.net.netns_path, slot.net.tap_name, slot.mac, slot.ip_param,
                             self.workdir / f"console-{slot.index + 1}{console_tag}.log", image=self.image, **kw)
        return slot.vm

    def wait_up(self, slot: Slot, timeout: float = 60) -> float:
        """READY on the console (GuestNotReady carries its tail), then the host ns's first answered ping.

        Returns the seconds from QEMU start to that ping.
        """
        assert slot.vm is not None
        ip = slot.vm.wait_ready(timeout)
        if ip != slot.ip:
            raise FlowError(f"guest configured {ip}, the CNI result says {slot.ip}")
        try:
            guest.wait_ping(self.host, slot.ip, timeout=20)
        except guest.GuestError as exc:
            raise FlowError(f"{exc}\n--- console ---\n{slot.vm.console_tail()}") from exc
        slot.to_ping = slot.vm.since_start()
        return slot.to_ping

    def wait_all_up(self, slots: list[Slot] | None = None, timeout: float = 60) -> list[float]:
        """``wait_up`` for several guests at once, so each one's time to first ping is its own."""
        slots = self.slots if slots is None else slots
        with ThreadPoolExecutor(max_workers=len(slots)) as pool:
            futures = [pool.submit(self.wait_up, s, timeout) for s in slots]
            return [f.result() for f in futures]

    def ping_times(self, slot: Slot, count: int = 3) -> list[float]:
        """Round-trip times (ms) of ``count`` pings from the host namespace."""
        out = in_ns(self.host, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", slot.ip], check=False)
        return [float(m) for m in re.findall(r"time=([\d.]+) ms", out.stdout.decode())]

    def gateway_ping(self, slot: Slot) -> None:
        assert slot.vm is not None
        if not slot.vm.wait_gateway_ping(timeout=30):
            raise FlowError(f"the guest {slot.ip} could not ping its gateway {slot.gateway}\n"
                            f"--- console ---\n{slot.vm.console_tail()}")

    def fetch(self, ns: str, url: str) -> str:
        try:
            return guest.http_get(ns, url)
        except guest.GuestError as exc:
            raise FlowError(str(exc)) from exc

    def check_page(self, slot: Slot, page: str, how: str) -> None:
        want = f"ip={slot.ip} mac={slot.mac}"
        if want not in page:
            raise FlowError(f"{how}: expected the page of {slot.vm_id} ({want!r}), got {page!r}")

    def mapped_urls(self, slot: Slot) -> list[tuple[str, str]]:
        """(namespace, URL) pairs that reach the guest's port 80 through its host port."""
        return [(self.host, f"http://{slot.gateway}:{slot.host_port}/"),
                (self.host, f"http://127.0.0.1:{slot.host_port}/"),
                (self.outside, f"http://{HOST_OUT_IP}:{slot.host_port}/")]

    def start_echo(self) -> None:
        if not self.servers:
            self.servers.append(guest.start_echo_server(self.outside, self.workdir / "echo", ECHO_PORT))

    def outside_sees(self, slot: Slot) -> str:
        """Make the guest fetch from the outside echo server; return the source address the server saw."""
        self.start_echo()
        body = self.fetch(self.host, guest.guest_fetch_url(slot.ip, f"{OUTSIDE_IP}:{ECHO_PORT}/cgi-bin/whoami"))
        seen = guest.remote_addr(body)
        if not body.rstrip().endswith("RESULT ok") or seen is None:
            raise FlowError(f"the guest {slot.ip} could not fetch from the outside echo server: {body!r}")
        return seen

    def guest_pings(self, a: Slot, b: Slot) -> str:
        body = self.fetch(self.host, guest.guest_ping_url(a.ip, b.ip))
        if not body.rstrip().endswith("RESULT ok"):
            raise FlowError(f"guest {a.ip} cannot ping guest {b.ip}: {body!r}")
        return body

    def guest_fetches(self, a: Slot, b: Slot) -> str:
        body = self.fetch(self.host, guest.guest_fetch_url(a.ip, f"{b.ip}/"))
        if not body.rstrip().endswith("RESULT ok"):
            raise FlowError(f"guest {a.ip} cannot fetch guest {b.ip}'s page: {body!r}")
        self.check_page(b, body, f"guest {a.ip} fetching http://{b.ip}/")
        return body

    def guest_fetches_published(self, a: Slot, b: Slot) -> str:
        """Guest ``a`` fetches guest ``b``'s page through ``b``'s host port on the gateway (DNAT + hairpin NAT).

        Not ``a == b``: the default conflist has promiscMode, not hairpinMode, and with br_netfilter the
        DNATed packet is bridged back out of the port it came in on (the reference bridge behaves the same).
        """
        body = self.fetch(self.host, guest.guest_fetch_url(a.ip, f"{a.gateway}:{b.host_port}/"))
        if not body.rstrip().endswith("RESULT ok"):
            raise FlowError(f"guest {a.ip} cannot fetch http://{a.gateway}:{b.host_port}/: {body!r}")
        self.check_page(b, body, f"guest {a.ip} fetching http://{a.gateway}:{b.host_port}/")
        return body

    def inside(self, slot: Slot) -> tuple[list[str], str]:
        """(IPv4 addresses on eth0, eth0's MAC) as the guest's own kernel reports them (control channel)."""
        assert slot.vm is not None
        return slot.vm.ipv4_inside(), slot.vm.mac_inside()

    def stop_vms(self) -> None:
        for slot in self.slots:
            if slot.vm is not None:
                slot.vm.stop()

    # ------------------------------------------------------------------------------------- teardown

    def delete(self, slot: Slot) -> Call:
        """CNI DEL with the cached ADD result as prevResult (libcni's way)."""
        res = self.cni("DEL", slot, {**slot.conf, "prevResult": slot.result} if slot.result else slot.conf)
        if res.rc != 0:
            raise FlowError(f"CNI DEL for {slot.vm_id} failed (rc={res.rc}): {res.stdout.strip()} "
                            f"{res.stderr.strip()}")
        return res

    def check(self, slot: Slot) -> Call:
        """CNI CHECK with the cached ADD result as prevResult (what a runtime runs on a live attachment)."""
        res = self.cni("CHECK", slot, {**slot.conf, "prevResult": slot.result})
        if res.rc != 0:
            raise FlowError(f"CNI CHECK for {slot.vm_id} failed (rc={res.rc}): {res.stdout.strip()} "
                            f"{res.stderr.strip()}")
        return res

    def rules(self) -> str:
        """The host namespace's iptables and nftables rules."""
        ipt = in_ns(self.host, ["iptables-save"], check=False).stdout.decode()
        nft = in_ns(self.host, ["nft", "list", "ruleset"], check=False).stdout.decode()
        return ipt + nft

    def leftovers(self, slot: Slot) -> list[str]:
        """Everything of ``slot``'s attachment still present after DEL (empty = nothing left)."""
        found: list[str] = []
        if slot.vm is not None and slot.vm.alive():
            found.append(f"QEMU {slot.vm.pid} still runs")
        host_links = in_ns(self.host, ["ip", "-o", "link"]).stdout.decode()
        host_ifaces = [i["name"] for i in slot.result.get("interfaces", []) if not i.get("sandbox")]
        for name in host_ifaces[1:]:  # [0] is the bridge, which stays (as with the reference plugin)
            if re.search(rf"^\d+: {re.escape(name)}[@:]", host_links, re.MULTILINE):
                found.append(f"host veth {name} still exists")
        vm_links = [line.split(":")[1].strip().split("@")[0]
                    for line in in_ns(slot.ns, ["ip", "-o", "link"]).stdout.decode().splitlines()]
        if [n for n in vm_links if n != "lo"]:
            found.append(f"links left in the VM namespace: {vm_links}")
        if slot.net is not None:
            lease = Path(slot.conf["ipam"]["dataDir"]) / slot.conf["name"] / slot.ip
            if lease.exists() and not lease.read_bytes().startswith(b"_ignite_"):  # a sticky hold is kept on purpose
                found.append(f"lease file {lease} still exists")
            rx = re.compile(rf"(?<![\d.]){re.escape(slot.ip)}(?![\d])")
            hits = [line.strip() for line in self.rules().splitlines() if rx.search(line)]
            if hits:
                found.append(f"rules still mention {slot.ip}: {hits}")
        if slot.host_port is not None:
            rx = re.compile(rf"(?<!\d){slot.host_port}(?!\d)")
            hits = [line.strip() for line in self.rules().splitlines() if rx.search(line)]
            if hits:
                found.append(f"rules still mention port {slot.host_port}: {hits}")
        hits = [line.strip() for line in self.rules().splitlines() if slot.vm_id in line]
        if hits:
            found.append(f"rules still mention {slot.vm_id}: {hits}")
        from cni_ignite.firewall.naming import owner_key  # the attachment's key in rule comments and state

        key = owner_key(slot.conf["name"], slot.vm_id, "eth0")
        hits = [line.strip() for line in self.rules().splitlines() if key in line]
        if hits:
            found.append(f"rules still carry the attachment key {key}: {hits}")
        state = Path(slot.conf["stateDir"])
        records = [str(p) for p in state.rglob("*")
                   if p.is_file() and (key in p.name or any(x.encode() in p.read_bytes() for x in (key, slot.vm_id)))]
        if records:
            found.append(f"firewall state still names {slot.vm_id} (key {key}): {records}")
        return found

    def close(self) -> None:
        """Stop our QEMUs and servers (by PID), delete our namespaces and temp folder; never raises."""
        for slot in self.slots:
            if slot.vm is not None:
                with contextlib.suppress(Exception):  # keep cleaning up
                    slot.vm.stop()
        for proc in self.servers:
            with contextlib.suppress(Exception):
                guest.stop_process(proc)
        self.spaces.cleanup()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

