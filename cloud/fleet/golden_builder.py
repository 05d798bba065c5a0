"""Golden cases for a push from the user's own inputs: the expected outputs are what the
candidate model itself gives for them, run through shared/backends (the same backend code the
device runs). Any model, any signature; nothing here knows a data set.

    --golden case.npz     one case: one array per input name, fed as is (batch dimension included)
    --golden DIR/         one case per file, in name order: .npz as above, or .npy for a
                          one-input model
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgecascade.shared.errors import EdgecascadeError, InputError, UpdateError
from edgecascade.shared.manifest import Golden, GoldenCase, GoldenTensor

log = logging.getLogger(__name__)

#: Raw bytes of all golden inputs and outputs together: keeps the manifest under its limit
#: (base64 adds a third; shared.manifest.MAX_MANIFEST_BYTES is 16 MiB).
MAX_GOLDEN_BYTES = 8 * 1024 * 1024
MAX_CASES = 256
#: Key of the array in a .npy case until the model's one input name is known.
_UNNAMED = ""

Case = dict[str, np.ndarray]


def load_golden_inputs(path: Path) -> list[Case]:
    """The cases in a .npz file or a folder of .npz/.npy files. Raises UpdateError naming the file."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".npy") and p.is_file())
        if not files:
            raise UpdateError(f"golden folder {path} holds no .npz or .npy file")
    elif path.is_file():
        files = [path]
    else:
        raise UpdateError(f"golden inputs {path} not found")
    if len(files) > MAX_CASES:
        raise UpdateError(f"golden folder {path} holds {len(files)} cases; at most {MAX_CASES}")
    cases: list[Case] = []
    total = 0
    for file in files:
        case = _read_case(file)
        total += sum(a.nbytes for a in case.values())
        if total > MAX_GOLDEN_BYTES:
            raise UpdateError(
                f"golden inputs exceed {MAX_GOLDEN_BYTES} bytes at {file}; give fewer or smaller"
            )
        cases.append(case)
    return cases


def _read_case(file: Path) -> Case:
    from edgecascade.shared.features.array_file import read_array_file

    if file.suffix not in (".npy", ".npz"):
        raise UpdateError(f"golden inputs {file}: expected a .npz (one array per input name) or a folder")
    try:
        # Headers checked against their bytes, and inflated sizes against the golden budget,
        # before numpy allocates anything.
        arrays = read_array_file(file, MAX_GOLDEN_BYTES)
    except InputError as exc:
        raise UpdateError(f"golden inputs {exc}") from None
    case = {_UNNAMED: arrays[""]} if file.suffix == ".npy" else arrays
    if not case:
        raise UpdateError(f"golden inputs {file} hold no array")
    return case


def golden_for(artifact: Path, backend: str, cases: list[Case], tolerance: float) -> Golden:
    """Run each case through the candidate; its outputs become the expected ones. Raises
    UpdateError when the model cannot load here or a case does not fit its signature."""
    from edgecascade.shared.backends import BackendOptions, load_backend

    try:
        model = load_backend(artifact, BackendOptions(warmup_runs=0), backend)
    except EdgecascadeError as exc:
        raise UpdateError(f"cannot run {artifact.name} here to compute golden outputs: {exc}") from exc
    try:
        names = [spec.name for spec in model.signature.inputs]
        built = []
        for i, case in enumerate(cases):
            inputs = _named(case, names, i)
            try:
                outputs = model.predict(inputs)
            except EdgecascadeError as exc:
                raise UpdateError(f"golden case {i} does not fit {artifact.name}: {exc}") from exc
            built.append(
                GoldenCase(
                    inputs=[GoldenTensor.from_array(n, a) for n, a in inputs.items()],
                    expected=[GoldenTensor.from_array(n, np.asarray(a)) for n, a in outputs.items()],
                )
            )
    finally:
        model.close()
    size = sum(len(t.data_b64) for c in built for t in (*c.inputs, *c.expected)) * 3 // 4
    if size > MAX_GOLDEN_BYTES:
        raise UpdateError(f"golden inputs and outputs take {size} bytes; at most {MAX_GOLDEN_BYTES}")
    log.info("golden: %d case(s) for %s, tolerance %g", len(built), artifact.name, tolerance)
    return Golden(tolerance=tolerance, cases=built)


def _named(case: Case, names: list[str], index: int) -> Case:
    if _UNNAMED in case:
        if len(names) != 1:
            raise UpdateError(
                f"golden case {index} is a .npy, but the model has {len(names)} inputs ({', '.join(names)}); "
                "give a .npz with one array per input name"
            )
        return {names[0]: case[_UNNAMED]}
    if sorted(case) != sorted(names):
        raise UpdateError(
            f"golden case {index} holds arrays {sorted(case)}; the model's inputs are {sorted(names)}"
        )
    return case
