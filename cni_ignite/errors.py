"""The one exception family of cni-ignite; each class carries its CNI error code.

    CniError (999, internal)
    ├── IncompatibleVersion (1)
    ├── UnsupportedField (2)
    ├── UnknownContainer (3)
    ├── InvalidEnvironment (4)
    ├── IOFailure (5)
    ├── DecodingFailure (6)
    ├── InvalidConfig (7)
    ├── InvalidNetns (8)
    ├── TryAgainLater (11)
    ├── PluginUnavailable (50)
    └── LimitedConnectivity (51)

Lower-level errors (OSError, netlink errors, a child's failure) are translated into one of these
where they enter our code (``raise ... from exc``); only ``skel`` maps a foreign exception to 999.
This module imports nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import ClassVar


class CniError(Exception):
    """A failure reported to the runtime as a CNI error object."""

    code: ClassVar[int] = 999

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def as_dict(self, cni_version: str) -> dict[str, object]:
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg


class IncompatibleVersion(CniError):
    code = 1


class UnsupportedField(CniError):
    code = 2


class UnknownContainer(CniError):
    code = 3


class InvalidEnvironment(CniError):
    code = 4


class IOFailure(CniError):
    code = 5


class DecodingFailure(CniError):
    code = 6


class InvalidConfig(CniError):
    code = 7


class InvalidNetns(CniError):
    code = 8


class TryAgainLater(CniError):
    code = 11


class PluginUnavailable(CniError):
    code = 50


class LimitedConnectivity(CniError):
    code = 51


class NotFound(Exception):
    """Something to be removed or inspected is already absent (a link, a netns, a rule, a lease)."""


__all__ = [
    "CniError",
    "DecodingFailure",
    "IOFailure",
    "IncompatibleVersion",
    "InvalidConfig",
    "InvalidEnvironment",
    "InvalidNetns",
    "LimitedConnectivity",
    "NotFound",
    "PluginUnavailable",
    "TryAgainLater",
    "UnknownContainer",
    "UnsupportedField",
]
