"""A real microVM guest for tests and demos: QEMU + a Debian cloud kernel + a busybox initramfs.

Nothing here touches the root network namespace: QEMU always runs inside a namespace the caller made,
on a tap the caller (or the CNI plugin) made there. The kernel package is fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` into a cache folder; it is never installed.

API (see tests/vm/README.md for measured boot times and the KVM/TCG outcome)::

    vmlinuz, modules_dir = ensure_guest_assets(cache_dir=DEFAULT_CACHE_DIR)   # fetch/unpack once, cached
    initrd = build_initramfs(modules_dir, out_path)                           # busybox + virtio-net + /init
    image = prepare_guest()            # both of the above, memoised per process -> GuestImage(kernel, initrd)

    conf = vm_net_conf(result, vm_id)  # firecracker-go-sdk's vmconf.StaticNetworkConfFrom, in Python
    ip_param = ip_boot_param(result, vm_id)   # "ip=<ip>::<gw>:<mask>::eth0:off:<dns0>:<dns1>:"
    mac = guest_mac(result, vm_id)            # the pseudo-interface's MAC (Firecracker guest_mac)

    vm = boot(netns, tap, mac, ip_param, console_path, accel="auto")   # QEMU pid = vm.pid
    try:
        guest_ip = vm.wait_ready(timeout=60)   # raises GuestNotReady with the last 30 console lines
        ok = vm.wait_gateway_ping(timeout=30)  # the guest's own ping of its gateway, from the console
        seconds = wait_ping(host_ns, guest_ip) # host -> guest ping; time since QEMU start in vm.since_start()
        page = http_get(host_ns, f"http://{guest_ip}/")
        http_get(host_ns, guest_ping_url(guest_ip, other_ip))   # ask the guest to ping someone
    finally:
        vm.stop()                              # kills only this QEMU, by PID

``result`` is a CNI result as a dict or JSON text. ``netns`` for ``boot`` is a name under /var/run/netns
or a path (the tap's ``sandbox`` in the result). ``accel`` is "auto" (probe KVM briefly, fall back to
TCG), "kvm" or "tcg"; ``CNI_IGNITE_VM_ACCEL`` overrides it. ``vm.accel`` says what was used and
``vm.accel_note`` why.

The guest's /init prints lines starting with ``CNI-IGNITE-GUEST:`` on the serial console:
``init started``, ``READY ip=… gw=… mac=…``, ``GATEWAY <gw> ping ok|FAILED``, ``FATAL <why>``
(then it powers off, so QEMU exits). Its HTTP server (busybox httpd, port 80) serves ``/`` (a page
naming the guest's IP and MAC) and two CGI helpers so a host can make the guest originate traffic:
``/cgi-bin/ping?<ipv4>`` (``ping -c 1 -W 2``, answers ``RESULT ok`` or ``RESULT fail``) and
``/cgi-bin/fetch?<host[:port][/path]>`` (``wget`` of that URL, body returned, then ``RESULT ok|fail``).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import ipaddress
import json
import lzma
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

DEFAULT_CACHE_DIR = Path(os.environ.get("CNI_IGNITE_VM_CACHE", "/var/cache/cni-ignite-vm"))
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX = Path("/bin/busybox")
QEMU = "qemu-system-x86_64"
# insmod order matters: each module needs the ones before it.
VIRTIO_NET_MODULES = ("virtio_ring", "virtio", "failover", "net_failover", "virtio_pci_legacy_dev",
                      "virtio_pci_modern_dev", "virtio_pci", "virtio_net")
MARK = "CNI-IGNITE-GUEST:"
KVM_PROBE_SECONDS = float(os.environ.get("CNI_IGNITE_VM_KVM_PROBE_SECONDS", "5"))


class GuestError(RuntimeError):
    """The guest tooling could not do its job (assets, QEMU start, bad CNI result)."""


class GuestNotReady(GuestError):
    """The guest did not reach a console marker in time; the message carries the console's tail."""


# --------------------------------------------------------------------------------------------------
# Host packages and kernel assets


def _run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


_APT_UPDATED = False


def _apt_update_once() -> None:
    global _APT_UPDATED  # noqa: PLW0603 - one `apt-get update` per process at most
    if not _APT_UPDATED:
        _APT_UPDATED = True
        _run(["apt-get", "update", "-q"])


def _apt_install(packages: Sequence[str]) -> None:
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    res = _run(argv)
    if res.returncode != 0:
        _apt_update_once()
        res = _run(argv)
    if res.returncode != 0:
        raise GuestError(f"apt-get install {' '.join(packages)} failed: {res.stderr.strip()[-2000:]}")


