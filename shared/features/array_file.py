""".npy and .npz files a user hands a command (calibration, evaluation and labelled inputs),
read in bounded memory.

numpy allocates an array from the shape its header announces before it reads the data, so a
200-byte .npy claiming shape (100000, 100000, 100) asks for 3.6 TiB (a MemoryError, or with
overcommit, pages that exist only until they are touched), and a small .npz can inflate to
any size. Here the header is read first and must account for exactly the bytes that follow;
an .npz member's announced size counts against the same budget before it is inflated. Object
arrays (pickles) and complex numbers are refused; floats must be finite."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded
from edgecascade.shared.errors import InputError
from edgecascade.shared.finite import non_finite_count

#: The most one array file may hold, on disk and inflated: a large calibration batch fits.
MAX_ARRAY_BYTES = 1 << 30
#: dtype kinds a model input can take: bool, integers, floats, fixed-width text.
_KINDS = "biufSU"


def read_array_file(path: Path, max_bytes: int = MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """The arrays of a .npy (under the name "") or .npz file; InputError naming the file (and
    the member) for one that is not a regular file, too big, truncated, padded, pickled,
    complex or holds NaN or infinity."""
    try:
        data = read_bounded(path, max_bytes)
    except (IsADirectoryError, NotRegularFileError):
        raise InputError(f"{path}: not a regular file (a folder, device, pipe or socket)") from None
    except FileTooLargeError:
        raise InputError(f"{path}: over {max_bytes:,} bytes") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".npz":
        return npz_arrays(data, str(path), max_bytes)
    return {"": npy_array(data, str(path))}


def npy_array(data: bytes, where: str, *, finite: bool = True) -> np.ndarray:
    """The array of .npy bytes, checked against its header before numpy allocates anything;
    with `finite` also refused when it holds NaN or infinity (callers that name the input in
    that message check it themselves)."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, OSError, SyntaxError, RecursionError) as exc:
        raise InputError(f"{where}: not a .npy array ({exc})") from None
    if dtype.hasobject or dtype.kind not in _KINDS:
        raise InputError(
            f"{where}: holds {dtype} values; model inputs are numbers, bool or text (no pickled objects)"
        )
    count = 1
    for d in shape:
        count *= d
    want, have = count * dtype.itemsize, len(data) - stream.tell()
    if want != have:
        raise InputError(
            f"{where}: header says {dtype} {list(shape)} ({want:,} bytes) but {have:,} bytes follow it "
            "(truncated or not a .npy array)"
        )
    array = np.load(io.BytesIO(data), allow_pickle=False)
    bad = non_finite_count(array) if finite else 0
    if bad:
        raise InputError(f"{where}: {bad} value(s) are NaN or infinite; inputs must be finite numbers")
    return array


def npz_arrays(
    data: bytes, where: str, max_bytes: int = MAX_ARRAY_BYTES, *, finite: bool = True
) -> dict[str, np.ndarray]:
    """The arrays of .npz bytes by name; every member's inflated size counts toward `max_bytes`
    before it is inflated."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InputError(f"{where}: not a .npz archive ({exc})") from None
    with archive:
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise InputError(f"{where}: its arrays would inflate to {total:,} bytes, over {max_bytes:,}")
        arrays: dict[str, np.ndarray] = {}
        for member in members:
            name = member.filename.removesuffix(".npy")
            try:
                raw = archive.read(member)
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
                raise InputError(f"{where}: member {member.filename!r} cannot be read ({exc})") from None
            arrays[name] = npy_array(raw, f"{where}: array {name!r}", finite=finite)
    return arrays
