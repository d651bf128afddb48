"""`make demo`: install the frozen plugins into temporary folders, network two throwaway "VM" namespaces
through the default conflist (one with a port mapping), show that they talk, that a page inside one is
reached through the mapped host port, CHECK, DEL, and that nothing is left.

Everything runs inside a throwaway "host" network namespace; nothing in the machine's own namespace,
/etc/cni, /opt/cni or /var/lib/cni changes. Any failing step stops the demo with a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conformance.driver import Attachment, Runtime  # noqa: E402
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
    found += [f"lease {p.name}" for p in data_dir.rglob("*") if p.is_file() and p.name[0].isdigit()]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from", dest="source", default=str(REPO / "dist"), help="the built bundle (make build)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cni-ignite-demo-"))
    bin_dir, conf_dir, data_dir = work / "bin", work / "net.d", work / "lib"
    httpd: subprocess.Popen[bytes] | None = None
    with Namespaces(tag="demo") as spaces:
        try:
            host = spaces.host
            step(1, f"a throwaway host namespace {host}; plugins installed into {work}")
            cni_ignite = Path(args.source) / "cni-ignite" / "cni-ignite"
            out = subprocess.run([str(cni_ignite), "install", "--bin-dir", str(bin_dir), "--conf-dir",
                                  str(conf_dir), "--from", args.source], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise StepFailed(f"install failed: {out.stderr or out.stdout}")
            for line in out.stdout.strip().splitlines():
                say(line)
            conflist_path = conf_dir / "10-ignite.conflist"
            netlist: dict[str, Any] = json.loads(conflist_path.read_text())
            plugin = netlist["plugins"][0]
            plugin["ipam"]["dataDir"] = str(data_dir / "networks")  # keep the machine's /var/lib/cni untouched
            plugin["stateDir"] = str(data_dir / "ignite")
            say(f"default network {netlist['name']!r}: {plugin['type']} on bridge {plugin['bridge']}, "
                f"{plugin['ipam']['type']} {plugin['ipam']['subnet']}, cniVersion {netlist['cniVersion']}")

            step(2, "ADD two VM namespaces through the default conflist (vm-a maps host port 8080 -> 80)")
            rt = Runtime(cni_path=[bin_dir], host_ns=host, cache_dir=work / "cache")
            vms = {}
            for name, caps in (("vm-a", {"portMappings": [{"hostPort": HOST_PORT, "containerPort": 80,
                                                           "protocol": "tcp"}]}), ("vm-b", {})):
                ns = spaces.new(name)
                att = Attachment(container_id=f"demo-{name}", netns=path(ns), capability_args=caps)
                t0 = time.monotonic()
                result, _ = rt.add(netlist, att)
                ms = 1000 * (time.monotonic() - t0)
                ip = result["ips"][0]["address"]
                vms[name] = (ns, att, ip.split("/")[0])
                say(f"{name}: {ip} via {result['ips'][0]['gateway']} on {result['interfaces'][2]['name']} "
                    f"(host side {result['interfaces'][1]['name']}), ADD took {ms:.0f} ms")

            step(3, "the VMs reach each other and their gateway")
            (ns_a, _, ip_a), (ns_b, _, ip_b) = vms["vm-a"], vms["vm-b"]
            for src, dst in ((ns_a, ip_b), (ns_b, ip_a), (ns_a, "10.61.0.1")):
                line = [ln for ln in sh(src, "ping", "-c", "1", "-W", "2", dst).splitlines() if "time=" in ln]
                say(f"{src.split('-', 1)[-1]} -> {dst}: {line[0].split('time=')[1] if line else 'ok'}")

            step(4, f"a page served inside vm-a, fetched through host port {HOST_PORT}")
            www = work / "www"
            www.mkdir()
            (www / "index.html").write_text("hello from vm-a, through ignite-bridge's port mapping\n")
            httpd = subprocess.Popen(["ip", "netns", "exec", ns_a, "busybox", "httpd", "-f", "-p", "80", "-h", str(www)])
            time.sleep(0.3)
            for url in (f"http://127.0.0.1:{HOST_PORT}/", f"http://10.61.0.1:{HOST_PORT}/"):
                page = sh(host, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url).strip()
                say(f"host namespace GET {url} -> {page!r}")
            page = sh(ns_b, "timeout", "5", "busybox", "wget", "-q", "-O", "-", f"http://10.61.0.1:{HOST_PORT}/").strip()
            say(f"vm-b GET http://10.61.0.1:{HOST_PORT}/ (hairpin through the host) -> {page!r}")

            step(5, "CHECK both attachments")
            for name, (_, att, _) in vms.items():
                calls = rt.check(netlist, att)
                if not all(c.ok for c in calls):
                    raise StepFailed(f"CHECK {name}: {calls[-1].brief()}")
                say(f"{name}: CHECK ok")

            step(6, "DEL both attachments (the runtime replays its cached result, not the port mappings)")
            httpd.kill()
            httpd.wait()
            httpd = None
            for name, (_, att, _) in vms.items():
                calls = rt.delete(netlist, att)
                if not all(c.ok for c in calls):
                    raise StepFailed(f"DEL {name}: {calls[-1].brief()}")
                say(f"{name}: DEL ok")

            step(7, "nothing is left behind")
            left = leftovers(host, data_dir)
            if left:
                raise StepFailed("left behind: " + "; ".join(left))
            say("no veth, no rule mentioning 10.61.x or the port, no lease file "
                f"(the bridge {plugin['bridge']} stays, as with the reference plugin)")
            out = subprocess.run([str(cni_ignite), "uninstall", "--bin-dir", str(bin_dir)], capture_output=True,
                                 text=True, check=False)
            say(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "uninstalled")
        except StepFailed as exc:
            print(f"\n\033[31mDEMO FAILED: {exc}\033[0m", file=sys.stderr)
            return 1
        finally:
            if httpd is not None:
                httpd.kill()
                httpd.wait()
    print("\n\033[32mdemo complete: all namespaces removed.\033[0m")
    return 0


if __name__ == "__main__":
    sys.exit(main())