def ensure_host_tools() -> None:
    """Install qemu-system-x86 and busybox-static through apt when they are missing (needs root)."""
    missing = []
    if shutil.which(QEMU) is None:
        missing.append("qemu-system-x86")
    if not BUSYBOX.exists() or _run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"]).stdout.find(
            "install ok installed") < 0:
        missing.append("busybox-static")
    if missing:
        _apt_install(missing)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def kernel_package_name() -> str:
    """The concrete ``linux-image-<abi>-cloud-amd64`` the meta-package currently points at (apt-cache only).

    ``CNI_IGNITE_VM_KERNEL_PKG`` overrides it.
    """
    if os.environ.get("CNI_IGNITE_VM_KERNEL_PKG"):
        return os.environ["CNI_IGNITE_VM_KERNEL_PKG"]
    for attempt in range(2):
        res = _run(["apt-cache", "depends", KERNEL_META_PACKAGE])
        found = re.search(r"Depends:\s+(linux-image-[0-9]\S*-cloud-amd64)\b", res.stdout)
        if found:
            return found.group(1)
        if attempt == 0:
            _apt_update_once()
    raise GuestError(f"cannot resolve {KERNEL_META_PACKAGE} with apt-cache: {res.stdout}{res.stderr}")


def _unpacked_kernel(root: Path) -> tuple[Path, Path] | None:
    vmlinuz = sorted(root.glob("boot/vmlinuz-*"))
    mods = sorted(p for p in root.glob("lib/modules/*") if (p / "kernel").is_dir())
    if vmlinuz and mods:
        return vmlinuz[0], mods[0]
    return None


def _download(pkg: str, debs: Path) -> Path:
    """``apt-get download`` the package into ``debs`` (once; an ``apt-get update`` if apt cannot find it)."""
    debs.mkdir(parents=True, exist_ok=True)
    deb = next(iter(sorted(debs.glob(f"{pkg}_*.deb"))), None)
    if deb is not None:
        return deb
    res = _run(["apt-get", "download", "-q", pkg], cwd=debs)
    if res.returncode != 0:
        _apt_update_once()
        res = _run(["apt-get", "download", "-q", pkg], cwd=debs)
    deb = next(iter(sorted(debs.glob(f"{pkg}_*.deb"))), None)
    if res.returncode != 0 or deb is None:
        raise GuestError(f"apt-get download {pkg} failed: {res.stderr.strip()[-2000:]}")
    return deb


def _unpack(deb: Path, tree: Path) -> None:
    """``dpkg-deb -x`` into a temporary folder next to ``tree``, then rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{tree.name}.", dir=tree.parent))
    try:
        res = _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        if res.returncode != 0:
            deb.unlink(missing_ok=True)  # a truncated download: fetch it again next time
            raise GuestError(f"dpkg-deb -x {deb} failed: {res.stderr}")
        if _unpacked_kernel(tmp) is None:
            raise GuestError(f"{deb} has no boot/vmlinuz-* and lib/modules/*/kernel")
        shutil.rmtree(tree, ignore_errors=True)
        tmp.rename(tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _prune(cache: Path, pkg: str) -> None:
    """A newer ABI replaced an older one: drop the old trees, debs and initramfs images."""
    kver = pkg.removeprefix("linux-image-")
    for old in cache.glob("linux-image-*"):
        if old.name != pkg and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    for old in [*cache.glob("debs/linux-image-*.deb"), *cache.glob("initramfs-*.cpio")]:
        if not old.name.startswith((f"{pkg}_", f"initramfs-{kver}.")):
            old.unlink(missing_ok=True)


def ensure_guest_assets(cache_dir: Path | str = DEFAULT_CACHE_DIR) -> tuple[Path, Path]:
    """Return ``(vmlinuz, modules_dir)`` of the current Debian cloud kernel, fetching it once.

    ``cache_dir/debs`` holds the ``.deb`` (``apt-get download``), ``cache_dir/<package>/`` its unpacked
    tree (``dpkg-deb -x``); both are reused across runs, older kernels are pruned. Installs
    qemu-system-x86 / busybox-static if missing. If apt cannot name the kernel (no lists, offline), an
    already unpacked kernel in the cache is used.
    """
    cache = Path(cache_dir)
    ensure_host_tools()
    with _locked(cache / ".lock"):
        try:
            pkg = kernel_package_name()
        except GuestError:
            for old in sorted(cache.glob("linux-image-*"), reverse=True):
                if (found := _unpacked_kernel(old)) is not None:
                    return found
            raise
        tree = cache / pkg
        if (found := _unpacked_kernel(tree)) is None:
            _unpack(_download(pkg, cache / "debs"), tree)
            _prune(cache, pkg)
            found = _unpacked_kernel(tree)
        if found is None:
            raise GuestError(f"no kernel in {tree}")
        return found


# --------------------------------------------------------------------------------------------------
# initramfs


INIT_SCRIPT = r"""#!/bin/busybox sh
# cni-ignite test guest: PID 1. Configures eth0 from the kernel ip= argument (parsed here: the Debian
# kernel has no CONFIG_IP_PNP), serves HTTP on port 80 and reports on the serial console.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "@MARK@ $*"; }
fatal() { say "FATAL $*"; sleep 1; poweroff -f; while true; do sleep 60; done; }
say "init started uptime=$(cut -d' ' -f1 /proc/uptime)"
# The control channel (VM.run on the host): the second serial port, raw. Each request is one line
# "<token> <base64 of a shell script>"; the answer is "@@BEGIN <token>", the script's output, then
# "@@END <token> <exit status>". It needs no network, so it still works when the guest's traffic is cut.
ctl_loop() {
  exec 3<>/dev/ttyS1 || { say "CTL unavailable"; return; }
  stty raw -echo <&3
  say "CTL ready"
  while IFS= read -r line <&3; do
    tok=${line%% *}
    echo "${line#* }" | base64 -d > /tmp/ctl.sh 2>/dev/null
    sh /tmp/ctl.sh > /tmp/ctl.out 2>&1 < /dev/null
    rc=$?
    { echo "@@BEGIN $tok"; cat /tmp/ctl.out; echo "@@END $tok $rc"; } >&3
  done
}
ctl_loop &
for m in @MODULES@; do
  if [ -e /lib/modules/$m.ko ]; then insmod /lib/modules/$m.ko || fatal "insmod $m failed"; fi
