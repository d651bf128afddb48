"""`make demo`: install the frozen plugins into temporary folders, network two throwaway "VM" namespaces
through the default conflist (one with a port mapping), show that they talk, that a page inside one is
reached through the mapped host port, CHECK, DEL, and that nothing is left.

Everything runs inside a throwaway "host" network namespace; nothing in the machine's own namespace,
/etc/cni, /opt/cni or /var/lib/cni changes. Any failing step stops the demo with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conformance.driver import Attachment, ChainError, Runtime  # noqa: E402
from conformance.hostns import Namespaces, in_ns, path  # noqa: E402

HOST_PORT = 8080


class StepFailed(Exception):
    pass


def step(n: int, text: str) -> None:
    print(f"\n\033[1m{n}. {text}\033[0m", flush=True)


def say(text: str) -> None:
    print(f"   {text}", flush=True)


def sh(ns: str | None, *argv: str, check: bool = True) -> str:
    res = in_ns(ns, argv) if ns else subprocess.run(list(argv), capture_output=True, check=False)
    out = res.stdout.decode(errors="replace")
    if check and res.returncode != 0:
        raise StepFailed(f"{' '.join(argv)} failed: {res.stderr.decode(errors='replace').strip()}")
    return out


def leftovers(host: str, data_dir: Path) -> list[str]:
    found = [f"link {ln.split(':')[1].strip().split('@')[0]}" for ln in sh(host, "ip", "-o", "link").splitlines()
             if ln.split(":")[1].strip().startswith("veth")]
    rules = sh(host, "iptables-save", check=False) + sh(host, "nft", "list", "ruleset", check=False)
    found += [f"rule: {ln.strip()}" for ln in rules.splitlines() if "10.61." in ln or f"dport {HOST_PORT}" in ln]
    found += [f"lease {p.name}" for p in _lease_files(data_dir) if not p.read_bytes().startswith(b"_ignite_")]
    return found


def _lease_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and p.name[0].isdigit())


def held(data_dir: Path) -> list[str]:
    """Addresses the sticky default network keeps for their owners after DEL (not leaked leases)."""
    return [p.name for p in _lease_files(data_dir) if p.read_bytes().startswith(b"_ignite_held_")]


class Demo:
    def __init__(self, spaces: Namespaces, source: str, work: Path) -> None:
        self.spaces, self.host, self.source, self.work = spaces, spaces.host, source, work
        self.bin_dir, self.conf_dir, self.data_dir = work / "bin", work / "net.d", work / "lib"
        self.cni_ignite = Path(source) / "cni-ignite" / "cni-ignite"
        self.rt = Runtime(cni_path=[self.bin_dir], host_ns=self.host, cache_dir=work / "cache")
        self.netlist: dict[str, Any] = {}
        self.vms: dict[str, tuple[str, Attachment, str]] = {}
        self.httpd: subprocess.Popen[bytes] | None = None

    def admin(self, *argv: str) -> list[str]:
        out = subprocess.run([str(self.cni_ignite), *argv], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise StepFailed(f"cni-ignite {argv[0]} failed: {out.stderr or out.stdout}")
        return out.stdout.strip().splitlines()

    def install(self) -> None:
        step(1, f"a throwaway host namespace {self.host}; plugins installed into {self.work}")
        for line in self.admin("install", "--bin-dir", str(self.bin_dir), "--conf-dir", str(self.conf_dir),
                               "--from", self.source):
            say(line)
        self.netlist = json.loads((self.conf_dir / "10-ignite.conflist").read_text())
        plugin = self.netlist["plugins"][0]
        plugin["ipam"]["dataDir"] = str(self.data_dir / "networks")  # keep the machine's /var/lib/cni untouched
        plugin["stateDir"] = str(self.data_dir / "ignite")
        say(f"default network {self.netlist['name']!r}: {plugin['type']} on bridge {plugin['bridge']}, "
            f"{plugin['ipam']['type']} {plugin['ipam']['subnet']}, cniVersion {self.netlist['cniVersion']}")

    def add(self) -> None:
        step(2, f"ADD two VM namespaces through the default conflist (vm-a maps host port {HOST_PORT} -> 80)")
        mapping = {"portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]}
        for name, caps in (("vm-a", mapping), ("vm-b", {})):
            ns = self.spaces.new(name)
            att = Attachment(container_id=f"demo-{name}", netns=path(ns), capability_args=caps)
            t0 = time.monotonic()
            result, _ = self.rt.add(self.netlist, att)
            ms = 1000 * (time.monotonic() - t0)
            ip = result["ips"][0]["address"]
            self.vms[name] = (ns, att, ip.split("/")[0])
            say(f"{name}: {ip} via {result['ips'][0]['gateway']} on {result['interfaces'][2]['name']} "
                f"(host side {result['interfaces'][1]['name']}), ADD took {ms:.0f} ms")

    def ping(self) -> None:
        step(3, "the VMs reach each other and their gateway")
        (ns_a, _, ip_a), (ns_b, _, ip_b) = self.vms["vm-a"], self.vms["vm-b"]
        for src, dst in ((ns_a, ip_b), (ns_b, ip_a), (ns_a, "10.61.0.1")):
            line = [ln for ln in sh(src, "ping", "-c", "1", "-W", "2", dst).splitlines() if "time=" in ln]
            say(f"{src.split('-', 1)[-1]} -> {dst}: {line[0].split('time=')[1] if line else 'ok'}")

    def port_mapping(self) -> None:
        step(4, f"a page served inside vm-a, fetched through host port {HOST_PORT}")
        www = self.work / "www"
        www.mkdir()
        (www / "index.html").write_text("hello from vm-a, through ignite-bridge's port mapping\n")
        ns_a, ns_b = self.vms["vm-a"][0], self.vms["vm-b"][0]
        self.httpd = subprocess.Popen(["ip", "netns", "exec", ns_a, "busybox", "httpd", "-f", "-p", "80",
                                       "-h", str(www)])
        time.sleep(0.3)
        for ns, who, url in ((self.host, "host namespace", f"http://127.0.0.1:{HOST_PORT}/"),
                             (self.host, "host namespace", f"http://10.61.0.1:{HOST_PORT}/"),
                             (ns_b, "vm-b (via the host's mapped port)", f"http://10.61.0.1:{HOST_PORT}/")):
            page = sh(ns, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url).strip()
            say(f"{who} GET {url} -> {page!r}")

    def check_and_delete(self) -> None:
        step(5, "CHECK both attachments")
        for name, (_, att, _) in self.vms.items():
            calls = self.rt.check(self.netlist, att)
            if not all(c.ok for c in calls):
                raise StepFailed(f"CHECK {name}: {calls[-1].brief()}")
            say(f"{name}: CHECK ok")
        step(6, "DEL both attachments (the runtime replays its cached result, not the port mappings)")
        self.stop_httpd()
        for name, (_, att, _) in self.vms.items():
            calls = self.rt.delete(self.netlist, att)
            if not all(c.ok for c in calls):
                raise StepFailed(f"DEL {name}: {calls[-1].brief()}")
            say(f"{name}: DEL ok")

    def warm_start(self) -> None:
        step(7, "warm start: `install --worker` and a `cni-ignite worker` (docs/WORKER.md)")
        lines = self.admin("install", "--bin-dir", str(self.bin_dir), "--conf-dir", str(self.conf_dir),
                           "--from", self.source, "--no-conf", "--worker")
        say(next(ln for ln in lines if "ignite-bridge ->" in ln))
        sock = self.work / "worker" / "worker.sock"  # a temp socket, not the host's /run/cni-ignite
        log = self.work / "worker.log"
        with log.open("wb") as out:
            worker = subprocess.Popen(["ip", "netns", "exec", self.host, str(self.cni_ignite), "worker", "--socket",
                                       str(sock)], stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 20
            while not sock.exists():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise StepFailed(f"the worker did not start: {log.read_text()}")
                time.sleep(0.05)
            say(log.read_text().strip().splitlines()[0])
            self.rt.plugin_env = {"CNI_IGNITE_WORKER_SOCKET": str(sock)}
            ns = self.spaces.new("vm-c")
            att = Attachment(container_id="demo-vm-c", netns=path(ns), capability_args={})
            for verb in ("ADD", "DEL", "ADD", "DEL"):
                t0 = time.monotonic()
                if verb == "ADD":
                    result, _ = self.rt.add(self.netlist, att)
                    what = f"{result['ips'][0]['address']}"
                else:
                    calls = self.rt.delete(self.netlist, att)
                    if not all(c.ok for c in calls):
                        raise StepFailed(f"DEL vm-c: {calls[-1].brief()}")
                    what = "ok"
                say(f"vm-c {verb} through the worker: {what}, took {1000 * (time.monotonic() - t0):.0f} ms")
        finally:
            self.rt.plugin_env = {}
            worker.terminate()
            worker.wait(timeout=60)
        say(log.read_text().strip().splitlines()[-1])

    def verify_clean(self) -> None:
        step(8, "nothing is left behind")
        left = leftovers(self.host, self.data_dir)
        if left:
            raise StepFailed("left behind: " + "; ".join(left))
        say(f"no veth, no rule mentioning 10.61.x or port {HOST_PORT}, no lease file "
            f"(the bridge {self.netlist['plugins'][0]['bridge']} stays, as with the reference plugin)")
        kept = held(self.data_dir)
        if kept:
            say(f"held for their owners (sticky addresses, 1 h): {', '.join(kept)}; the same VMs get them back")
        lines = self.admin("uninstall", "--bin-dir", str(self.bin_dir))
        say(lines[-1] if lines else "uninstalled")

    def stop_httpd(self) -> None:
        if self.httpd is not None:
            self.httpd.kill()
            self.httpd.wait()
            self.httpd = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source", default=str(REPO / "dist"), help="the built bundle (make build)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cni-ignite-demo-"))
    with Namespaces(tag="demo") as spaces:
        demo = Demo(spaces, args.source, work)
        try:
            demo.install()
            demo.add()
            demo.ping()
            demo.port_mapping()
            demo.check_and_delete()
            demo.warm_start()
            demo.verify_clean()
        except (StepFailed, ChainError) as exc:
            print(f"\n\033[31mDEMO FAILED: {exc}\033[0m", file=sys.stderr)
            return 1
        finally:
            demo.stop_httpd()
            shutil.rmtree(work, ignore_errors=True)
    print("\n\033[32mdemo complete: all namespaces removed.\033[0m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
