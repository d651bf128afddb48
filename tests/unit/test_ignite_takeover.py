"""`install --take-over-ignite`: Ignite's own default 10-ignite.conflist (exactly what weaveworks/ignite writes,
tests/unit/fixtures/) is replaced by ours, backed up and restored by uninstall; anything else is refused."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_install import CONFLIST, do_install, fake_bundle, manifest

from cni_ignite import install as inst
from cni_ignite.status import print_status

FIXTURES = Path(__file__).parent / "fixtures"
IGNITE = (FIXTURES / "ignite-default-10-ignite.conflist").read_bytes()  # pkg/network/cni/cni.go, v0.6.1..v0.10.0
IGNITE_V060 = (FIXTURES / "ignite-v0.6.0-10-ignite.conflist").read_bytes()


def ignite_host(tmp: Path, data: bytes = IGNITE, mode: int = 0o1204) -> Path:
    """/etc/cni/net.d as Ignite leaves it (ioutil.WriteFile(..., 644): mode 644 decimal = 0o1204)."""
    conf_dir = tmp / "net.d"
    conf_dir.mkdir()
    path = conf_dir / "10-ignite.conflist"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def take_over(src: Path, tmp: Path) -> str:
    out = io.StringIO()
    assert inst.install(str(src), str(tmp / "bin"), str(tmp / "net.d"), write_conf=True, force=False, out=out,
                        take_over_ignite=True) == 0
    return out.getvalue()


def test_fixture_is_ignite_default_and_matches_the_recorded_constant() -> None:
    assert b"\t\t\t\"promiscMode\": true," in IGNITE  # the bytes Go's fmt.Sprintf writes: tabs, final newline
    assert IGNITE.endswith(b"}\n")
    assert json.loads(IGNITE) == inst.IGNITE_DEFAULT
    assert inst.ignite_default_difference(IGNITE) is None


def test_ignite_default_is_recognised_regardless_of_whitespace_and_key_order() -> None:
    doc = json.loads(IGNITE)
    doc["plugins"][0] = dict(reversed(list(doc["plugins"][0].items())))
    assert inst.ignite_default_difference(json.dumps(dict(reversed(list(doc.items())))).encode()) is None
    assert inst.ignite_default_difference(json.dumps(doc, separators=(",", ":")).encode()) is None


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d["plugins"][0]["ipam"].update(subnet="10.62.0.0/16"), "plugins[0].ipam.subnet"),
    (lambda d: d["plugins"][0].update(isGateway=1), "plugins[0].isGateway"),  # 1 is not true
    (lambda d: d["plugins"][0].update(mtu=1400), "'mtu' not in Ignite's default"),
    (lambda d: d["plugins"].append({"type": "bandwidth"}), "plugins: 4 entries"),
    (lambda d: d["plugins"][2].update(type="isolation"), "plugins[2].type"),
    (lambda d: d.pop("cniVersion"), "'cniVersion' missing"),
    (lambda d: d.update(name="my-net"), "name"),
])
def test_modified_ignite_conflist_is_recognised_as_the_users(change: object, where: str) -> None:
    doc = json.loads(IGNITE)
    change(doc)  # type: ignore[operator]
    diff = inst.ignite_default_difference(json.dumps(doc).encode())
    assert diff is not None and where in diff


def test_take_over_replaces_ignite_default_keeps_backup_and_uninstall_restores_it(tmp_path: Path) -> None:
    path = ignite_host(tmp_path)
    out = take_over(fake_bundle(tmp_path, "a"), tmp_path)
    assert "replaced by cni-ignite's" in out
    backup = tmp_path / "net.d" / "10-ignite.conflist.cni-ignite-backup"
    assert path.read_bytes() == CONFLIST
    assert backup.read_bytes() == IGNITE and backup.stat().st_mode & 0o7777 == 0o1204
    assert sorted(os.listdir(tmp_path / "net.d")) == ["10-ignite.conflist", "10-ignite.conflist.cni-ignite-backup"]
    assert not backup.name.endswith(inst.CONF_EXTENSIONS)  # libcni does not read the backup
    man = manifest(tmp_path)
    assert man["conflist"] == {"path": str(path), "sha256": inst.sha256(CONFLIST)}
    assert man["ignite_backup"] == {"path": str(path), "backup": str(backup), "sha256": inst.sha256(IGNITE)}

    # An upgrade keeps the backup record and updates our conflist.
    take_over(fake_bundle(tmp_path, "b", conflist=CONFLIST + b" "), tmp_path)
    assert path.read_bytes() == CONFLIST + b" "
    assert manifest(tmp_path)["ignite_backup"]["backup"] == str(backup)

    out = io.StringIO()
    inst.uninstall(str(tmp_path / "bin"), out)
    assert "Ignite's default network restored" in out.getvalue()
    assert path.read_bytes() == IGNITE and path.stat().st_mode & 0o7777 == 0o1204
    assert os.listdir(tmp_path / "net.d") == ["10-ignite.conflist"]


def test_status_names_the_taken_over_ignite_backup(tmp_path: Path) -> None:
    ignite_host(tmp_path)
    take_over(fake_bundle(tmp_path, "a"), tmp_path)
    out = io.StringIO()
    print_status(str(tmp_path / "bin"), str(tmp_path / "net.d"), str(tmp_path / "data"), str(tmp_path / "state"), out)
    backup = tmp_path / "net.d" / "10-ignite.conflist.cni-ignite-backup"
    assert f"took over Ignite's default network: original {backup} (kept, restored by uninstall)" in out.getvalue()


def test_take_over_refuses_a_modified_ignite_conflist_with_a_clear_message_and_changes_nothing(
        tmp_path: Path) -> None:
    mine = IGNITE.replace(b"10.61.0.0/16", b"10.99.0.0/16")
    path = ignite_host(tmp_path, mine, 0o644)
    with pytest.raises(inst.InstallError) as exc:
        take_over(fake_bundle(tmp_path, "a"), tmp_path)
    assert exc.value.msg == (f"{path} is not Ignite's default network (plugins[0].ipam.subnet: \"10.99.0.0/16\" "
                             "(expected \"10.61.0.0/16\")): it is yours and is left alone")
    assert "without --take-over-ignite" in str(exc.value.details)
    assert path.read_bytes() == mine
    assert os.listdir(tmp_path / "net.d") == ["10-ignite.conflist"]
    assert not (tmp_path / "bin").exists()  # refused before anything was installed


def test_take_over_refuses_ignite_v060_default_naming_why(tmp_path: Path) -> None:
    ignite_host(tmp_path, IGNITE_V060)
    with pytest.raises(inst.InstallError, match=r"Ignite v0\.6\.0's default network"):
        take_over(fake_bundle(tmp_path, "a"), tmp_path)


def test_take_over_refuses_to_overwrite_a_foreign_backup(tmp_path: Path) -> None:
    ignite_host(tmp_path)
    (tmp_path / "net.d" / "10-ignite.conflist.cni-ignite-backup").write_text("someone's notes")
    with pytest.raises(inst.InstallError, match="exists and is not Ignite's default network"):
        take_over(fake_bundle(tmp_path, "a"), tmp_path)
    assert (tmp_path / "net.d" / "10-ignite.conflist.cni-ignite-backup").read_text() == "someone's notes"


def test_take_over_without_ignite_conflist_installs_as_usual(tmp_path: Path) -> None:
    take_over(fake_bundle(tmp_path, "a"), tmp_path)
    assert (tmp_path / "net.d" / "10-ignite.conflist").read_bytes() == CONFLIST
    assert manifest(tmp_path)["ignite_backup"] is None


def test_take_over_with_no_conf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(inst.InstallError, match="cannot go with --no-conf"):
        inst.install(str(fake_bundle(tmp_path, "a")), str(tmp_path / "bin"), str(tmp_path / "net.d"),
                     write_conf=False, force=False, out=io.StringIO(), take_over_ignite=True)


def test_install_without_take_over_leaves_ignite_default_and_names_the_option(tmp_path: Path) -> None:
    path = ignite_host(tmp_path)
    out = do_install(fake_bundle(tmp_path, "a"), tmp_path)
    assert "install --take-over-ignite replaces it" in out
    assert path.read_bytes() == IGNITE


def test_uninstall_keeps_the_users_later_edit_and_the_backup(tmp_path: Path) -> None:
    path = ignite_host(tmp_path)
    take_over(fake_bundle(tmp_path, "a"), tmp_path)
    path.write_text('{"name": "edited by the user"}')
    out = io.StringIO()
    inst.uninstall(str(tmp_path / "bin"), out)
    assert "Ignite's original is kept as" in out.getvalue()
    assert path.read_text() == '{"name": "edited by the user"}'
    assert (tmp_path / "net.d" / "10-ignite.conflist.cni-ignite-backup").read_bytes() == IGNITE


def test_uninstall_restores_ignite_default_where_the_user_removed_ours(tmp_path: Path) -> None:
    path = ignite_host(tmp_path)
    take_over(fake_bundle(tmp_path, "a"), tmp_path)
    path.unlink()
    inst.uninstall(str(tmp_path / "bin"), io.StringIO())
    assert path.read_bytes() == IGNITE
    assert os.listdir(tmp_path / "net.d") == ["10-ignite.conflist"]


def test_take_over_ignite_option_of_the_admin_command(tmp_path: Path) -> None:
    path = ignite_host(tmp_path, IGNITE.replace(b'"ipMasq": true', b'"ipMasq": false'))
    res = subprocess.run([sys.executable, "-m", "cni_ignite.cli", "admin", "install", "--from",
                          str(fake_bundle(tmp_path, "a")), "--bin-dir", str(tmp_path / "bin"), "--conf-dir",
                          str(tmp_path / "net.d"), "--take-over-ignite"], capture_output=True, timeout=60,
                         check=False)
    assert res.returncode == 1
    assert "cni-ignite install: " in res.stderr.decode()
    assert "plugins[0].ipMasq: false (expected true)" in res.stderr.decode()
    assert b'"ipMasq": false' in path.read_bytes()
