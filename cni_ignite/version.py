"""Spec versions we speak and what each verb needs; pure data and functions, no imports."""

from __future__ import annotations

from .errors import IncompatibleVersion

SUPPORTED: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT = "1.1.0"

# The first spec version that knows each verb (ADD/DEL exist from the start).
VERB_SINCE: dict[str, str] = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def parse(version: str) -> tuple[int, int, int]:
    """'0.4.0' -> (0, 4, 0); raises IncompatibleVersion for anything not of that form."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise IncompatibleVersion("invalid version", f"{version!r} is not MAJOR.MINOR.PATCH")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def require_supported(version: str) -> str:
    """Matching is by exact membership, as libcni does ("1.0.1" is unsupported)."""
    if version not in SUPPORTED:
        raise IncompatibleVersion(
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {list(SUPPORTED)}',
        )
    return version


def require_verb(verb: str, version: str) -> None:
    since = VERB_SINCE.get(verb)
    if since is not None and parse(version) < parse(since):
        raise IncompatibleVersion(
            f"config version does not allow {verb}",
            f"{verb} needs cniVersion {since} or later; config is {version}",
        )


def at_least(version: str, other: str) -> bool:
    return parse(version) >= parse(other)
