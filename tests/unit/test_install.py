"""cni-ignite install/uninstall into temporary folders with small fake bundles (no root, no build)."""

from __future__ import annotations

import io
import json
import os
import threading
from typing import TYPE_CHECKING, Any

import pytest

from cni_ignite import install as inst
from cni_ignite.status import print_status

if TYPE_CHECKING:
    from pathlib import Path

CONFLIST = b'{"cniVersion": "0.4.0", "name": "ignite-cni-bridge", "plugins": [{"type": "ignite-bridge"}]}\n'


def fake_bundle(root: Path, tag: str, conflist: bytes = CONFLIST) -> Path:
    """A folder shaped like dist/cni-ignite: an executable that answers `version`, an _internal/ folder."""
    b = root / f"bundle-{tag}" / "cni-ignite"
    (b / "_internal" / "conf").mkdir(parents=True)
    exe = b / "cni-ignite"
    exe.write_text(f"#!/bin/sh\necho 0.1.0+{tag}\n")
    exe.chmod(0o755)
    (b / "_internal" / "payload").write_text(tag * 1000)
    (b / "_internal" / "conf" / "10-ignite.conflist").write_bytes(conflist)
    return b


def do_install(src: Path, tmp: Path, *, write_conf: bool = True, force: bool = False) -> str:
    out = io.StringIO()
    assert inst.install(str(src), str(tmp / "bin"), str(tmp / "net.d"), write_conf=write_conf, force=force,
                        out=out) == 0
    return out.getvalue()


def manifest(tmp: Path) -> dict[str, Any]:
    doc = json.loads((tmp / "bin" / inst.MANIFEST).read_text())
    assert isinstance(doc, dict)
    return doc


def test_install_into_empty_dirs_writes_links_bundle_and_conflist(tmp_path: Path) -> None:
    src = fake_bundle(tmp_path, "a")
    do_install(src.parent, tmp_path)  # --from dist/ (the folder holding cni-ignite/)
    bin_dir = tmp_path / "bin"
    man = manifest(tmp_path)
    gen = bin_dir / str(man["current"])
    assert gen.is_dir() and (gen / "_internal" / "payload").read_text() == "a" * 1000
    assert os.readlink(bin_dir / "cni-ignite.d") == gen.name
    for name in ("ignite-bridge", "ignite-ipam"):
        assert os.readlink(bin_dir / name) == "cni-ignite.d/cni-ignite"
        assert os.path.realpath(bin_dir / name) == str(gen / "cni-ignite")
    assert (tmp_path / "net.d" / "10-ignite.conflist").read_bytes() == CONFLIST
    assert man["version"] == "0.1.0+a"
    assert man["created_dirs"] == [str(bin_dir), str(tmp_path / "net.d")]
    assert not [p for p in os.listdir(bin_dir) if p.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize("existing", ["99-user.conf", "05-user.conflist", "net.json"])
def test_conflist_only_into_a_conf_dir_without_networks(tmp_path: Path, existing: str) -> None:
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / existing).write_text('{"name": "user"}')
    out = do_install(fake_bundle(tmp_path, "a"), tmp_path)
    assert not (tmp_path / "net.d" / "10-ignite.conflist").exists()
    assert "not written" in out
    assert manifest(tmp_path)["conflist"] is None
    assert (tmp_path / "net.d" / existing).read_text() == '{"name": "user"}'


def test_unrelated_files_do_not_count_as_networks(tmp_path: Path) -> None:
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / "README").write_text("x")
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    assert (tmp_path / "net.d" / "10-ignite.conflist").exists()


def test_upgrade_switches_both_plugins_and_keeps_one_previous_generation(tmp_path: Path) -> None:
    gens = []
    for tag in ("a", "b", "c"):
        do_install(fake_bundle(tmp_path, tag), tmp_path)
        gens.append(str(manifest(tmp_path)["current"]))
        assert (tmp_path / "bin" / "ignite-ipam").resolve().parent.name == gens[-1]
    bin_dir = tmp_path / "bin"
    assert not (bin_dir / gens[0]).exists()  # two installs old: removed
    assert (bin_dir / gens[1]).is_dir()  # the one replaced last: kept for calls still running from it
    assert manifest(tmp_path)["generations"] == [gens[2], gens[1]]
    assert manifest(tmp_path)["version"] == "0.1.0+c"


