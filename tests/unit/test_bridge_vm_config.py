"""VM-mode configuration limits, checked at parse time (code 7) so ADD changes nothing on bad values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cni_ignite.bridge.config import attachment_tag, parse_bridge_config
from cni_ignite.errors import InvalidConfig
from cni_ignite.netconf import parse_netconf


def conf(**extra: Any) -> Any:
    return parse_netconf(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "ignite-bridge", **extra}).encode())


@pytest.mark.parametrize("owner", [0, 2**31, 2**32 - 2])
def test_tap_owner_and_group_accept_every_valid_uid(owner: int) -> None:
    vm = parse_bridge_config(conf(vm={"mode": "tc-redirect", "uid": owner, "gid": owner}), "").vm
    assert (vm.uid, vm.gid) == (owner, owner)
    assert parse_bridge_config(conf(vm={"mode": "tc-redirect"}), f"TC_REDIRECT_TAP_UID={owner}").vm.uid == owner


@pytest.mark.parametrize("args", ["TC_REDIRECT_TAP_UID=4294967295", "TC_REDIRECT_TAP_GID=4294967296",
                                  "TC_REDIRECT_TAP_UID=\u0663", "TC_REDIRECT_TAP_GID=-5"])
def test_error_when_a_tap_id_from_cni_args_is_out_of_range(args: str) -> None:
    with pytest.raises(InvalidConfig):
        parse_bridge_config(conf(vm={"mode": "tc-redirect"}), args)


@pytest.mark.parametrize("owner", [-2, 2**32 - 1, 2**63])
def test_error_when_a_tap_id_in_the_config_is_out_of_range(owner: int) -> None:
    with pytest.raises(InvalidConfig):
        parse_bridge_config(conf(vm={"mode": "tc-redirect", "gid": owner}), "")


def test_error_when_vm_mode_asks_for_an_mtu_above_the_tap_maximum() -> None:
    assert parse_bridge_config(conf(mtu=65521, vm={"mode": "bridge"}), "").mtu == 65521
    assert parse_bridge_config(conf(mtu=65535), "").mtu == 65535  # without a tap the veth limit applies
    with pytest.raises(InvalidConfig, match="VM mode"):
        parse_bridge_config(conf(mtu=65522, vm={"mode": "tc-redirect"}), "")


def test_attachment_tag_fits_an_interface_alias_and_differs_per_interface() -> None:
    a, b = attachment_tag("n", "c1", "eth0"), attachment_tag("n", "c1", "eth1")
    assert a != b and a.startswith("cni-ignite:") and len(a) < 256
