"""The code of an incomplete bridge DEL: the one its failures share; else 5 when any was an I/O failure;
else the first lasting one (a transient failure beside a lasting one does not make the DEL transient)."""

from __future__ import annotations

import pytest

from cni_ignite.bridge.plugin import incomplete_error


@pytest.mark.parametrize(("codes", "want"), [
    ([11], 11), ([11, 11], 11), ([5], 5), ([5, 5], 5), ([999], 999),
    ([5, 11], 5), ([11, 5], 5), ([999, 5], 5), ([11, 999], 999), ([7, 11], 7), ([11, 3, 999], 3), ([8], 8),
    ([], 999),
])
def test_incomplete_del_code(codes: list[int], want: int) -> None:
    exc = incomplete_error("DEL incomplete", "details", codes)
    assert exc.code == want and exc.msg == "DEL incomplete" and exc.details == "details"
