"""Checks of decoded inputs against what a model takes, shared by the cloud and the agent:
datatypes are strict unless conversion is allowed (as Triton is), and float inputs must be
finite (a NaN makes every model answer something, and often confidently)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgecascade.shared.errors import NonFiniteInputError, ProtocolError
from edgecascade.shared.finite import non_finite_count
from edgecascade.shared.v2.datatypes import DATATYPES, datatype_of

#: Datatypes a numeric input may be converted from, where conversion is allowed.
_NUMERIC = frozenset(DATATYPES) - {"BYTES"}


def check_datatypes(
    inputs: dict[str, np.ndarray], expected: Mapping[str, str], *, convert: bool, setting: str
) -> dict[str, np.ndarray]:
    """`inputs` with each named in `expected` (input name -> V2 datatype) of that datatype.
    A different datatype is a ProtocolError naming both, unless `convert` is set and both are
    numeric; `setting` names the option that allows conversion, for the message."""
    out = inputs
    for i, (name, arr) in enumerate(inputs.items()):
        want = expected.get(name)
        if want is None:
            continue
        got = datatype_of(arr)
        if got == want:
            continue
        if convert and got in _NUMERIC and want in _NUMERIC:
            if out is inputs:
                out = dict(inputs)
            out[name] = arr.astype(DATATYPES[want])
            continue
        hint = f"; {setting} = true converts numeric inputs" if got in _NUMERIC and want in _NUMERIC else ""
        raise ProtocolError(
            f"input {name!r} is {got}, but the model's input {name!r} is {want}{hint}",
            field=f"inputs[{i}].datatype",
        )
    return out


def check_finite(inputs: dict[str, np.ndarray]) -> None:
    """Raise InputError naming the input when a float tensor holds NaN or +-infinity."""
    for i, (name, arr) in enumerate(inputs.items()):
        bad = non_finite_count(arr)
        if bad:
            raise NonFiniteInputError(
                f"input {name!r} has {bad} non-finite value(s) (NaN or infinity); the model takes finite numbers",
                field=f"inputs[{i}].data",
            )