done
IPARG=""
for a in $(cat /proc/cmdline); do
  case "$a" in ip=*) IPARG="${a#ip=}";; cniignite.fail=*) fatal "asked to fail: $a";; esac
done
[ -n "$IPARG" ] || fatal "no ip= on the kernel command line"
OLDIFS=$IFS; IFS=:; set -- $IPARG; IFS=$OLDIFS
ADDR=$1; GW=$3; MASK=$4; DEV=${6:-eth0}; DNS0=$8; DNS1=$9
[ -n "$ADDR" ] && [ -n "$MASK" ] || fatal "cannot parse ip=$IPARG"
i=0
while [ ! -e /sys/class/net/$DEV ]; do
  i=$((i+1)); [ $i -gt 100 ] && fatal "no device $DEV (have: $(ls /sys/class/net))"; sleep 0.1
done
ip link set lo up
ifconfig $DEV $ADDR netmask $MASK up || fatal "ifconfig $DEV $ADDR netmask $MASK failed"
if [ -n "$GW" ]; then route add default gw $GW dev $DEV || fatal "route add default gw $GW failed"; fi
mkdir -p /etc
: > /etc/resolv.conf
for d in $DNS0 $DNS1; do echo "nameserver $d" >> /etc/resolv.conf; done
MAC=$(cat /sys/class/net/$DEV/address)
echo "cni-ignite guest ip=$ADDR mac=$MAC" > /www/index.html
httpd -p 80 -h /www || fatal "httpd failed"
say "READY ip=$ADDR mask=$MASK gw=$GW dev=$DEV mac=$MAC uptime=$(cut -d' ' -f1 /proc/uptime)"
if [ -n "$GW" ]; then
  ok=""
  for n in 1 2 3 4 5; do
    if ping -c 1 -W 2 $GW > /dev/null 2>&1; then ok=$n; break; fi
  done
  if [ -n "$ok" ]; then say "GATEWAY $GW ping ok attempt=$ok"; else say "GATEWAY $GW ping FAILED"; fi
