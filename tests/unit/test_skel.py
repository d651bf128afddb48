"""The protocol skeleton driven with a fake world: env, stdin, stdout and stderr are plain objects."""

from __future__ import annotations

import io
import json
from ipaddress import ip_interface
from typing import Any

import pytest

from cni_ignite import skel
from cni_ignite.errors import CniError, TryAgainLater
from cni_ignite.result import IPConfig, Result
from cni_ignite.version import SUPPORTED

ADD_ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/opt/cni/bin"}
RESULT = Result(ips=(IPConfig(address=ip_interface("10.61.0.2/16")),))


class Calls:
    """Handlers that record what they were called with, and can be told to fail."""

    def __init__(self, fail: BaseException | None = None, result: Result = RESULT) -> None:
        self.seen: list[tuple[str, skel.CmdArgs]] = []
        self.fail = fail
        self.result = result

    def _do(self, verb: str, args: skel.CmdArgs) -> None:
        self.seen.append((verb, args))
        if self.fail is not None:
            raise self.fail

    def add(self, args: skel.CmdArgs) -> Result:
        self._do("ADD", args)
        return self.result

    def handlers(self) -> skel.Handlers:
        return skel.Handlers(add=self.add, delete=lambda a: self._do("DEL", a), check=lambda a: self._do("CHECK", a),
                             gc=lambda a: self._do("GC", a), status=lambda a: self._do("STATUS", a))


class Run:
    def __init__(self, rc: int, stdout: str, stderr: str, calls: Calls, internal: list[BaseException]) -> None:
        self.rc, self.stdout, self.stderr, self.calls, self.internal = rc, stdout, stderr, calls, internal

    @property
    def doc(self) -> dict[str, Any]:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, self.stdout
        out: dict[str, Any] = json.loads(lines[0])
        return out


def conf(version: str = "1.1.0", **kw: object) -> bytes:
    return json.dumps({"cniVersion": version, "name": "net1", "type": "ignite-ipam", **kw}).encode()


def run(env: dict[str, str], stdin: bytes | io.RawIOBase = b"", calls: Calls | None = None) -> Run:
    calls = calls or Calls()
    out, err = io.StringIO(), io.StringIO()
    internal: list[BaseException] = []
    stream = io.BytesIO(stdin) if isinstance(stdin, bytes) else stdin
    rc = skel.run(calls.handlers(), env=env, stdin=stream, stdout=out, stderr=err,  # type: ignore[arg-type]
                  about="test-plugin 1.2.3", on_internal_error=internal.append)
    return Run(rc, out.getvalue(), err.getvalue(), calls, internal)


def assert_error(r: Run, code: int, msg: str | None = None) -> dict[str, Any]:
    assert r.rc != 0
    doc = r.doc
    assert doc["code"] == code, doc
    assert set(doc) <= {"cniVersion", "code", "msg", "details"}
    if msg is not None:
        assert doc["msg"] == msg
    assert r.calls.seen == []
    return doc


# ------------------------------------------------------------------------------------ about, VERSION

def test_no_command_prints_about_text_to_stderr_and_succeeds() -> None:
    r = run({})
    assert (r.rc, r.stdout) == (0, "")
    assert r.stderr == f"test-plugin 1.2.3\nCNI protocol versions supported: {', '.join(SUPPORTED)}\n"


def test_empty_command_is_the_same_as_no_command() -> None:
    assert run({"CNI_COMMAND": ""}).stderr.startswith("test-plugin 1.2.3\n")


@pytest.mark.parametrize("version", SUPPORTED)
def test_version_echoes_the_requested_version(version: str) -> None:
    r = run({"CNI_COMMAND": "VERSION"}, json.dumps({"cniVersion": version}).encode())
    assert r.rc == 0
    assert r.doc == {"cniVersion": version, "supportedVersions": list(SUPPORTED)}
    assert r.calls.seen == []


@pytest.mark.parametrize("stdin", [b"", b"garbage", b'{"cniVersion":"9.9.9"}', b'{"cniVersion":1}', b"[]"])
def test_version_answers_with_the_newest_version_when_the_request_is_unusable(stdin: bytes) -> None:
    r = run({"CNI_COMMAND": "VERSION"}, stdin)
    assert (r.rc, r.doc) == (0, {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED)})


def test_version_needs_no_other_variable() -> None:
    assert run({"CNI_COMMAND": "VERSION"}).rc == 0


# --------------------------------------------------------------------------------------- environment

@pytest.mark.parametrize("command", ["FOO", "add", "DELETE", "version"])
def test_error_when_command_is_unknown(command: str) -> None:
    doc = assert_error(run({**ADD_ENV, "CNI_COMMAND": command}, conf()), 4, f"unknown CNI_COMMAND: {command}")
    assert doc["cniVersion"] == "1.1.0"