def test_reinstalling_the_same_bundle_copies_nothing(tmp_path: Path) -> None:
    src = fake_bundle(tmp_path, "a")
    do_install(src, tmp_path)
    first = manifest(tmp_path)
    assert "already present" in do_install(src, tmp_path)
    assert manifest(tmp_path)["generations"] == first["generations"]


def test_plugins_stay_executable_throughout_upgrades(tmp_path: Path) -> None:
    """A runtime may exec a plugin at any moment of an upgrade: the link must always resolve."""
    bundles = [fake_bundle(tmp_path, t) for t in ("a", "b", "c")]
    do_install(bundles[0], tmp_path)
    link = tmp_path / "bin" / "ignite-ipam"
    stop = threading.Event()
    misses: list[str] = []
    checks = [0]

    def reader() -> None:
        while not stop.is_set():
            target = os.path.realpath(link)
            if not os.access(target, os.X_OK):
                misses.append(target)
            checks[0] += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(12):
            do_install(bundles[i % 3], tmp_path)
    finally:
        stop.set()
        t.join()
    assert checks[0] > 100
    assert misses == []


def test_foreign_plugin_name_is_not_replaced_without_force(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ignite-bridge").write_text("someone else's")
    src = fake_bundle(tmp_path, "a")
    with pytest.raises(inst.InstallError, match="not installed by cni-ignite"):
        do_install(src, tmp_path)
    assert (tmp_path / "bin" / "ignite-bridge").read_text() == "someone else's"
    do_install(src, tmp_path, force=True)
    assert os.path.islink(tmp_path / "bin" / "ignite-bridge")


def test_uninstall_removes_exactly_what_install_put_there(tmp_path: Path) -> None:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    (bin_dir / "bridge").write_text("go plugin")
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    do_install(fake_bundle(tmp_path, "b"), tmp_path)
    (conf_dir / "99-user.conflist").write_text("{}")  # a network the user added after our install
    assert inst.uninstall(str(bin_dir), io.StringIO()) == 0
    assert sorted(os.listdir(bin_dir)) == ["bridge"]
    assert sorted(os.listdir(conf_dir)) == ["99-user.conflist"]


def test_uninstall_leaves_a_conflist_the_user_changed_and_dirs_not_empty(tmp_path: Path) -> None:
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    conflist = tmp_path / "net.d" / "10-ignite.conflist"
    conflist.write_text('{"name": "edited"}')
    out = io.StringIO()
    inst.uninstall(str(tmp_path / "bin"), out)
    assert conflist.read_text() == '{"name": "edited"}'
    assert "left alone" in out.getvalue()
    assert not (tmp_path / "bin").exists()  # created by install and empty now
    assert (tmp_path / "net.d").is_dir()


def test_our_unchanged_conflist_follows_upgrades(tmp_path: Path) -> None:
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    newer = CONFLIST.replace(b"0.4.0", b"1.0.0")
    do_install(fake_bundle(tmp_path, "b", conflist=newer), tmp_path)
    assert (tmp_path / "net.d" / "10-ignite.conflist").read_bytes() == newer


def test_uninstall_without_manifest_touches_nothing(tmp_path: Path) -> None:
    (tmp_path / "ignite-ipam").write_text("x")
    out = io.StringIO()
    assert inst.uninstall(str(tmp_path), out) == 0
    assert "nothing to uninstall" in out.getvalue()
    assert (tmp_path / "ignite-ipam").exists()


def test_status_shows_install_default_network_and_leases(tmp_path: Path) -> None:
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    (tmp_path / "net.d" / "10-ignite.conflist").unlink()
    conf = {"cniVersion": "0.4.0", "name": "ignite-cni-bridge", "plugins": [
        {"type": "ignite-bridge", "ipam": {"type": "ignite-ipam", "subnet": "10.61.0.0/16"}}]}
    (tmp_path / "net.d" / "10-ignite.conflist").write_text(json.dumps(conf))
    leases = tmp_path / "data" / "ignite-cni-bridge"
    leases.mkdir(parents=True)
    (leases / "10.61.0.7").write_bytes(b"ctr-1\r\neth0")
    out = io.StringIO()
    print_status(str(tmp_path / "bin"), str(tmp_path / "net.d"), str(tmp_path / "data"), str(tmp_path / "state"),
                 out)
    text = out.getvalue()
    assert "installed: cni-ignite 0.1.0+a" in text
    assert "ignite-ipam -> cni-ignite.d/cni-ignite  ok" in text
    assert "conflist:" in text and "changed by user" in text
    assert "default network: ignite-cni-bridge" in text
    assert "10.61.0.7" in text and "ctr-1" in text


def test_leftovers_of_an_interrupted_install_are_cleaned_only_ours(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    (bin_dir / ".cni-ignite-0123.d.tmp-99-1").mkdir(parents=True)
    (bin_dir / ".ignite-ipam.tmp-99-2").symlink_to("nowhere")
    (bin_dir / ".someone-elses.tmp-1").write_text("x")
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    assert sorted(p for p in os.listdir(bin_dir) if p.startswith(".")) == [".someone-elses.tmp-1"]


def test_concurrent_installs_serialise_and_leave_a_consistent_install(tmp_path: Path) -> None:
    bundles = [fake_bundle(tmp_path, t) for t in ("a", "b")]
    do_install(bundles[0], tmp_path)
    errors: list[BaseException] = []

    def worker(src: Path) -> None:
        try:
            for _ in range(4):
                do_install(src, tmp_path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(b,)) for b in bundles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    man = manifest(tmp_path)
    assert os.readlink(tmp_path / "bin" / "cni-ignite.d") == man["current"]
    gens = {p for p in os.listdir(tmp_path / "bin") if p.startswith("cni-ignite-")}
    assert gens == set(man["generations"])
    assert inst.uninstall(str(tmp_path / "bin"), io.StringIO()) == 0
    assert not (tmp_path / "bin").exists()


def test_status_names_the_subnet_file_of_a_multi_node_network(tmp_path: Path) -> None:
    (tmp_path / "net.d").mkdir()
    conf = {"cniVersion": "1.0.0", "name": "ignite-cni-multinode", "plugins": [
        {"type": "ignite-bridge", "ipam": {"type": "ignite-ipam", "subnetFile": "/run/flannel/subnet.env"}}]}
    (tmp_path / "net.d" / "30-ignite-multinode.conflist").write_text(json.dumps(conf))
    out = io.StringIO()
    print_status(str(tmp_path / "bin"), str(tmp_path / "net.d"), str(tmp_path / "data"), str(tmp_path / "state"),
                 out)
    assert "  ipam: ignite-ipam subnetFile /run/flannel/subnet.env\n" in out.getvalue()


def test_status_lists_attachments_with_rules_from_the_firewall_state(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract status expects: cni_ignite.firewall.state.list_attachments(state_dir, network) -> lines."""
    import sys
    import types

    seen: list[tuple[str, str]] = []

    def list_attachments(state_dir: str, network: str) -> list[str]:
        seen.append((state_dir, network))
        return ["ctr-1/eth0 10.61.0.7 masquerade, 1 port mapping"]

    monkeypatch.setitem(sys.modules, "cni_ignite.firewall.state", types.SimpleNamespace(
        list_attachments=list_attachments))
    (tmp_path / "net.d").mkdir()
    conf = {"cniVersion": "0.4.0", "name": "n1", "type": "ignite-bridge", "ipam": {"type": "ignite-ipam"}}
    (tmp_path / "net.d" / "50-n1.conf").write_text(json.dumps(conf))
    out = io.StringIO()
    print_status(str(tmp_path / "bin"), str(tmp_path / "net.d"), str(tmp_path / "data"), str(tmp_path / "state"), out)
    assert seen == [(str(tmp_path / "state"), "n1")]
    assert "attachments with rules" in out.getvalue()
    assert "ctr-1/eth0 10.61.0.7 masquerade" in out.getvalue()
    assert "installed: no" in out.getvalue()


def test_links_left_by_an_install_killed_before_its_manifest_are_recognised(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cni-ignite.d").symlink_to("cni-ignite-0123456789abcdef.d")
    (bin_dir / "ignite-ipam").symlink_to("cni-ignite.d/cni-ignite")
    do_install(fake_bundle(tmp_path, "a"), tmp_path)  # no --force needed
    assert (bin_dir / "ignite-ipam").resolve().parent.name == manifest(tmp_path)["current"]


def test_install_interrupted_while_switching_links_is_fully_uninstallable(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    real = inst.replace_symlink
    calls: list[str] = []

    def dies_after_one(target: str, link: str) -> None:
        if calls:
            raise KeyboardInterrupt  # as if killed between two renames
        calls.append(link)
        real(target, link)

    monkeypatch.setattr(inst, "replace_symlink", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        do_install(fake_bundle(tmp_path, "b"), tmp_path)
    monkeypatch.setattr(inst, "replace_symlink", real)
    assert len(manifest(tmp_path)["generations"]) == 2  # the new one is recorded
    inst.uninstall(str(tmp_path / "bin"), io.StringIO())
    assert not (tmp_path / "bin").exists()


def test_a_damaged_generation_is_not_replaced_under_a_reader(tmp_path: Path) -> None:
    src = fake_bundle(tmp_path, "a")
    do_install(src, tmp_path)
    damaged = str(manifest(tmp_path)["current"])
    (tmp_path / "bin" / damaged / "_internal" / "payload").write_text("bit rot")
    do_install(src, tmp_path)
    fresh = str(manifest(tmp_path)["current"])
    assert fresh != damaged
    assert (tmp_path / "bin" / fresh / "_internal" / "payload").read_text() == "a" * 1000
    assert (tmp_path / "bin" / damaged).is_dir()  # still usable by calls that started from it
    do_install(fake_bundle(tmp_path, "b"), tmp_path)
    assert not (tmp_path / "bin" / damaged).exists()


@pytest.mark.parametrize("kind", ["file", "foreign-link"])
def test_reinstall_does_not_replace_a_users_plugin_put_there_after_install(tmp_path: Path, kind: str) -> None:
    """The manifest says what install put there once; what is there now decides (as uninstall does)."""
    src = fake_bundle(tmp_path, "a")
    do_install(src, tmp_path)
    plugin = tmp_path / "bin" / "ignite-bridge"
    plugin.unlink()
    if kind == "file":
        plugin.write_text("#!/bin/sh\necho the user's own\n")
    else:
        plugin.symlink_to("/usr/local/lib/my-bridge")
    before = os.readlink(plugin) if kind != "file" else plugin.read_text()
    with pytest.raises(inst.InstallError, match="not installed by cni-ignite"):
        do_install(fake_bundle(tmp_path, "b"), tmp_path)
    assert (os.readlink(plugin) if kind != "file" else plugin.read_text()) == before
    do_install(src, tmp_path, force=True)  # --force still replaces it
    assert os.readlink(plugin) == "cni-ignite.d/cni-ignite"


def test_reinstall_replaces_our_own_link_even_if_it_was_retargeted_by_a_previous_install(tmp_path: Path) -> None:
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    do_install(fake_bundle(tmp_path, "b"), tmp_path)  # no --force needed: every name is ours
    assert (tmp_path / "bin" / "ignite-ipam").resolve().parent.name == manifest(tmp_path)["current"]


def test_install_provides_loopback_when_the_bin_dir_has_none(tmp_path: Path) -> None:
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    loopback = tmp_path / "bin" / "loopback"
    assert os.readlink(loopback) == "cni-ignite.d/cni-ignite"
    assert manifest(tmp_path)["links"]["loopback"] == "cni-ignite.d/cni-ignite"
    do_install(fake_bundle(tmp_path, "b"), tmp_path)  # an upgrade keeps it, pointing at the new bundle
    assert loopback.resolve().parent.name == manifest(tmp_path)["current"]
    inst.uninstall(str(tmp_path / "bin"), io.StringIO())
    assert not os.path.lexists(loopback)


@pytest.mark.parametrize("kind", ["file", "link", "dangling-link", "directory"])
def test_install_never_replaces_an_existing_loopback_even_with_force(tmp_path: Path, kind: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    loopback = bin_dir / "loopback"
    if kind == "file":
        loopback.write_text("go loopback")
    elif kind == "link":
        (bin_dir / "loopback-1.4").write_text("go loopback")
        loopback.symlink_to("loopback-1.4")
    elif kind == "dangling-link":
        loopback.symlink_to("/usr/lib/cni/not-there")
    else:
        loopback.mkdir()

    def unchanged() -> bool:
        if kind == "directory":
            return loopback.is_dir() and not loopback.is_symlink()
        if kind == "file":
            return not loopback.is_symlink() and loopback.read_text() == "go loopback"
        return os.readlink(loopback) == ("loopback-1.4" if kind == "link" else "/usr/lib/cni/not-there")

    out = do_install(fake_bundle(tmp_path, "a"), tmp_path, force=True)
    assert unchanged()
    assert "loopback" not in manifest(tmp_path)["links"]
    assert "loopback exists" in out
    do_install(fake_bundle(tmp_path, "b"), tmp_path)
    assert unchanged()
    inst.uninstall(str(bin_dir), io.StringIO())
    assert unchanged()


def test_our_loopback_replaced_by_the_user_is_left_to_the_user(tmp_path: Path) -> None:
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    loopback = tmp_path / "bin" / "loopback"
    loopback.unlink()
    loopback.write_text("distro loopback")  # e.g. a containernetworking-plugins package installed later
    do_install(fake_bundle(tmp_path, "b"), tmp_path)
    assert loopback.read_text() == "distro loopback"
    assert "loopback" not in manifest(tmp_path)["links"]
    out = io.StringIO()
    inst.uninstall(str(tmp_path / "bin"), out)
    assert loopback.read_text() == "distro loopback"
    assert sorted(os.listdir(tmp_path / "bin")) == ["loopback"]


def test_a_loopback_appearing_while_we_install_is_not_replaced(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A package may drop its loopback between our look and our link: the link is made exclusively."""
    (tmp_path / "bin").mkdir()
    real_lexists = os.path.lexists

    def racing_lexists(p: str) -> bool:
        seen = real_lexists(p)
        if os.path.basename(p) == "loopback" and not seen:
            (tmp_path / "bin" / "loopback").write_text("package's loopback")
        return seen

    monkeypatch.setattr(inst.os.path, "lexists", racing_lexists)
    do_install(fake_bundle(tmp_path, "a"), tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "bin" / "loopback").read_text() == "package's loopback"
    assert "loopback" not in manifest(tmp_path)["links"]


ROUTED = b'{"cniVersion": "1.0.0", "name": "ignite-cni-routed", "plugins": [{"type": "ignite-bridge"}]}\n'


def test_install_network_routed_writes_only_the_routed_conflist_and_uninstall_removes_it(tmp_path: Path) -> None:
    src = fake_bundle(tmp_path, "a")
    (src / "_internal" / "conf" / "20-ignite-routed.conflist").write_bytes(ROUTED)
    out = io.StringIO()
    assert inst.install(str(src), str(tmp_path / "bin"), str(tmp_path / "net.d"), write_conf=True, force=False,
                        out=out, network="routed") == 0
    assert "default network ignite-cni-routed" in out.getvalue()
    assert sorted(p.name for p in (tmp_path / "net.d").iterdir()) == ["20-ignite-routed.conflist"]
    assert (tmp_path / "net.d" / "20-ignite-routed.conflist").read_bytes() == ROUTED
    assert inst.uninstall(str(tmp_path / "bin"), io.StringIO()) == 0
    assert not (tmp_path / "net.d").exists()  # install made the folder, so uninstall removes it too


def test_the_shipped_routed_conflist_is_found_in_the_source_tree() -> None:
    assert json.loads(inst.bundle_conflist("/nonexistent", "20-ignite-routed.conflist"))["name"] == "ignite-cni-routed"
