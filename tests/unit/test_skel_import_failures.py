"""An ImportError while a plugin loads its modules (the handlers' factory, or a lazy import inside a verb)
is the file system refusing a module, not a bug of the call: code 5 "could not load its modules", no
traceback. Found by the strace fault sweep (EACCES/ENOSPC on the openat of fcntl's .so answered 999)."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import pytest

from cni_ignite import skel

if TYPE_CHECKING:
    from collections.abc import Callable

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/opt/cni/bin"}
CONF = json.dumps({"cniVersion": "1.1.0", "name": "net1", "type": "ignite-ipam"}).encode()
SO = "/usr/lib/python3.11/lib-dynload/fcntl.cpython-311-x86_64-linux-gnu.so"


def dlopen_failure(reason: str) -> ImportError:
    return ImportError(f"{SO}: cannot open shared object file: {reason}", name="fcntl", path=SO)


# What the import system raises when a module file or a package folder cannot be read.
LOAD_FAILURES: dict[str, ImportError] = {
    "dlopen EACCES": dlopen_failure("Permission denied"),
    "dlopen ENOSPC": dlopen_failure("No space left on device"),
    "dlopen EIO": dlopen_failure("Input/output error"),
    # the finder could not list cni_ignite/ipam/: it takes the folder for an empty one
    "own module not found": ModuleNotFoundError("No module named 'cni_ignite.ipam.store'",
                                                name="cni_ignite.ipam.store"),
    # `from . import sticky` when the package folder could not be listed
    "own submodule name": ImportError("cannot import name 'sticky' from 'cni_ignite.ipam'", name="cni_ignite.ipam",
                                      path="/x/cni_ignite/ipam/__init__.py"),
    "stdlib module not found": ModuleNotFoundError("No module named 'ipaddress'", name="ipaddress"),
}


def handlers(fail: BaseException, *, lazy: bool) -> Callable[[], skel.Handlers]:
    """A handlers factory whose import fails (lazy False), or whose ADD's lazy import fails (lazy True)."""
    def verb(_: skel.CmdArgs) -> Any:
        raise fail

    def factory() -> skel.Handlers:
        if not lazy:
            raise fail
        return skel.Handlers(add=verb, delete=verb, check=verb, gc=verb, status=verb)
    return factory


def call(factory: Callable[[], skel.Handlers]) -> tuple[int, dict[str, Any], str, list[BaseException]]:
    out, err = io.StringIO(), io.StringIO()
    internal: list[BaseException] = []
    rc = skel.run(factory, env=ENV, stdin=io.BytesIO(CONF), stdout=out, stderr=err, about="t",
                  on_internal_error=internal.append)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, out.getvalue()
    return rc, json.loads(lines[0]), err.getvalue(), internal


@pytest.mark.parametrize("lazy", [False, True], ids=["loading handlers", "lazy import in a verb"])
@pytest.mark.parametrize("name", list(LOAD_FAILURES))
def test_an_import_the_file_system_refused_is_an_io_failure(name: str, lazy: bool) -> None:
    exc = LOAD_FAILURES[name]
    rc, doc, _, internal = call(handlers(exc, lazy=lazy))
    assert rc == 1
    assert doc["code"] == 5, doc
    assert doc["msg"] == "cni-ignite could not load its modules"
    assert str(exc) in doc["details"]
    assert internal == []  # no traceback: not an internal error


@pytest.mark.parametrize("lazy", [False, True], ids=["loading handlers", "lazy import in a verb"])
def test_a_missing_third_party_module_stays_an_internal_error(lazy: bool) -> None:
    exc = ModuleNotFoundError("No module named 'yaml'", name="yaml")
    rc, doc, _, internal = call(handlers(exc, lazy=lazy))
    assert rc == 1
    assert doc["code"] == 999, doc
    assert internal == [exc]  # reported with its traceback


def test_other_errors_while_loading_stay_internal_errors() -> None:
    exc = ValueError("a bug at import time")
    rc, doc, _, internal = call(handlers(exc, lazy=False))
    assert (rc, doc["code"], internal) == (1, 999, [exc])