@pytest.mark.parametrize(("command", "missing"), [
    ("ADD", "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME"),
    ("CHECK", "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME"),
    ("DEL", "CNI_CONTAINERID,CNI_IFNAME"),
    ("GC", "CNI_PATH"),
])
def test_all_missing_variables_are_reported_at_once(command: str, missing: str) -> None:
    assert_error(run({"CNI_COMMAND": command}, conf()), 4, f"required env variables [{missing}] missing")


def test_empty_variable_counts_as_missing() -> None:
    r = run({**ADD_ENV, "CNI_CONTAINERID": "", "CNI_IFNAME": ""}, conf())
    assert_error(r, 4, "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing")


def test_del_needs_no_netns() -> None:
    env = {k: v for k, v in ADD_ENV.items() if k != "CNI_NETNS"}
    r = run({**env, "CNI_COMMAND": "DEL"}, conf())
    assert (r.rc, r.stdout) == (0, "")
    assert r.calls.seen[0][1].netns == ""


def test_status_needs_no_variable() -> None:
    r = run({"CNI_COMMAND": "STATUS"}, conf())
    assert (r.rc, r.stdout, [v for v, _ in r.calls.seen]) == (0, "", ["STATUS"])


def test_gc_needs_no_attachment_variables() -> None:
    r = run({"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"}, conf())
    assert (r.rc, [v for v, _ in r.calls.seen]) == (0, ["GC"])


@pytest.mark.parametrize("ifname", ["eth0", "a", "x" * 15, "veth-1.2_x", "\u00e9th0"])
def test_valid_interface_names(ifname: str) -> None:
    assert run({**ADD_ENV, "CNI_IFNAME": ifname}, conf()).rc == 0