fi
while true; do sleep 3600; done
"""

CGI_PING = r"""#!/bin/sh
echo "Content-Type: text/plain"
echo
case "$QUERY_STRING" in *[!0-9.]*|"") echo "RESULT bad target"; exit 0;; esac
if ping -c 1 -W 2 "$QUERY_STRING" 2>&1; then echo "RESULT ok"; else echo "RESULT fail"; fi
"""

CGI_FETCH = r"""#!/bin/sh
echo "Content-Type: text/plain"
echo
case "$QUERY_STRING" in *[!0-9A-Za-z.:/_-]*|"") echo "RESULT bad target"; exit 0;; esac
if timeout 5 wget -q -O - "http://$QUERY_STRING" 2>&1; then echo "RESULT ok"; else echo "RESULT fail"; fi
"""


class _Cpio:
    """A minimal newc ("070701") cpio writer: enough for an initramfs, device nodes without mknod."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.ino += 1
        self.parts.append(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        self.parts.append(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self.add(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.add(name, 0o100000 | mode, data)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.add(name, 0o020000 | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.parts)


def _module_bytes(path: Path) -> bytes:
    """Module contents, decompressed at build time (busybox insmod does not read .ko.zst)."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.zst"):
        res = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=False)
        if res.returncode != 0:
            raise GuestError(f"cannot decompress {path} (is zstd installed?): {res.stderr.decode()}")
        return res.stdout
    if path.name.endswith(".ko.gz"):
        import gzip

        return gzip.decompress(data)
    return data


def find_modules(modules_dir: Path, names: Sequence[str] = VIRTIO_NET_MODULES) -> dict[str, Path | None]:
    """Map each module name to its file (any compression); None when the kernel has it built in."""
    builtin_file = modules_dir / "modules.builtin"
    builtin = set()
    if builtin_file.exists():
        builtin = {Path(line.strip()).name.split(".ko")[0].replace("-", "_")
                   for line in builtin_file.read_text().splitlines() if line.strip()}
    files: dict[str, Path] = {}
    for p in (modules_dir / "kernel").rglob("*.ko*"):
        key = p.name.split(".ko")[0].replace("-", "_")
        if key in names:
            files[key] = p
    out: dict[str, Path | None] = {}
    for name in names:
        if name in files:
            out[name] = files[name]
        elif name in builtin:
            out[name] = None
        else:
            raise GuestError(f"module {name} is neither in {modules_dir}/kernel nor built in")
    return out


def build_initramfs(modules_dir: Path | str, out_path: Path | str, *, busybox: Path | str = BUSYBOX,
                    modules: Sequence[str] = VIRTIO_NET_MODULES, init_script: str | None = None) -> Path:
    """Write an uncompressed newc initramfs to ``out_path`` and return it.

    Contents: /bin/busybox (must be static: busybox-static), /dev/console and /dev/null nodes,
    /lib/modules/<name>.ko for each of ``modules`` that is not built in (decompressed), /www with the
    CGI helpers, and /init (``INIT_SCRIPT`` unless ``init_script`` is given). Uncompressed on purpose:
    under TCG the kernel's gunzip would cost more than reading a few MB.
    """
    modules_dir, out = Path(modules_dir), Path(out_path)
    bb = Path(busybox).read_bytes()
    if bb[:4] != b"\x7fELF" or b"ld-linux" in bb[:4096]:
        raise GuestError(f"{busybox} is not a static ELF binary (install busybox-static)")
    cpio = _Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules", "www", "www/cgi-bin",
              "usr", "usr/bin", "usr/sbin"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", bb, 0o755)
    cpio.add("bin/sh", 0o120777, b"busybox")
    present = []
    for name, path in find_modules(modules_dir, modules).items():
        if path is not None:
            cpio.file(f"lib/modules/{name}.ko", _module_bytes(path))
            present.append(name)
    script = (init_script or INIT_SCRIPT).replace("@MARK@", MARK).replace("@MODULES@", " ".join(present))
    cpio.file("init", script.encode(), 0o755)
    cpio.file("www/index.html", b"cni-ignite guest (not configured yet)\n")
    cpio.file("www/cgi-bin/ping", CGI_PING.encode(), 0o755)
    cpio.file("www/cgi-bin/fetch", CGI_FETCH.encode(), 0o755)
    cpio.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_bytes(cpio.finish())
    tmp.replace(out)
    return out


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    modules_dir: Path


_IMAGE: GuestImage | None = None
_IMAGE_LOCK = threading.Lock()


def prepare_guest(cache_dir: Path | str = DEFAULT_CACHE_DIR) -> GuestImage:
    """Assets plus a freshly built initramfs (``cache_dir/initramfs-<kver>.cpio``), once per process."""
    global _IMAGE  # noqa: PLW0603 - memoised per process
    with _IMAGE_LOCK:
        if _IMAGE is None:
            vmlinuz, modules_dir = ensure_guest_assets(cache_dir)
            initrd = build_initramfs(modules_dir, Path(cache_dir) / f"initramfs-{modules_dir.name}.cpio")
            _IMAGE = GuestImage(vmlinuz, initrd, modules_dir)
        return _IMAGE


# --------------------------------------------------------------------------------------------------
# CNI result -> VM network configuration (firecracker-go-sdk / tc-redirect-tap vmconf)


@dataclass(frozen=True)
class VMNetConf:
    tap_name: str
    netns_path: str
    vm_mac: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address
    nameservers: tuple[str, ...] = field(default_factory=tuple)

    def ip_boot_param(self, vm_ifname: str = "eth0") -> str:
        ns = [*self.nameservers[:2], "", ""][:2]
        return "ip=" + ":".join([str(self.address.ip), "", str(self.gateway), str(self.address.netmask), "",
                                 vm_ifname, "off", ns[0], ns[1], ""])


def _as_dict(result: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(result, str | bytes):
        parsed = json.loads(result)
        if not isinstance(parsed, dict):
            raise GuestError("CNI result is not a JSON object")
        return parsed
    return result


def vm_net_conf(result: Mapping[str, Any] | str | bytes, vm_id: str) -> VMNetConf:
    """What firecracker-go-sdk's ``vmconf.StaticNetworkConfFrom(result, vmID)`` derives, with its errors.

    Exactly one interface has ``sandbox == vm_id`` (the pseudo-interface); exactly one *other* interface
    has the same name (the tap, whose sandbox is the netns path); exactly one IP entry points at the
    pseudo-interface, and it must be IPv4 with an IPv4 gateway (go-sdk's IPConfiguration.validate).
    """
    res = _as_dict(result)
    ifaces: list[Mapping[str, Any]] = list(res.get("interfaces") or [])
    vm_ifaces = [i for i in ifaces if i.get("sandbox", "") == vm_id]
    others = [i for i in ifaces if i.get("sandbox", "") != vm_id]
    if len(vm_ifaces) > 1:
        raise GuestError(f"expected to find at most 1 interface in sandbox {vm_id!r}, but instead found "
                         f"{len(vm_ifaces)}")
    if not vm_ifaces:
        raise GuestError(f"no pseudo-device for {vm_id!r} (no interface with sandbox == vmID)")
    vm_iface = vm_ifaces[0]
    taps = [i for i in others if i.get("name") == vm_iface.get("name")]
    if len(taps) != 1:
        raise GuestError(f"expected exactly 1 interface named {vm_iface.get('name')!r} outside the VM sandbox, "
                         f"found {len(taps)}")
    tap = taps[0]
    vm_ips = []
    for ipc in res.get("ips") or []:
        idx = ipc.get("interface")
        if idx is None or not 0 <= idx < len(ifaces):
            continue
        target = ifaces[idx]
        if target.get("name") == vm_iface.get("name") and target.get("sandbox", "") == vm_id:
            vm_ips.append(ipc)
    if len(vm_ips) != 1:
        raise GuestError(f"expected to find 1 IP for vm interface {vm_iface.get('name')!r}, but instead found "
                         f"{vm_ips}")
    ipc = vm_ips[0]
    address = ipaddress.ip_interface(ipc["address"])
    if not isinstance(address, ipaddress.IPv4Interface):
        raise GuestError(f"IP {ipc['address']} is not IPv4 (only IPv4 works with the kernel ip= argument)")
    if not ipc.get("gateway"):
        raise GuestError(f"IP {ipc['address']} has no gateway (go-sdk rejects a missing gateway)")
    gateway = ipaddress.ip_address(ipc["gateway"])
    if not isinstance(gateway, ipaddress.IPv4Address):
        raise GuestError(f"gateway {gateway} is not IPv4")
    if not vm_iface.get("mac"):
        raise GuestError(f"VM pseudo-interface {vm_iface.get('name')!r} has no mac")
    nameservers = tuple((res.get("dns") or {}).get("nameservers") or ())
    return VMNetConf(tap_name=str(tap["name"]), netns_path=str(tap.get("sandbox", "")), vm_mac=str(vm_iface["mac"]),
                     address=address, gateway=gateway, nameservers=nameservers)


def ip_boot_param(result: Mapping[str, Any] | str | bytes, vm_id: str, vm_ifname: str = "eth0") -> str:
    """The kernel argument go-sdk builds: ``ip=<ip>::<gw>:<dotted mask>::<ifname>:off:<dns0>:<dns1>:``.

    Same ten colon-separated fields as ``vmconf.IPBootParam`` (so without DNS it ends ``:off:::``).
    """
    return vm_net_conf(result, vm_id).ip_boot_param(vm_ifname)


def guest_mac(result: Mapping[str, Any] | str | bytes, vm_id: str) -> str:
    """The MAC go-sdk gives Firecracker as ``guest_mac``: that of the interface whose sandbox is vm_id."""
    return vm_net_conf(result, vm_id).vm_mac


# --------------------------------------------------------------------------------------------------
# Booting


def _ns_prefix(netns: str) -> list[str]:
    if "/" in netns:
        return ["nsenter", f"--net={netns}"]
    return ["ip", "netns", "exec", netns]


@dataclass
class VM:
    """A running QEMU guest. ``pid`` is QEMU's own PID (``ip netns exec``/``nsenter`` exec into it)."""

    proc: subprocess.Popen[bytes]
    netns: str
    tap: str
    mac: str
    ip_param: str
    console_path: Path
    accel: str
    accel_note: str
    started_at: float
    argv: list[str]
    ready_at: float | None = None
    ready_ip: str | None = None
    control_path: Path | None = None
    _ctl: socket.socket | None = field(default=None, repr=False)
    _ctl_buf: bytes = field(default=b"", repr=False)
    _ctl_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ctl_seq: int = field(default=0, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr_path(self) -> Path:
        return Path(f"{self.console_path}.qemu-stderr")

    def since_start(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def boot_seconds(self) -> float | None:
        """QEMU start -> READY on the console."""
        return None if self.ready_at is None else self.ready_at - self.started_at

    def alive(self) -> bool:
        return self.proc.poll() is None

    def console(self) -> str:
        try:
            return self.console_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, lines: int = 30) -> str:
        return "\n".join(self.console().replace("\r", "").splitlines()[-lines:])

    def _failure(self, what: str, lines: int = 30) -> GuestNotReady:
        status = "running" if self.alive() else f"QEMU exited with {self.proc.returncode}"
        try:
            err = self.stderr_path.read_text(errors="replace").strip()[-1500:]
        except FileNotFoundError:
            err = ""
        return GuestNotReady(
            f"{what} ({status}, accel={self.accel}, {self.since_start():.1f}s after start, tap={self.tap}, "
            f"netns={self.netns}, {self.ip_param})\n--- last {lines} console lines ({self.console_path}) ---\n"
            f"{self.console_tail(lines)}\n--- QEMU stderr ---\n{err}")

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait for ``pattern`` (regex) on the console; GuestNotReady on timeout, QEMU exit or a FATAL line."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.console()
            if m := rx.search(text):
                return m
            if f"{MARK} FATAL" in text:
                raise self._failure(f"guest init failed while waiting for {pattern!r}")
            if not self.alive():
                raise self._failure(f"QEMU exited while waiting for {pattern!r}")
            if time.monotonic() > deadline:
                raise self._failure(f"guest never printed {pattern!r} within {timeout:.0f}s")
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 60) -> str:
        """Wait for the READY marker; return the guest's IP. Raises GuestNotReady with the console tail."""
        m = self.wait_for(re.escape(MARK) + r" READY ip=(\S+)", timeout)
        if self.ready_at is None:
            self.ready_at = time.monotonic()
            self.ready_ip = m.group(1)
        return m.group(1)

    def wait_gateway_ping(self, timeout: float = 30) -> bool:
        """The outcome of the guest's own ping of its gateway (it tries up to 5 times, 2 s each)."""
        m = self.wait_for(re.escape(MARK) + r" GATEWAY \S+ ping (ok|FAILED)", timeout)
        return m.group(1) == "ok"

    def run(self, script: str, timeout: float = 30) -> GuestRun:
        """Run a shell ``script`` inside the guest over the control channel (the second serial port).

        Needs no network, so it works while the guest's traffic is blocked. Waits for the guest's
        ``CTL ready`` line first. Returns the exit status and the combined stdout/stderr; GuestNotReady on
        timeout (the script may still run in the guest), a FATAL line or a QEMU exit.
        """
        if self.control_path is None:
            raise GuestError("this VM has no control channel")
        deadline = time.monotonic() + timeout
        self.wait_for(re.escape(MARK) + r" CTL (ready|unavailable)", timeout)
        if f"{MARK} CTL unavailable" in self.console():
            raise self._failure("the guest has no /dev/ttyS1 for the control channel")
        with self._ctl_lock:
            if self._ctl is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.control_path))
                self._ctl, self._ctl_buf = sock, b""
            self._ctl_seq += 1
            token = f"c{self._ctl_seq}x{os.getpid()}"
            self._ctl.sendall(f"{token} {base64.b64encode(script.encode()).decode()}\n".encode())
            end = re.compile(rb"@@BEGIN " + token.encode() + rb"\n(.*?)@@END " + token.encode() + rb" (\d+)\n",
                             re.DOTALL)
            while (m := end.search(self._ctl_buf)) is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    raise self._failure(f"no answer from the guest to {script!r} within {timeout:.0f}s")
                self._ctl.settimeout(min(left, 0.5))
                try:
                    chunk = self._ctl.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise self._failure(f"the control channel closed while running {script!r}")
                self._ctl_buf += chunk
            self._ctl_buf = self._ctl_buf[m.end():]
            return GuestRun(int(m.group(2)), m.group(1).decode(errors="replace"), script)

    def sh(self, script: str, timeout: float = 30) -> str:
        """``run`` that insists on exit status 0 and returns the output."""
        res = self.run(script, timeout)
        if res.rc != 0:
            raise GuestError(f"in the guest ({self.ready_ip or self.ip_param}): {script!r} exited {res.rc}: "
                             f"{res.out.strip()[-1500:]}")
        return res.out

    def mac_inside(self, dev: str = "eth0") -> str:
        """The MAC of ``dev`` as the guest's kernel reports it."""
        return self.sh(f"cat /sys/class/net/{dev}/address").strip()

    def ipv4_inside(self, dev: str = "eth0") -> list[str]:
        """The IPv4 addresses (``a.b.c.d/len``) on ``dev`` as the guest's kernel reports them."""
        return re.findall(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", self.sh(f"ip -4 addr show dev {dev}"))

    def snmp(self, group: str = "Icmp") -> dict[str, int]:
        """One group of the guest kernel's /proc/net/snmp counters (``Icmp``: InEchos, OutEchoReps, ...)."""
        rows = [line.split() for line in self.sh("cat /proc/net/snmp").splitlines() if line.startswith(f"{group}:")]
        if len(rows) != 2:
            raise GuestError(f"/proc/net/snmp in the guest has no {group} group")
        return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=True)}

    def stop(self, timeout: float = 5) -> None:
        """Terminate this QEMU (by PID only) and reap it; idempotent."""
        stop_process(self.proc, timeout)
        if self._ctl is not None:
            with contextlib.suppress(OSError):
                self._ctl.close()
            self._ctl = None
        if self.control_path is not None:
            shutil.rmtree(self.control_path.parent, ignore_errors=True)

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GuestRun(NamedTuple):
    """What ``VM.run`` saw: the script's exit status and its combined output."""

    rc: int
    out: str
    script: str


def check_tap(netns: str, tap: str) -> None:
    """GuestError unless ``tap`` exists in ``netns`` and is a tap device.

    QEMU (like Firecracker) would otherwise *create* a fresh, unconnected tap of that name and boot a
    guest that can reach nobody.
    """
    res = subprocess.run([*_ns_prefix(netns), "ip", "-d", "-j", "link", "show", "dev", tap], capture_output=True,
                         text=True, check=False)
    if res.returncode != 0:
        raise GuestError(f"tap {tap!r} does not exist in netns {netns}: {res.stderr.strip()}")
    info = (json.loads(res.stdout) or [{}])[0].get("linkinfo", {})
    if info.get("info_kind") != "tun" or info.get("info_data", {}).get("type") != "tap":
        raise GuestError(f"{tap!r} in netns {netns} is not a tap device: {info}")


_KVM_VERDICT: tuple[str, str] | None = None  # ("kvm"|"tcg", why), decided by the first "auto" boot


def _qemu_argv(accel: str, image: GuestImage, tap: str, mac: str, append: str, console: Path,
               memory_mb: int, control: Path) -> list[str]:
    return [QEMU, "-accel", accel, "-cpu", "max", "-m", str(memory_mb), "-smp", "1", "-nodefaults",
            "-no-reboot", "-display", "none", "-serial", f"file:{console}",
            "-chardev", f"socket,id=ctl,path={control},server=on,wait=off", "-serial", "chardev:ctl",
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]


_RUNNING: list[subprocess.Popen[bytes]] = []


@atexit.register
def _stop_leftovers() -> None:
    """Safety net: QEMUs this process started and nobody stopped die with it (by PID, never by name)."""
    for proc in _RUNNING:
        with contextlib.suppress(Exception):
            _kill(proc)


def _start(netns: str, argv: list[str], console: Path) -> subprocess.Popen[bytes]:
    console.parent.mkdir(parents=True, exist_ok=True)
    console.write_bytes(b"")
    with open(f"{console}.qemu-stderr", "wb") as err:
        proc = subprocess.Popen([*_ns_prefix(netns), *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    _RUNNING[:] = [p for p in _RUNNING if p.poll() is None]
    _RUNNING.append(proc)
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def boot(netns: str, tap: str, mac: str, ip_param: str, console_path: Path | str, accel: str = "auto", *,
         image: GuestImage | None = None, extra_append: str = "", memory_mb: int = 256,
         kvm_probe_seconds: float = KVM_PROBE_SECONDS) -> VM:
    """Start the guest on ``tap`` inside ``netns`` (a name or a netns path) and return at once.

    ``ip_param`` is the kernel ``ip=`` argument (with or without the ``ip=`` prefix). With
    ``accel="auto"`` the first boot of the process tries ``-accel kvm`` and waits up to
    ``kvm_probe_seconds`` for the guest's "init started" line; if QEMU aborts or the console stays
    silent, that QEMU is killed and the guest is started again under TCG. The verdict is reused by
    later boots in the same process. Call ``VM.wait_ready()`` next, and ``VM.stop()`` in a finally.
    """
    check_tap(netns, tap)
    image = image or prepare_guest()
    console = Path(console_path)
    param = ip_param if ip_param.startswith("ip=") else f"ip={ip_param}"
    append = " ".join(x for x in ("console=ttyS0 quiet panic=-1", param, extra_append) if x)
    accel = os.environ.get("CNI_IGNITE_VM_ACCEL", accel)
    if accel not in ("auto", "kvm", "tcg"):
        raise GuestError(f"accel must be auto, kvm or tcg, not {accel!r}")
    note = f"requested {accel}"
    with _PROBE_LOCK if accel == "auto" else contextlib.nullcontext():
        return _boot(netns, tap, mac, param, console, accel, note, image, append, memory_mb, kvm_probe_seconds)


_PROBE_LOCK = threading.Lock()


def _boot(netns: str, tap: str, mac: str, param: str, console: Path, accel: str, note: str, image: GuestImage,
          append: str, memory_mb: int, kvm_probe_seconds: float) -> VM:
    # The control socket: a short path of its own (a unix socket path has at most 107 bytes; pytest's
    # tmp_path can be longer). Removed by VM.stop(), or here when no VM comes of it.
    control = Path(tempfile.mkdtemp(prefix="cnit-vmctl-")) / "ctl"
    try:
        return _boot_on(netns, tap, mac, param, console, accel, note, image, append, memory_mb, kvm_probe_seconds,
                        control)
    except BaseException:
        shutil.rmtree(control.parent, ignore_errors=True)
        raise


def _boot_on(netns: str, tap: str, mac: str, param: str, console: Path, accel: str, note: str, image: GuestImage,
             append: str, memory_mb: int, kvm_probe_seconds: float, control: Path) -> VM:
    global _KVM_VERDICT  # noqa: PLW0603 - one probe per process
    if accel == "auto":
        if _KVM_VERDICT is not None:
            accel, note = _KVM_VERDICT[0], f"auto: {_KVM_VERDICT[1]} (probed earlier in this process)"
        elif not os.access("/dev/kvm", os.R_OK | os.W_OK):
            _KVM_VERDICT = ("tcg", "no usable /dev/kvm")
            accel, note = "tcg", "auto: no usable /dev/kvm"
        else:
            argv = _qemu_argv("kvm", image, tap, mac, append, console, memory_mb, control)
            started = time.monotonic()
            proc = _start(netns, argv, console)
            verdict = ""
            while time.monotonic() - started < kvm_probe_seconds:
                if f"{MARK} init started" in console.read_text(errors="replace"):
                    verdict = "kvm"
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
            if verdict == "kvm":
                _KVM_VERDICT = ("kvm", "KVM probe reached init")
                return VM(proc, netns, tap, mac, param, console, "kvm", "auto: KVM probe reached init", started,
                          argv, control_path=control)
            _kill(proc)
            control.unlink(missing_ok=True)  # the probe's socket; the next QEMU binds the same path
            err = Path(f"{console}.qemu-stderr").read_text(errors="replace").strip().splitlines()
            why = (f"KVM probe failed: QEMU exited {proc.returncode}: {err[-1] if err else ''}"
                   if proc.returncode not in (None, -9) else
                   f"KVM probe failed: no guest output within {kvm_probe_seconds:.0f}s")
            with contextlib.suppress(OSError):
                shutil.copyfile(console, f"{console}.kvm-probe")
            _KVM_VERDICT = ("tcg", why)
            accel, note = "tcg", f"auto: {why}; fell back to TCG"
    argv = _qemu_argv(accel, image, tap, mac, append, console, memory_mb, control)
    started = time.monotonic()
    proc = _start(netns, argv, console)
    return VM(proc, netns, tap, mac, param, console, accel, note, started, argv, control_path=control)


def kvm_verdict() -> tuple[str, str] | None:
    """``(accel, why)`` decided by this process's first ``accel="auto"`` boot, or None before it."""
    return _KVM_VERDICT


# --------------------------------------------------------------------------------------------------
# Host-side probes (run inside a namespace)


def ping_from(netns: str, ip: str, *, wait: float = 1) -> bool:
    """One ping from ``netns`` to ``ip``."""
    res = subprocess.run([*_ns_prefix(netns), "ping", "-c", "1", "-W", str(max(1, round(wait))), ip],
                         capture_output=True, check=False, timeout=wait + 10)
    return res.returncode == 0


def wait_ping(netns: str, ip: str, timeout: float = 60) -> float:
    """Ping from ``netns`` until ``ip`` answers; return the seconds it took. GuestError on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if ping_from(netns, ip):
            return time.monotonic() - start
        time.sleep(0.2)
    raise GuestError(f"{ip} did not answer ping from {netns} within {timeout:.0f}s")


def http_get(netns: str, url: str, timeout: float = 10) -> str:
    """Fetch ``url`` from inside ``netns`` with busybox wget (bounded by ``timeout``, not ``wget -T``)."""
    res = subprocess.run([*_ns_prefix(netns), "timeout", str(int(timeout)), str(BUSYBOX), "wget", "-q", "-O", "-",
                          url], capture_output=True, check=False, timeout=timeout + 10)
    if res.returncode != 0:
        raise GuestError(f"wget {url} in {netns} failed ({res.returncode}): {res.stderr.decode(errors='replace')}")
    return res.stdout.decode(errors="replace")


def guest_ping_url(guest_ip: str, target: str) -> str:
    """URL that makes the guest at ``guest_ip`` ping ``target`` once; the body ends in ``RESULT ok|fail``."""
    return f"http://{guest_ip}/cgi-bin/ping?{target}"


def guest_fetch_url(guest_ip: str, target: str) -> str:
    """URL that makes the guest fetch ``http://<target>``; the body ends in ``RESULT ok|fail``."""
    return f"http://{guest_ip}/cgi-bin/fetch?{target}"


ECHO_CGI = r"""#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "REMOTE_ADDR=$REMOTE_ADDR"
"""


def start_echo_server(netns: str, workdir: Path | str, port: int = 8080) -> subprocess.Popen[bytes]:
    """busybox httpd in ``netns`` on 0.0.0.0:``port`` whose ``/cgi-bin/whoami`` answers the client's address.

    Use it as the "outside world": ``http_get(host_ns, guest_fetch_url(vm_ip, f"{ip}:{port}/cgi-bin/whoami"))``
    returns a body with ``REMOTE_ADDR=…`` as that server saw the guest (masqueraded or not); see
    ``remote_addr()``. Stop it with ``stop_process(proc)``; the Popen's PID is httpd's own.
    """
    root = Path(workdir)
    (root / "cgi-bin").mkdir(parents=True, exist_ok=True)
    (root / "cgi-bin" / "whoami").write_text(ECHO_CGI)
    (root / "cgi-bin" / "whoami").chmod(0o755)
    (root / "index.html").write_text("echo server\n")
    proc = subprocess.Popen([*_ns_prefix(netns), str(BUSYBOX), "httpd", "-f", "-p", f"0.0.0.0:{port}", "-h",
                             str(root)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    _RUNNING.append(proc)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until it listens
        res = subprocess.run([*_ns_prefix(netns), "ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                             text=True, check=False)
        if res.stdout.strip() or proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc


def remote_addr(body: str) -> str | None:
    """The client address an echo server reported (``[::ffff:a.b.c.d]`` normalised to ``a.b.c.d``)."""
    m = re.search(r"REMOTE_ADDR=\[?(?:::ffff:)?([0-9A-Fa-f.:]+?)\]?\s*$", body, re.MULTILINE)
    return m.group(1) if m else None


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """Terminate one process we started (by its PID) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
