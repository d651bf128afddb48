"""Every DEL decodes its attachment's state record, whose config holds (empty) conditions lists: parsing them
must not import ``re`` (with ``enum``, ~9 ms of imports in a plugin process, where neither is loaded). Bad
tokens are still refused."""

from __future__ import annotations

import pytest
from freshpy import run_fresh

from cni_ignite.errors import InvalidConfig
from cni_ignite.firewall.base import parse_firewall_config


def test_conditions_are_checked_without_importing_re() -> None:
    code = ("from cni_ignite.firewall.base import parse_firewall_config\n"
            "parse_firewall_config({'conditionsV4': [], 'conditionsV6': ['-i', 'eth0'], 'stateDir': '/x'})\n"
            "print('re' in sys.modules, 'enum' in sys.modules)\n")
    out = run_fresh(code)
    assert out.split() == ["False", "False"], out


@pytest.mark.parametrize("token", ["eth0;", "#x", "a\nb", "\x7f", "tab\there", "\x00"])
def test_a_bad_condition_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidConfig, match="control characters"):
        parse_firewall_config({"conditionsV4": ["-i", token], "stateDir": "/x"})


def test_good_condition_tokens_pass() -> None:
    cfg = parse_firewall_config({"conditionsV4": ["-i", "eth0", "-s", "10.0.0.0/8"], "conditionsV6": ["-i", "x"],
                                 "stateDir": "/x"})
    assert cfg.conditions_v4 == ("-i", "eth0", "-s", "10.0.0.0/8") and cfg.conditions_v6 == ("-i", "x")
