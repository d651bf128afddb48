"""etcd over TLS with client-certificate auth, as a production etcd runs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from multinode import PREFIX, Pki, wait_until

if TYPE_CHECKING:
    from multinode import Cluster

pytestmark = pytest.mark.privileged


def test_agents_lease_and_route_over_tls_with_client_certificates(cluster: Cluster) -> None:
    cluster.etcd.stop()
    pki = Pki(cluster.tmp / "pki")
    cluster.etcd.use_tls(pki)
    cluster.etcd.start()
    tls = ("--etcd-cafile", str(pki.ca), "--etcd-certfile", str(pki.client_cert), "--etcd-keyfile",
           str(pki.client_key))
    h1, h2, h3 = cluster.add_host(), cluster.add_host(), cluster.add_host()
    h1.start_agent(*tls)
    h2.start_agent(*tls)
    h3.start_agent("--etcd-cafile", str(pki.ca))  # no client certificate: etcd refuses it
    s1, s2 = h1.wait_subnet(), h2.wait_subnet()
    wait_until("routes both ways", lambda: str(s2.subnet) in h1.routes() and str(s1.subnet) in h2.routes())
    leases = cluster.etcd.subnets()
    assert {v["PublicIP"] for v in leases.values()} == {h1.ip, h2.ip}
    assert json.loads(cluster.etcd.get_prefix(f"{PREFIX}/config")[f"{PREFIX}/config"])["Backend"]["Type"] == "vxlan"
    wait_until("h3 to report the refusal", lambda: "retrying" in h3.log.read_text())
    assert not h3.subnet_file.exists()
    assert h3.stop_agent() == 0
