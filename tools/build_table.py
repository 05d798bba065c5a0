"""Build a lookup table offline: run the real cloud model over a set of inputs and write the
table artifact (shared.lookup.table_file) with the model's name, version and labels.

Inputs come from a data set (the digits held-out split), a folder of input files (images,
.npy, .json; application keys are the file names without extension), or a key file (CSV
`key,input` rows or a JSON object {key: input path}) for application keys."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecascade.edge.inputs import IMAGE_SUFFIXES, encode_input_bytes, read_input_bytes
from edgecascade.shared.backends import BackendOptions, ModelBackend, load_backend
from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded
from edgecascade.shared.errors import InputError
from edgecascade.shared.features.array_file import npy_array
from edgecascade.shared.lookup import KeyScheme, TableMeta, application_key, content_key, write_table
from edgecascade.shared.model_card import ModelCard

log = logging.getLogger(__name__)

DATASETS = ("digits-heldout", "digits-train", "digits-all")
_INPUT_SUFFIXES = IMAGE_SUFFIXES | {".npy", ".json"}


@dataclass
class TableInputs:
    """Encoded rows to precompute, with their application keys (None for content keys only)."""

    features: np.ndarray  # (N, ...) float32
    keys: list[str] | None
    source: str


class CloudModelRunner:
    """The cloud model loaded with the serving backend, run in batches."""

    def __init__(self, path: Path) -> None:
        self.card = ModelCard.load_for(path)
        self.backend: ModelBackend = load_backend(path, BackendOptions(warmup_runs=0))

    def probabilities(self, features: np.ndarray, batch: int = 1024) -> np.ndarray:
        outs = [
            self.backend.predict({self.card.feature_spec().input_name: features[i : i + batch]})[
                self.card.scores_output()
            ]
            for i in range(0, len(features), batch)
        ]
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, len(self.card.labels)))

    def close(self) -> None:
        self.backend.close()


def dataset_inputs(name: str) -> TableInputs:
    """One of DATASETS; keys are row numbers within it ("heldout-17")."""
    from edgecascade.tools.datasets import load_split

    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    train, heldout = load_split()
    parts = {"digits-heldout": [heldout], "digits-train": [train], "digits-all": [train, heldout]}[name]
    features = np.concatenate([p.features for p in parts])
    return TableInputs(features, [f"{name}-{i}" for i in range(len(features))], name)


#: A key file lists keys and file names: 64 MiB is millions of rows.
MAX_KEY_FILE_BYTES = 64 << 20


def _encoded(path: Path, card: ModelCard) -> np.ndarray:
    """One input file as an encoded row, in bounded memory: a .npy's header must account for
    its bytes before numpy allocates the array it announces."""
    data = read_input_bytes(path)
    if path.suffix.lower() == ".npy":
        npy_array(data, str(path))
    return encode_input_bytes(path, data, card.feature_spec())


def folder_inputs(folder: Path, card: ModelCard) -> TableInputs:
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of input files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _INPUT_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no input files ({', '.join(sorted(_INPUT_SUFFIXES))})")
    features = np.stack([_encoded(p, card) for p in files])
    return TableInputs(features, [p.stem for p in files], f"folder {folder.name} ({len(files)} files)")


def keyfile_inputs(path: Path, card: ModelCard) -> TableInputs:
    """CSV rows `key,input` (a header row `key,input` is skipped) or a JSON object {key: input};
    input paths are relative to the key file."""
    try:
        text = read_bounded(path, MAX_KEY_FILE_BYTES).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); expected a key file") from None
    except (IsADirectoryError, NotRegularFileError):
        raise InputError(f"{path}: not a regular file (a folder, device, pipe or socket)") from None
    except FileTooLargeError:
        raise InputError(f"{path}: over {MAX_KEY_FILE_BYTES >> 20} MiB: not a key file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read key file ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".json":
        try:
            pairs = list(json.loads(text).items())
        except (json.JSONDecodeError, AttributeError) as exc:
            raise InputError(f"{path}: expected a JSON object of key -> input file: {exc}") from None
        except RecursionError:
            raise InputError(
                f"{path}: JSON nested too deeply; expected an object of key -> input file"
            ) from None
        bad = next((k for k, v in pairs if not isinstance(v, str)), None)
        if bad is not None:
            raise InputError(f"{path}: key {bad[:40]!r}: expected the input file name (a string)")
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r]
        if rows and [c.strip().lower() for c in rows[0]] == ["key", "input"]:
            rows = rows[1:]
        bad = next((i for i, r in enumerate(rows, 1) if len(r) != 2), None)
        if bad is not None:
            raise InputError(f"{path}: row {bad}: expected two columns key,input")
        pairs = [(r[0].strip(), r[1].strip()) for r in rows]
    if not pairs:
        raise InputError(f"{path}: no keys")
    features = np.stack([_encoded(path.parent / str(file), card) for _, file in pairs])
    return TableInputs(features, [str(k) for k, _ in pairs], f"key file {path.name} ({len(pairs)} keys)")


def build_table(
    cloud_model: Path,
    inputs: TableInputs,
    out: Path,
    *,
    scheme: KeyScheme,
    name: str,
    version: str,
    runner: CloudModelRunner | None = None,
) -> TableMeta:
    """Run the cloud model over `inputs` and write the table to `out`. Returns its header."""
    own = runner is None
    runner = runner or CloudModelRunner(cloud_model)
    try:
        card = runner.card
        probs = runner.probabilities(inputs.features)
        encoding = card.feature_spec().version
        if scheme == "application":
            if inputs.keys is None:
                raise InputError("application keys need named inputs (a folder or a key file)")
            keys = [application_key(k) for k in inputs.keys]
        else:
            keys = [content_key(row, encoding) for row in inputs.features]
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), -1)
        meta = write_table(
            out,
            key_array,
            probs,
            name=name,
            version=version,
            cloud_model=card.name,
            cloud_model_version=card.version,
            encoding_version=encoding,
            key_scheme=scheme,
            labels=list(card.labels),
            source=inputs.source,
        )
    finally:
        if own:
            runner.close()
    log.info("wrote table %s %s to %s: %d entries (%s keys)", name, version, out, meta.entries, scheme)
    return meta