@pytest.mark.parametrize("ifname", ["x" * 16, "\u00e9" * 8, ".", "..", "a/b", "eth:0", "eth 0", "eth\t0", "eth0\n",
                                    "eth\u00a00"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_error_when_interface_name_is_invalid(ifname: str, command: str) -> None:
    doc = assert_error(run({**ADD_ENV, "CNI_COMMAND": command, "CNI_IFNAME": ifname}, conf()), 4)
    assert doc["msg"].startswith("CNI_IFNAME")


@pytest.mark.parametrize("cid", ["a/b", "..", "../../etc", ".x", "-x", "_x", "a b", "abc\n", "a\\b", "a:b", "\u00e9"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_error_when_container_id_has_invalid_characters(cid: str, command: str) -> None:
    doc = assert_error(run({**ADD_ENV, "CNI_COMMAND": command, "CNI_CONTAINERID": cid}, conf()), 4,
                       "invalid characters in containerID")
    assert doc["details"] == cid


@pytest.mark.parametrize("cid", ["c", "0abc", "A.b-c_d", "f" * 64])
def test_valid_container_ids(cid: str) -> None:
    r = run({**ADD_ENV, "CNI_CONTAINERID": cid}, conf())
    assert r.rc == 0
    assert r.calls.seen[0][1].container_id == cid


def test_cmd_args_carry_the_environment_and_stdin() -> None:
    stdin = conf("0.4.0", ipam={"type": "x"})
    r = run({**ADD_ENV, "CNI_ARGS": "IgnoreUnknown=1;IP=10.0.0.2"}, stdin)
    args = r.calls.seen[0][1]
    assert (args.command, args.container_id, args.netns, args.ifname, args.path) == (
        "ADD", "c1", "/var/run/netns/x", "eth0", "/opt/cni/bin")
    assert args.args == "IgnoreUnknown=1;IP=10.0.0.2"  # parsed by the plugin, which knows its keys
    assert args.stdin == stdin
    assert args.conf.cni_version == "0.4.0"
    assert args.conf.raw["ipam"] == {"type": "x"}


# --------------------------------------------------------------------------------------------- stdin

class BrokenStdin(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise OSError(5, "Input/output error")


def test_error_when_stdin_cannot_be_read() -> None:
    assert_error(run(ADD_ENV, BrokenStdin()), 5, "error reading from stdin")


@pytest.mark.parametrize("stdin", [b"", b"{not json", b"[1]", b"\xff"])
def test_error_when_stdin_is_not_a_json_object(stdin: bytes) -> None:
    assert_error(run(ADD_ENV, stdin), 6)


def test_error_when_network_name_is_missing() -> None:
    assert_error(run(ADD_ENV, b'{"cniVersion":"1.0.0"}'), 7, "missing network name")


def test_error_when_network_name_tries_path_traversal() -> None:
    assert_error(run(ADD_ENV, conf(name="../x")), 7, "invalid network name")


def test_error_when_cni_version_is_unsupported() -> None:
    doc = assert_error(run(ADD_ENV, conf("9.9.9")), 1, "incompatible CNI versions")
    assert doc["details"] == f'config is "9.9.9", plugin supports {list(SUPPORTED)}'


def test_missing_cni_version_is_0_1_0() -> None:
    r = run(ADD_ENV, b'{"name":"net1","type":"ignite-ipam"}')
    assert r.doc == {"cniVersion": "0.1.0", "ip4": {"ip": "10.61.0.2/16"}, "dns": {}}


def test_missing_type_is_refused_with_7() -> None:
    r = run(ADD_ENV, b'{"cniVersion":"1.0.0","name":"net1"}')
    assert (r.rc, r.doc["code"], r.doc["msg"]) == (1, 7, "missing type")


# ---------------------------------------------------------------------------------------- verb gates

@pytest.mark.parametrize(("command", "version"), [
    ("CHECK", "0.1.0"), ("CHECK", "0.3.1"), ("GC", "0.4.0"), ("GC", "1.0.0"), ("STATUS", "1.0.0"), ("STATUS", "0.3.0"),
])
def test_verb_is_refused_below_its_spec_version(command: str, version: str) -> None:
    assert_error(run({**ADD_ENV, "CNI_COMMAND": command}, conf(version)), 1,
                 f"config version does not allow {command}")


@pytest.mark.parametrize(("command", "version"), [("CHECK", "0.4.0"), ("CHECK", "1.0.0"), ("GC", "1.1.0"),
                                                  ("STATUS", "1.1.0")])
def test_verb_is_dispatched_from_its_spec_version(command: str, version: str) -> None:
    r = run({**ADD_ENV, "CNI_COMMAND": command}, conf(version))
    assert (r.rc, r.stdout) == (0, "")
    assert [v for v, _ in r.calls.seen] == [command]


# ------------------------------------------------------------------------------------------- results

@pytest.mark.parametrize("version", SUPPORTED)
def test_add_prints_the_result_in_the_config_version(version: str) -> None:
    r = run(ADD_ENV, conf(version))
    assert r.rc == 0
    assert r.doc["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert r.doc["ip4"] == {"ip": "10.61.0.2/16"}
    elif version.startswith("0."):
        assert r.doc["ips"] == [{"version": "4", "address": "10.61.0.2/16"}]
    else:
        assert r.doc["ips"] == [{"address": "10.61.0.2/16"}]


def test_error_when_0_2_0_add_result_has_no_ip() -> None:
    r = run(ADD_ENV, conf("0.2.0"), Calls(result=Result()))
    assert r.rc != 0
    assert r.doc == {"cniVersion": "0.2.0", "code": 1, "msg": "cannot convert: no valid IP addresses",
                     "details": "a 0.2.0 result needs an IP"}


@pytest.mark.parametrize("command", ["DEL", "CHECK", "GC", "STATUS"])
def test_verbs_other_than_add_print_nothing_on_success(command: str) -> None:
    r = run({**ADD_ENV, "CNI_COMMAND": command}, conf())
    assert (r.rc, r.stdout) == (0, "")


# -------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
def test_handler_error_is_printed_with_its_code_in_the_config_version(command: str) -> None:
    r = run({**ADD_ENV, "CNI_COMMAND": command}, conf("1.1.0"), Calls(fail=TryAgainLater("busy", "lock held")))
    assert r.rc != 0
    assert r.doc == {"cniVersion": "1.1.0", "code": 11, "msg": "busy", "details": "lock held"}
    assert r.internal == []


def test_error_object_uses_the_config_version() -> None:
    r = run(ADD_ENV, conf("0.3.1"), Calls(fail=CniError("nope")))
    assert r.doc == {"cniVersion": "0.3.1", "code": 999, "msg": "nope"}


def test_foreign_exception_becomes_999_without_a_traceback_on_stdout() -> None:
    boom = ZeroDivisionError("division by zero")
    r = run(ADD_ENV, conf(), Calls(fail=boom))
    assert r.rc != 0
    assert r.doc == {"cniVersion": "1.1.0", "code": 999, "msg": "internal error: ZeroDivisionError",
                     "details": "division by zero"}
    assert "Traceback" not in r.stdout
    assert r.internal == [boom]  # the traceback is the caller's to log, on stderr


@pytest.mark.parametrize(("exc", "code"), [
    (OSError(5, "Input/output error"), 5),  # EIO reading a lazily imported .pyc (no file name), closing an fd
    (PermissionError(13, "Permission denied"), 5),
    (OSError(12, "Cannot allocate memory"), 11),
    (OSError(24, "Too many open files"), 11),
])
def test_an_unexpected_os_error_is_an_io_failure_without_a_traceback(exc: OSError, code: int) -> None:
    r = run(ADD_ENV, conf(), Calls(fail=exc))
    assert r.rc == 1 and r.doc["code"] == code and str(exc.strerror) in r.doc["msg"]
    assert r.internal == []  # no traceback: the kernel refused, not a bug of ours


def test_foreign_exception_from_a_key_error_is_still_one_json_line() -> None:
    r = run({**ADD_ENV, "CNI_COMMAND": "DEL"}, conf(), Calls(fail=KeyError("x\ny")))
    assert r.doc["code"] == 999
    assert r.stdout.count("\n") == 1
