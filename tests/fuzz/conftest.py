"""Hypothesis profiles for the fuzz suite, and the libcni oracle (a Go program built once per session).

``quick`` (the default, what ``make test`` runs): few examples per property, the whole suite well under a
minute on a loaded 2-core host. ``long`` (``make fuzz``, or ``HYPOTHESIS_PROFILE=long``): thousands;
``FUZZ_MAX_EXAMPLES=N`` caps either (a time-boxed run; tests/fuzz/RESULTS.md says what each property ran).
No deadline in either: timing on a shared machine is noise, not a property. The example database lives
in .pytest_cache (ignored by git), so a failure found once is replayed first by the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

sys.path.insert(0, str(Path(__file__).parent))

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
_common: dict[str, Any] = {
    "deadline": None,
    "database": DirectoryBasedExampleDatabase(str(ROOT / ".pytest_cache" / "hypothesis")),
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                              HealthCheck.large_base_example],
}
settings.register_profile("quick", max_examples=25, **_common)
settings.register_profile("long", max_examples=3000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
if os.environ.get("FUZZ_MAX_EXAMPLES"):  # a time-boxed long run: the profile's settings, fewer examples
    settings.register_profile("capped", settings(settings.default,
                                                 max_examples=int(os.environ["FUZZ_MAX_EXAMPLES"])))
    settings.load_profile("capped")

GOPATH = Path("/usr/share/gocode")
LIBCNI_TYPES = GOPATH / "src/github.com/containernetworking/cni/pkg/types"
ORACLE_SOURCE = Path(__file__).resolve().parent / "oracle"


def unavailable(reason: str) -> None:
    """Skip with the reason, except under CI, which must not skip the oracle."""
    if os.environ.get("CI"):
        pytest.fail(f"libcni oracle unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)


class Oracle:
    """libcni's code answering requests (see oracle/main.go): one long-lived process, one line each way."""

    def __init__(self, exe: Path) -> None:
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     encoding="utf-8")

    def ask(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        answers = []
        for r in requests:  # one at a time: a big batch could fill both pipes
            self.proc.stdin.write(json.dumps(r) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            assert line, f"the libcni oracle died (exit {self.proc.poll()}) on {json.dumps(r)[:2000]}"
            answers.append(json.loads(line))
        return answers

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    if shutil.which("go") is None:
        unavailable("`go` is not installed (packaging/setup-host.sh installs golang-go)")
    if not LIBCNI_TYPES.is_dir():
        unavailable(f"libcni sources missing at {LIBCNI_TYPES} (Debian package golang-github-appc-cni-dev)")
    out = tmp_path_factory.mktemp("libcni-oracle")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(out), "GO111MODULE": "off",
           "GOPATH": str(GOPATH), "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
           "GOCACHE": str(ROOT / ".pytest_cache" / "fuzz-gocache"), "GOTMPDIR": "", "TMPDIR": str(out)}
    exe = out / "oracle"
    res = subprocess.run(["go", "build", "-o", str(exe), "."], cwd=ORACLE_SOURCE, env=env, capture_output=True,
                         text=True, timeout=240, check=False)
    if res.returncode != 0:
        unavailable(f"offline build of {ORACLE_SOURCE} failed ({res.returncode}): {res.stderr.strip()}")
    oracle = Oracle(exe)
    try:
        yield oracle
    finally:
        oracle.close()
