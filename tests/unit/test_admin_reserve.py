"""`cni-ignite reserve / unreserve / leases` on a sticky network: the operator's view of stable identity."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from typing import TYPE_CHECKING

from ipamenv import NET, Ipam

from cni_ignite import admin

if TYPE_CHECKING:
    from pathlib import Path

K8S = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME={}"


def _network(tmp_path: Path) -> tuple[Ipam, dict, Path]:
    ipam = Ipam(tmp_path / "data")
    conf = ipam.conf({"subnet": "10.1.0.0/29", "sticky": {"hold": "1h"}})
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-net.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": NET, "plugins": [{"type": "ignite-ipam", "ipam": conf["ipam"]}]}))
    return ipam, conf, conf_dir


def _admin(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = admin.main(list(argv))
    return rc, out.getvalue()


def test_a_reserved_address_goes_to_its_owner_and_never_to_another(tmp_path: Path) -> None:
    ipam, conf, conf_dir = _network(tmp_path)
    rc, out = _admin("reserve", "--conf-dir", str(conf_dir), "--mac", "02:00:00:00:00:05", NET, "k8s:ns/db", "10.1.0.2")
    assert (rc, out) == (0, "reserved 10.1.0.2 for k8s:ns/db/eth0 mac 02:00:00:00:00:05\n")
    assert ipam("ADD", conf, cid="web-1", args=K8S.format("web")).ips == ["10.1.0.3/29"]
    assert ipam("ADD", conf, cid="db-1", args=K8S.format("db")).ips == ["10.1.0.2/29"]
    rc, table = _admin("leases", "--data-dir", str(ipam.data_dir), NET)
    lines = {line.split()[0]: line.split() for line in table.splitlines()[2:] if line.startswith("  10.")}
    assert lines["10.1.0.2"][1:] == ["in", "use", "(reserved)", "k8s:ns/db", "eth0", "db-1", "02:00:00:00:00:05"]
    assert lines["10.1.0.3"][1:] == ["in", "use", "k8s:ns/web", "eth0", "web-1", "-"]
    ipam("DEL", conf, cid="web-1", args=K8S.format("web"))
    rc, table = _admin("leases", "--data-dir", str(ipam.data_dir), NET)
    held = [line for line in table.splitlines() if line.split()[:3] == ["10.1.0.3", "held", "until"]]
    assert len(held) == 1 and "k8s:ns/web" in held[0]


def test_reserving_outside_the_ranges_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    _, _, conf_dir = _network(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    rc, out = _admin("reserve", "--conf-dir", str(conf_dir), NET, "vm-1", "10.9.0.2")
    assert rc == 1 and out == ""
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_unreserve_leaves_the_address_remembered_and_others_get_it_when_the_range_is_full(tmp_path: Path) -> None:
    ipam, conf, conf_dir = _network(tmp_path)
    _admin("reserve", "--conf-dir", str(conf_dir), NET, "vm-1", "10.1.0.2")
    rc, out = _admin("unreserve", "--conf-dir", str(conf_dir), NET, "vm-1")
    assert (rc, out) == (0, "unreserved 10.1.0.2\n")
    _, table = _admin("leases", "--data-dir", str(ipam.data_dir), NET)
    assert any(line.split()[:3] == ["10.1.0.2", "remembered", "vm-1"] for line in table.splitlines())
    got = [ipam("ADD", conf, cid=f"other-{i}").ips[0] for i in range(5)]
    assert got == ["10.1.0.3/29", "10.1.0.4/29", "10.1.0.5/29", "10.1.0.6/29", "10.1.0.2/29"]
