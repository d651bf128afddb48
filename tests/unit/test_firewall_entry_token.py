"""The port registry's entry check (firewall.state._entry_token) reads entries without a regex (no `re` on a
DEL) and accepts exactly the language of the regex it replaced."""

import random
import re

from freshpy import run_fresh

from cni_ignite.firewall import state

OLD = re.compile(r"(tcp|udp|sctp)_([1-9][0-9]{0,4})/([0-9a-f.:]{2,45}|any[46]?)\Z")


def old_token(entry: str) -> str:
    m = OLD.match(entry)
    if m is None or int(m[2]) > 65535:
        return ""
    try:
        state._family(m[3])
    except ValueError:
        return ""
    return m[3]


EDGES = [
    "tcp_80/any", "udp_65535/any4", "sctp_1/any6", "tcp_65536/any", "tcp_0/any", "tcp_080/any", "tcp_/any",
    "tcp_80/", "tcp_80", "tcp80/any", "icmp_80/any", "tcp_80/10.0.0.1", "tcp_80/10.0.0.0/8", "tcp_80/::1",
    "tcp_80/fe80::1", "tcp_80/10.0.0.1\n", "tcp_80/any\n", "tcp_\uff180/any", "tcp_80/ANY", "tcp_80/anyx",
    "tcp_123456/any", "tcp_80/" + "1" * 46, "tcp_80/1", "udp_53/127.0.0.1", "tcp_ 80/any", "tcp_+80/any",
]


def test_the_entry_check_accepts_exactly_what_the_old_regex_accepted():
    rng = random.Random(7)
    alphabet = "tcpudsa_/0123456789.:fany46\n \uff18"
    samples = EDGES + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(30000)]
    samples += [f"{rng.choice(['tcp', 'udp', 'sctp', 'x'])}_{rng.randint(0, 70000)}/"
                f"{rng.choice(['any', 'any4', '10.1.2.3', '::1', 'fd00::/64', '1.2.3.4/32', 'zz'])}"
                for _ in range(5000)]
    for entry in samples:
        assert state._entry_token(entry) == old_token(entry), entry


def test_reading_a_record_with_port_claims_imports_no_regex():
    out = run_fresh("from cni_ignite.firewall import state\n"
                    "assert state._entry_token('tcp_8080/any') == 'any'; print('re' in sys.modules)")
    assert out.strip() == "False"
