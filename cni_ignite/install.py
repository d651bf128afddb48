"""Install the frozen bundle into a CNI bin dir, and remove exactly what was installed.

Layout in ``<bin-dir>`` (default /opt/cni/bin)::

    cni-ignite-<digest>.d/          one bundle generation (dist/cni-ignite/ copied), named by content hash
    cni-ignite.d -> cni-ignite-<digest>.d
    ignite-bridge -> cni-ignite.d/cni-ignite
    ignite-ipam   -> cni-ignite.d/cni-ignite
    loopback      -> cni-ignite.d/cni-ignite    only when the bin dir had no ``loopback`` of its own
    cni-ignite.manifest.json        what install put here (read by uninstall and status)

``loopback`` (containerd's CRI runs it on every pod) is provided when the name is free, and kept up to date
while it is still our link; an existing ``loopback`` of any kind (a file, a link, a folder: the user's or a
package's) is never replaced, not even with ``--force``, and uninstall removes only our link.

A runtime may exec a plugin during an upgrade, so nothing it can reach is ever half-written: a
generation is copied under a temporary name and renamed into place; every link is made under a
temporary name and renamed over the old one. Switching ``cni-ignite.d`` switches both plugins at once.
The previous generation is kept (a call that started on it may still import from it) and removed by
the next install. A plugin started through a link runs from the generation it resolved at exec.

``<conf-dir>/10-ignite.conflist`` is written only when the conf dir holds no network config
(``*.conf``, ``*.conflist``, ``*.json``): a user's network is never overwritten. A later install updates
it only while it is still byte-identical to what we wrote; uninstall removes it under the same rule.

Taking over an Ignite host (``take_over_ignite``, ``install --take-over-ignite``): Ignite (v0.6.1 to v0.10.0,
``pkg/network/cni/cni.go``) writes ``10-ignite.conflist`` itself, its default network on the Go ``bridge`` +
``host-local`` -> ``portmap`` -> ``firewall`` chain. Exactly that file is replaced by ours when, and only when,
its JSON equals Ignite's default (whitespace and key order aside, types strict); the original bytes and mode
are kept as ``10-ignite.conflist.cni-ignite-backup`` (not a name libcni reads) and uninstall puts them back.
Anything else in that file is the user's: install refuses and changes nothing. Same network name, bridge and
subnet, and ignite-ipam reads host-local's leases, so attachments the Go chain made are released by our DEL;
their iptables rules are not ours (see ``go_rules``: ``cni-ignite ignite-gc`` removes them once released).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from .errors import CniError

if TYPE_CHECKING:
    from collections.abc import Iterator

MANIFEST = "cni-ignite.manifest.json"
CURRENT_LINK = "cni-ignite.d"
EXECUTABLE = "cni-ignite"
LAUNCHER = "cni-ignite-launch"  # `install --worker`: the plugins go through the warm-start launcher (docs/WORKER.md)
PLUGIN_LINKS = ("ignite-bridge", "ignite-ipam")
OPTIONAL_LINKS = ("loopback",)  # provided only where the bin dir has none
CONFLIST = "10-ignite.conflist"
# `install --network`: which shipped network to write (never both: go-cni and Ignite load the first by name).
NETWORKS = {"bridge": (CONFLIST, "ignite-cni-bridge"), "routed": ("20-ignite-routed.conflist", "ignite-cni-routed"),
            "multinode": ("30-ignite-multinode.conflist", "ignite-cni-multinode")}
# The multi-node network (`install --multi-node`, docs/MULTINODE.md): its subnet comes from the node agent's subnet
# file, and its MTU is the file's FLANNEL_MTU when install can read it (the shipped value is VXLAN on a 1500 underlay).
MULTINODE_SUBNET_FILE = "/run/flannel/subnet.env"
SHIPPED_MULTINODE_MTU = 1450
CONF_EXTENSIONS = (".conf", ".conflist", ".json")  # what libcni reads from a conf dir
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
BACKUP_SUFFIX = ".cni-ignite-backup"

# What Ignite v0.6.1..v0.10.0 writes to /etc/cni/net.d/10-ignite.conflist (weaveworks/ignite
# pkg/network/cni/cni.go `defaultCNIConf`, with defaultNetworkName, defaultBridgeName, defaultSubnet filled in;
# the exact bytes are tests/unit/fixtures/ignite-default-10-ignite.conflist).
IGNITE_DEFAULT: dict[str, Any] = {
    "cniVersion": "0.4.0",
    "name": "ignite-cni-bridge",
    "plugins": [
        {"type": "bridge", "bridge": "ignite0", "isGateway": True, "isDefaultGateway": True, "promiscMode": True,
         "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.61.0.0/16"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"},
    ],
}
# Ignite v0.6.0 wrote another default (network ignite-containerd-bridge on cni0, 172.18.0.0/16): recognised only
# to say why it is not taken over (our network differs in name, bridge and subnet: its attachments would not match).
IGNITE_V060_DEFAULT: dict[str, Any] = {
    "cniVersion": "0.4.0",
    "name": "ignite-containerd-bridge",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "isDefaultGateway": True, "promiscMode": True,
         "ipMasq": True, "ipam": {"type": "host-local", "subnet": "172.18.0.0/16"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


class InstallError(CniError):
    pass


# ------------------------------------------------------------------------------------------ sources

def default_source() -> str:
    """The bundle this program runs from when frozen; else ./dist."""
    if getattr(sys, "frozen", False):
        return os.path.dirname(os.path.realpath(sys.executable))
    return "dist"


def bundle_dir(source: str) -> str:
    """`source` is a bundle (holds the executable) or a dist/ folder holding cni-ignite/."""
    for cand in (source, os.path.join(source, "cni-ignite")):
        if os.path.isfile(os.path.join(cand, EXECUTABLE)) and os.access(os.path.join(cand, EXECUTABLE), os.X_OK):
            return os.path.realpath(cand)
    raise InstallError(f"no cni-ignite bundle in {source}", "run `make build` first (it writes dist/cni-ignite/)")


def bundle_conflist(bundle: str, name: str = CONFLIST) -> bytes:
    """A conflist shipped in the bundle (falls back to the source tree's conf/)."""
    for path in (os.path.join(bundle, "_internal", "conf", name),
                 os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf", name)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    raise InstallError(f"{name} not found in {bundle}")


def tree_digest(folder: str) -> str:
    """sha256 over every relative path, mode bit x, symlink target and file content below `folder`."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, folder).encode() + b"\0")
            if os.path.islink(path):
                h.update(b"L" + os.readlink(path).encode() + b"\0")
                continue
            h.update(b"X" if os.access(path, os.X_OK) else b"F")
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def bundle_version(bundle: str) -> str:
    from .hostexec import run

    done = run([os.path.join(bundle, EXECUTABLE), "version"], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if not done.ok:
        raise InstallError(f"{bundle}/{EXECUTABLE} does not run", done.stderr.decode(errors="replace").strip())
    return done.stdout.decode().strip()


# ---------------------------------------------------------------------------------- atomic helpers

def _tmp_name(folder: str, name: str) -> str:
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


def _is_our_tmp(name: str) -> bool:
    return name.startswith((".cni-ignite", ".ignite-")) and ".tmp-" in name


@contextlib.contextmanager
def locked(bin_dir: str) -> Iterator[None]:
    """One install/uninstall at a time per bin dir: flock on the folder itself (no lock file to leave)."""
    fd = os.open(bin_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stale_temporaries(bin_dir: str, out: TextIO) -> None:
    """Leftovers of an install that was killed midway (only ours, by name; called under the lock)."""
    for name in os.listdir(bin_dir):
        if _is_our_tmp(name):
            path = os.path.join(bin_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            out.write(f"{path}: removed (left by an interrupted install)\n")


def replace_symlink(target: str, link: str) -> None:
    """Point `link` at `target` (relative) by rename: readers see the old or the new link, never none."""
    tmp = _tmp_name(os.path.dirname(link), os.path.basename(link))
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise


def write_file(path: str, data: bytes, *, exclusive: bool) -> None:
    """Write via a fsync'ed temporary file; exclusive: link into place (fails if `path` exists)."""
    folder = os.path.dirname(path)
    tmp = _tmp_name(folder, os.path.basename(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return sha256(f.read())
    except FileNotFoundError:
        return None


def makedirs(path: str, created: list[str]) -> None:
    """mkdir -p, recording each folder we created (uninstall removes them again if empty)."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        created.append(d)


# ------------------------------------------------------------------------------------------ manifest

def read_manifest(bin_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(bin_dir, MANIFEST), "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InstallError(f"unreadable {MANIFEST} in {bin_dir}", str(exc)) from exc
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise InstallError(f"unknown {MANIFEST} format in {bin_dir}")
    return doc


def conf_files(conf_dir: str) -> list[str]:
    """Network configs in `conf_dir`, in the order libcni tries them (the first is the default)."""
    try:
        names = os.listdir(conf_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(CONF_EXTENSIONS) and os.path.isfile(os.path.join(conf_dir, n)))


# ---------------------------------------------------------------------------------- Ignite's network

def json_difference(doc: Any, want: Any, where: str = "") -> str | None:
    """The first place where `doc` differs from `want` as JSON values (key order aside; true is not 1), else None."""
    here = where or "the document"
    if type(doc) is not type(want):
        return f"{here}: {json.dumps(doc)} (expected {json.dumps(want)})"
    children: list[tuple[Any, Any, str]]
    if isinstance(want, dict):
        odd = [f"{k!r} not in Ignite's default" for k in sorted(set(doc) - set(want))]
        odd += [f"{k!r} missing" for k in sorted(set(want) - set(doc))]
        if odd:
            return f"{here}: {', '.join(odd)}"
        children = [(doc[k], want[k], f"{where}.{k}" if where else k) for k in sorted(want)]
    elif isinstance(want, list):
        if len(doc) != len(want):
            return f"{here}: {len(doc)} entries (expected {len(want)})"
        children = [(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(doc, want, strict=True))]
    else:
        return None if doc == want else f"{here}: {json.dumps(doc)} (expected {json.dumps(want)})"
    return next((d for d in (json_difference(*c) for c in children) if d), None)


def ignite_default_difference(data: bytes) -> str | None:
    """None when `data` is Ignite's default network (10-ignite.conflist as Ignite writes it), else why not."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if json_difference(doc, IGNITE_V060_DEFAULT) is None:
        return ("Ignite v0.6.0's default network (ignite-containerd-bridge on cni0, 172.18.0.0/16), not the "
                "ignite-cni-bridge network cni-ignite provides")
    return json_difference(doc, IGNITE_DEFAULT)


def _check_take_over(conf_dir: str, old: dict[str, Any]) -> None:
    """Refuse before anything changes when the file to take over is not Ignite's default (nor already ours)."""
    path = os.path.join(os.path.abspath(conf_dir), CONFLIST)
    conf = old.get("conflist")
    if conf and conf["path"] == path and file_sha256(path) == conf["sha256"]:
        return  # taken over (or written) by an earlier install: updated as ours
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return
    diff = ignite_default_difference(data)
    if diff:
        raise InstallError(f"{path} is not Ignite's default network ({diff}): it is yours and is left alone",
                           "install without --take-over-ignite, or change that file yourself")
    backup = path + BACKUP_SUFFIX
    if os.path.lexists(backup):
        try:
            with open(backup, "rb") as f:
                prev = f.read()
        except OSError:
            prev = b""
        if ignite_default_difference(prev) is not None:
            raise InstallError(f"{backup} exists and is not Ignite's default network: not overwritten",
                               "move it away, then install again")


def _take_over(data: bytes, path: str, out: TextIO) -> dict[str, str] | None:
    """Back Ignite's default up and put our network in its place (each step atomic: the name always holds one of
    the two). None (nothing changed) when the file is gone or no longer Ignite's default."""
    try:
        with open(path, "rb") as f:
            original = f.read()
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None
    if ignite_default_difference(original) is not None:
        out.write(f"{path} changed meanwhile: left alone\n")
        return None
    backup = path + BACKUP_SUFFIX
    write_file(backup, original, exclusive=False)
    os.chmod(backup, mode)  # restored as it was (Ignite writes mode 644 decimal: 0o1204)
    write_file(path, data, exclusive=False)
    out.write(f"{path}: Ignite's default network (Go bridge, host-local, portmap, firewall) replaced by "
              f"cni-ignite's; original kept as {backup}\n")
    return {"path": path, "backup": backup, "sha256": sha256(original)}


# ------------------------------------------------------------------------------------------- install

def install(source: str, bin_dir: str, conf_dir: str, *, write_conf: bool, force: bool, out: TextIO,
             take_over_ignite: bool = False, network: str = "bridge", subnet_file: str | None = None,
             worker: bool = False) -> int:
    if network not in NETWORKS:
        raise InstallError(f"unknown network {network!r}", f"one of {', '.join(NETWORKS)}")
    if subnet_file is not None and network != "multinode":
        raise InstallError("--subnet-file only goes with --multi-node")
    if subnet_file is not None and not subnet_file.startswith("/"):
        raise InstallError("--subnet-file must be an absolute path (the plugins read it from anywhere)", subnet_file)
    if take_over_ignite and not write_conf:
        raise InstallError("--take-over-ignite writes the network config: it cannot go with --no-conf")
    bundle = bundle_dir(source)
    version = bundle_version(bundle)
    if worker and not os.access(os.path.join(bundle, LAUNCHER), os.X_OK):
        raise InstallError(f"--worker: {bundle} has no {LAUNCHER} (a bundle built before warm start, or a build "
                           "without a C compiler)")
    if take_over_ignite:
        _check_take_over(conf_dir, read_manifest(bin_dir) or {})  # before anything changes
    created: list[str] = []
    makedirs(bin_dir, created)
    with locked(bin_dir):
        old = read_manifest(bin_dir) or {}
        if take_over_ignite:
            _check_take_over(conf_dir, old)  # again under the lock: what another install did meanwhile counts
        created = [*old.get("created_dirs", []), *created]
        remove_stale_temporaries(bin_dir, out)
        return _install(bundle, version, bin_dir, conf_dir, old, created, write_conf=write_conf, force=force,
                        out=out, take_over_ignite=take_over_ignite, network=network, subnet_file=subnet_file,
                        worker=worker)


def _install(bundle: str, version: str, bin_dir: str, conf_dir: str, old: dict[str, Any], created: list[str], *,
             write_conf: bool, force: bool, out: TextIO, take_over_ignite: bool = False,
             network: str = "bridge", subnet_file: str | None = None, worker: bool = False) -> int:
    for name in (CURRENT_LINK, *PLUGIN_LINKS):
        path = os.path.join(bin_dir, name)
        if os.path.lexists(path) and not (force or _is_ours_now(path, old.get("links", {}).get(name))):
            raise InstallError(f"{path} exists and was not installed by cni-ignite", "remove it or pass --force")

    plugin_target = f"{CURRENT_LINK}/{LAUNCHER if worker else EXECUTABLE}"
    optional = {}  # name -> True: our link is there (update it), False: the name is free (create it)
    for name in OPTIONAL_LINKS:
        path = os.path.join(bin_dir, name)
        if not os.path.lexists(path):
            optional[name] = False
        elif _is_ours_now(path, old.get("links", {}).get(name)):
            optional[name] = True
        else:
            out.write(f"{path} exists (not installed by cni-ignite): left alone\n")

    generation = _place_generation(bundle, bin_dir, out)
    prev = old.get("current")
    # Record the new folder (and the links we are about to make) before any link points at it, so an
    # install killed from here on leaves nothing that uninstall does not know about.
    kept = {k: v for k, v in old.get("links", {}).items() if k not in OPTIONAL_LINKS}
    man = {"format": 1, "version": old.get("version", version), "installed_at": old.get("installed_at"),
           "source": bundle, "bin_dir": os.path.abspath(bin_dir), "current": prev,
           "generations": list(dict.fromkeys([*old.get("generations", []), generation])),
           "links": {**kept, **dict.fromkeys(optional, plugin_target)}, "conflist": old.get("conflist"),
           "ignite_backup": old.get("ignite_backup"), "created_dirs": created}
    _write_manifest(bin_dir, man)

    links = {CURRENT_LINK: generation, **dict.fromkeys(PLUGIN_LINKS, plugin_target)}
    for name, target in links.items():  # cni-ignite.d first: the plugin links then point at the new one
        replace_symlink(target, os.path.join(bin_dir, name))
        man["links"][name] = target
        out.write(f"{os.path.join(bin_dir, name)} -> {target}\n")
    for name, ours in optional.items():
        if _place_optional(plugin_target, os.path.join(bin_dir, name), ours=ours, out=out):
            links[name] = plugin_target

    # Keep the generation we replaced (calls may still run from it); drop older ones.
    keep = [g for g in man["generations"] if g in (generation, prev)] if prev != generation else man["generations"]
    for g in man["generations"]:
        if g not in keep:
            shutil.rmtree(os.path.join(bin_dir, g), ignore_errors=True)
            out.write(f"{os.path.join(bin_dir, g)}: removed (two installs old)\n")

    man.update(version=version, installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), current=generation,
               generations=sorted(keep, key=lambda g: g != generation), links=links)
    man["conflist"] = _install_conflist(bundle, conf_dir, old.get("conflist"), created, write_conf=write_conf,
                                        out=out, take_over_ignite=take_over_ignite, man=man, network=network,
                                        subnet_file=subnet_file)
    _write_manifest(bin_dir, man)
    out.write(f"installed cni-ignite {version} into {bin_dir}\n")
    if worker:
        out.write(f"warm start: the plugins hand their calls to `{os.path.join(bin_dir, CURRENT_LINK, EXECUTABLE)} "
                  "worker` when it runs (packaging/cni-ignite-worker.service), and run on their own when it does "
                  "not\n")
    return 0


def _place_optional(target: str, path: str, *, ours: bool, out: TextIO) -> bool:
    """Update our own link at `path`, or create it where the name is free; False if something else got there
    first (a plain symlink() never replaces: a file a package drops meanwhile wins)."""
    try:
        if ours:
            replace_symlink(target, path)
        else:
            os.symlink(target, path)
    except FileExistsError:
        out.write(f"{path} appeared meanwhile: left alone\n")
        return False
    out.write(f"{path} -> {target}\n")
    return True


def _is_ours_now(path: str, recorded: str | None) -> bool:
    """What is at `path` now is a link we made: the one the manifest recorded, or one of our layout. A name
    the manifest lists may since have been replaced by the user's own file or link: that is not ours."""
    if not os.path.islink(path):
        return False
    return os.readlink(path) == recorded or _is_our_link(path)


def _is_our_link(path: str) -> bool:
    """A link of our layout (left by an install that was killed before it wrote the manifest)."""
    if not os.path.islink(path):
        return False
    target = os.readlink(path)
    if os.path.basename(path) == CURRENT_LINK:
        return target.startswith("cni-ignite-") and target.endswith(".d") and "/" not in target
    return target in (f"{CURRENT_LINK}/{EXECUTABLE}", f"{CURRENT_LINK}/{LAUNCHER}")


def _place_generation(bundle: str, bin_dir: str, out: TextIO) -> str:
    """Copy the bundle to <bin-dir>/cni-ignite-<digest>.d (temporary name, then rename); reuse an intact copy."""
    digest = tree_digest(bundle)[:16]
    generation = f"cni-ignite-{digest}.d"
    gen_path = os.path.join(bin_dir, generation)
    if os.path.isdir(gen_path) and tree_digest(gen_path)[:16] == digest:
        out.write(f"{gen_path}: already present\n")
        return generation
    if os.path.lexists(gen_path):  # a damaged copy (maybe live): never replace it under a reader; use a new name
        generation = f"cni-ignite-{digest}-{time.time_ns() % 10**9}.d"
        gen_path = os.path.join(bin_dir, generation)
    tmp = _tmp_name(bin_dir, generation)
    shutil.copytree(bundle, tmp, symlinks=True)
    os.rename(tmp, gen_path)
    out.write(f"{gen_path}: copied from {bundle}\n")
    return generation


def _write_manifest(bin_dir: str, man: dict[str, Any]) -> None:
    write_file(os.path.join(bin_dir, MANIFEST), json.dumps(man, indent=2).encode() + b"\n", exclusive=False)


def _install_conflist(bundle: str, conf_dir: str, old: dict[str, str] | None, created: list[str], *,
                      write_conf: bool, out: TextIO, take_over_ignite: bool = False,
                      man: dict[str, Any] | None = None, network: str = "bridge",
                      subnet_file: str | None = None) -> dict[str, str] | None:
    if old and file_sha256(old["path"]) != old["sha256"]:
        old = None  # changed or removed by the user since: no longer ours
    if not write_conf:
        return old
    name, net_name = NETWORKS[network]
    data = bundle_conflist(bundle, name)
    if network == "multinode":
        data = render_multinode(data, subnet_file or MULTINODE_SUBNET_FILE, out)
    # Taking over writes into Ignite's own file name, whichever network was chosen: Ignite loads that name.
    path = os.path.join(os.path.abspath(conf_dir), CONFLIST if take_over_ignite else name)
    if old and old["path"] == path:
        if old["sha256"] != sha256(data):
            write_file(path, data, exclusive=False)
            out.write(f"{path}: updated (unchanged since our install)\n")
        return {"path": path, "sha256": sha256(data)}
    if take_over_ignite and os.path.lexists(path):
        backup = _take_over(data, path, out)
        if backup is not None and man is not None:
            man["ignite_backup"] = backup
        return old if backup is None else {"path": path, "sha256": sha256(data)}
    existing = conf_files(conf_dir)
    if existing:
        _not_written(conf_dir, existing, out)
        return old
    makedirs(conf_dir, created)
    try:
        write_file(path, data, exclusive=True)
    except FileExistsError:
        out.write(f"{path} appeared meanwhile: not written\n")
        return old
    out.write(f"{path}: written (default network {net_name})\n")
    return {"path": path, "sha256": sha256(data)}


def render_multinode(data: bytes, subnet_file: str, out: TextIO) -> bytes:
    """The shipped multi-node conflist with ipam.subnetFile = `subnet_file` and the bridge's mtu = the file's
    FLANNEL_MTU when the file can be read now (the agent runs); else the shipped MTU, said so. Textual
    replacements keep the shipped layout; the result is checked to be what was meant."""
    from .subnetenv import read_subnet_env

    doc = json.loads(data)
    plugin = doc["plugins"][0]
    mtu = int(plugin.get("mtu", SHIPPED_MULTINODE_MTU))
    try:
        env = read_subnet_env(subnet_file)
    except CniError as exc:
        out.write(f"{subnet_file}: {exc.msg}; the network's mtu stays {mtu} (VXLAN on a 1500-byte underlay). Start "
                  "`cni-ignite node` first, or install again once it runs, to take FLANNEL_MTU\n")
    else:
        if env.mtu != mtu:
            out.write(f"{subnet_file}: FLANNEL_MTU={env.mtu}: the network's mtu is {env.mtu}\n")
            mtu = env.mtu
        if not env.ipmasq:
            out.write(f"{subnet_file}: FLANNEL_IPMASQ=false: the agent runs with --no-ip-masq and this network's "
                      "bridge does not masquerade either (ipMasq false): VMs reach outside the network only if "
                      "something else masquerades\n")
    text = data.decode()
    text = text.replace(f'"mtu": {plugin.get("mtu")}', f'"mtu": {mtu}', 1)
    text = text.replace(json.dumps(plugin["ipam"]["subnetFile"]), json.dumps(subnet_file), 1)
    got = json.loads(text)["plugins"][0]
    if got.get("mtu") != mtu or got["ipam"].get("subnetFile") != subnet_file:
        raise InstallError("the shipped multi-node conflist does not have the expected layout (mtu, ipam.subnetFile)")
    return text.encode()


def _not_written(conf_dir: str, existing: list[str], out: TextIO) -> None:
    out.write(f"{conf_dir} already has network config ({', '.join(existing)}): {CONFLIST} not written\n")
    if CONFLIST in existing:
        path = os.path.join(conf_dir, CONFLIST)
        with open(path, "rb") as f:
            if ignite_default_difference(f.read()) is None:
                out.write(f"{path} is Ignite's default network on the Go plugins: install --take-over-ignite "
                          "replaces it with cni-ignite's (kept as a backup, restored by uninstall)\n")


# ----------------------------------------------------------------------------------------- uninstall

def uninstall(bin_dir: str, out: TextIO) -> int:
    if not os.path.isdir(bin_dir):
        out.write(f"nothing to uninstall: {bin_dir} does not exist\n")
        return 0
    with locked(bin_dir):
        man = read_manifest(bin_dir)
        if man is None:
            out.write(f"nothing to uninstall: no {MANIFEST} in {bin_dir}\n")
            return 0
        remove_stale_temporaries(bin_dir, out)
        _uninstall(bin_dir, man, out)
    for d in reversed(man.get("created_dirs", [])):  # after the lock's fd is closed
        try:
            os.rmdir(d)
            out.write(f"{d}: removed (empty, created by install)\n")
        except OSError:
            pass
    out.write(f"uninstalled cni-ignite {man.get('version', '?')} from {bin_dir}\n")
    return 0


def _uninstall(bin_dir: str, man: dict[str, Any], out: TextIO) -> None:
    links: dict[str, str] = man.get("links", {})
    for name in (*PLUGIN_LINKS, *OPTIONAL_LINKS, CURRENT_LINK):  # plugins first: none points at a missing folder
        path = os.path.join(bin_dir, name)
        if name in links and _is_ours_now(path, links[name]):
            os.unlink(path)
            out.write(f"{path}: removed\n")
        elif os.path.lexists(path):
            out.write(f"{path}: left alone (not the link we installed)\n")
    for g in man.get("generations", []):
        path = os.path.join(bin_dir, g)
        if g.startswith("cni-ignite-") and g.endswith(".d") and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            out.write(f"{path}: removed\n")
    conf = man.get("conflist")
    if conf:
        ours = file_sha256(conf["path"]) == conf["sha256"]
        backup = man.get("ignite_backup")
        if ours and backup and backup["path"] == conf["path"] and file_sha256(backup["backup"]) == backup["sha256"]:
            os.replace(backup["backup"], conf["path"])  # one rename: the name never goes missing
            out.write(f"{conf['path']}: Ignite's default network restored from {backup['backup']}\n")
            man["ignite_backup"] = None
        elif ours:
            os.unlink(conf["path"])
            out.write(f"{conf['path']}: removed\n")
        elif os.path.exists(conf["path"]):
            out.write(f"{conf['path']}: left alone (changed since install)\n")
    _restore_ignite_backup(man.get("ignite_backup"), out)
    os.unlink(os.path.join(bin_dir, MANIFEST))


def _restore_ignite_backup(backup: dict[str, str] | None, out: TextIO) -> None:
    """Ignite's original where our conflist no longer is (the user removed it); never over someone else's file."""
    if not backup or not os.path.exists(backup["backup"]):
        return
    if file_sha256(backup["backup"]) != backup["sha256"]:
        out.write(f"{backup['backup']}: changed since install: not restored\n")
        return
    try:
        os.link(backup["backup"], backup["path"])
    except FileExistsError:
        out.write(f"{backup['path']}: changed since install, left alone; Ignite's original is kept as "
                  f"{backup['backup']}\n")
        return
    os.unlink(backup["backup"])
    out.write(f"{backup['path']}: Ignite's default network restored from {backup['backup']}\n")
