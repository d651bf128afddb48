from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest
from flannelbin import flannel_cni
from multinode import Cluster

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from nsutil import Namespaces


@pytest.fixture
def cluster(netns: Namespaces, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """An underlay + etcd (started) in throwaway namespaces; add hosts with cluster.add_host(). Every process
    started is stopped by PID and every namespace deleted afterwards; the logs are printed for a failed test."""
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        pytest.skip("needs etcd and etcdctl (apt-get install etcd-server etcd-client)")
    c = Cluster(netns, tmp_path, backend=getattr(request, "param", "vxlan"))
    try:
        c.etcd.start()
        yield c
    finally:
        logs = c.logs()
        c.stop()
        print(logs)


@pytest.fixture(scope="module")
def flannel_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """flannel's CNI plugin (flannelbin.flannel_cni), or None."""
    return flannel_cni(tmp_path_factory.mktemp("flannel-cni"))
