"""Content keys are stable across dtypes, ulps and architectures; application keys are fixed."""

from __future__ import annotations

import numpy as np
import pytest

from edgecascade.shared.errors import InputError
from edgecascade.shared.lookup import application_key, content_key

ROW = np.arange(64, dtype=np.float32) / np.float32(255)


def test_golden_values_pin_the_canonical_form() -> None:
    # Any change here breaks every table and cache in the field: bump ENCODING_VERSION instead.
    assert content_key(ROW).hex() == "5a9f7e6f030cac26e7d2a5a0ad9655bf"
    assert application_key("SKU-0001").hex() == "3380365ff3f835c339255139985516a5"


def test_same_input_same_key_despite_ulps_and_dtype() -> None:
    key = content_key(ROW)
    assert content_key(ROW.astype(np.float64)) == key
    assert content_key(np.nextafter(ROW, np.float32(2))) == key
    assert content_key(np.nextafter(ROW, np.float32(-2))) == key
    assert content_key(ROW.byteswap().view(ROW.dtype.newbyteorder())) == key  # big-endian input
    assert content_key(np.zeros(4, np.float32)) == content_key(-np.zeros(4, np.float32))


def test_different_input_shape_or_encoding_gives_a_different_key() -> None:
    key = content_key(ROW)
    one_grey_level = ROW.copy()
    one_grey_level[10] += np.float32(1 / 255)
    assert content_key(one_grey_level) != key
    assert content_key(ROW.reshape(8, 8)) != key
    assert content_key(ROW, encoding_version=2) != key
    assert len({content_key(ROW), application_key("x"), application_key("y")}) == 3


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e9])
def test_values_without_canonical_form_are_refused(bad: float) -> None:
    row = ROW.copy()
    row[3] = bad
    with pytest.raises(InputError, match="finite"):
        content_key(row)
