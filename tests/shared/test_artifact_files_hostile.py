"""Hostile artifact files a user hands the command line: model cards, .onnx and .tflite models,
labels, calibration arrays, key files and lookup tables. Each is run through the real CLI as a
subprocess, as the user runs it, and must end in one `error:` line naming the file (and the key,
for JSON) and what was expected: never a traceback, a hang, an unbounded read or a native crash
of the command itself. `models import` and `models quantize` keep their exit status 2 for a
refused input (tests/edge/tasks/test_bring_your_own.py and tests/tools/test_quantize.py pin it);
the other commands exit 1."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from edgecascade.shared.errors import InputError, StorageError, UpdateError
from edgecascade.shared.lookup.table_file import _HEADER, MAGIC, TableFile, _body_offset, write_table
from edgecascade.shared.model_card import ModelCard, TensorCard

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
IMAGE = REPO / "tests" / "fixtures" / "images" / "digit_0.png"
RGB = "digits_rgb_nchw.onnx"  # float NCHW classifier with a schema-1 card
OFFLINE = {**os.environ, "EDGECASCADE_CLOUD__URL": ""}

Card = dict[str, Any]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecascade", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=OFFLINE,
        timeout=timeout,
    )


def refused(result: subprocess.CompletedProcess[str], *expected: str, status: int = 1) -> str:
    """The one `error:` line of a refused command, after checking the rest of the contract."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    # Nothing of a multi-line message may follow the error line.
    tail = result.stderr.split(errors[0], 1)[1].strip()
    assert tail == "", result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def _schema2(card: Card) -> Card:
    """The schema-1 card as schema 2: the image encoding moves onto its input as a pipeline."""
    out = copy.deepcopy(card)
    encoding = out.pop("features")["encoding"]
    out["inputs"][0]["pipeline"] = encoding
    out["schema_version"] = 2
    return out


def _rgb_card() -> Card:
    return json.loads((MODELS / f"{RGB}.card.json").read_text())


def _pipe(card: Card) -> dict[str, Any]:
    pipeline: dict[str, Any] = card["inputs"][0]["pipeline"]
    return pipeline


def _set(edit: Callable[[Card], object]) -> Callable[[Card], str]:
    def made(card: Card) -> str:
        edit(card)
        return json.dumps(card)

    return made


def _tensor_task(card: Card) -> Card:
    return {**card, "task": "tensor", "probabilities_output": None, "labels": []}


# (card text from the schema-2 card, expected parts of the error line)
CARDS: dict[str, tuple[Callable[[Card], str | bytes], tuple[str, ...]]] = {
    "100000-deep": (lambda c: "[" * 100_000 + "]" * 100_000, ("not valid JSON: nested too deeply",)),
    "NaN-scale-schema-1": (
        lambda c: json.dumps(_rgb_card()).replace('"scale": 0.00392156862745098', '"scale": NaN'),
        ("features.encoding.scale: Input should be a finite number",),
    ),
    "Infinity-in-mean": (
        lambda c: json.dumps(c).replace('"mean": 0.0', '"mean": [0.1, Infinity, 0.2]'),
        ("inputs[0].pipeline.mean[1]: Input should be a finite number",),
    ),
    "1e999-std": (
        lambda c: json.dumps(c).replace('"std": 1.0', '"std": 1e999'),
        ("inputs[0].pipeline.std: Input should be a finite number",),
    ),
    "scale-overflowing-float32": (
        _set(lambda c: _pipe(c).update(scale=1e300)),
        ("inputs[0].pipeline: scale 1e+300", "beyond float32's range"),
    ),
    "NaN-threshold": (
        lambda c: json.dumps(
            {**_tensor_task(c), "escalation": {"output": "probabilities", "threshold": 0.5}}
        ).replace('"threshold": 0.5', '"threshold": NaN'),
        ("escalation.threshold: Input should be a finite number",),
    ),
    "labels-count": (
        _set(lambda c: c.update(labels=["a", "b", "c"])),
        ("card does not match its model: labels: expected 10 labels", "card has 3"),
    ),
    "negative-dimension": (
        _set(lambda c: c["inputs"][0].update(shape=[-1, -3, 16, 16])),
        ("inputs[0].shape: dimension 1: expected -1 (a dynamic dimension) or a size", "got -3"),
    ),
    "2**63-dimension": (
        _set(lambda c: c["inputs"][0].update(shape=[-1, 2**63, 16, 16])),
        ("inputs[0].shape: dimension 1:", "got 9223372036854775808"),
    ),
    "unknown-key": (_set(lambda c: c.update(lables=[])), ("lables: unknown key; did you mean 'labels'?",)),
    "pipeline-typo": (
        _set(lambda c: _pipe(c).update(widht=16)),
        ("inputs[0].pipeline.widht: unknown key; did you mean 'width'?",),
    ),
    "input-not-in-model": (
        _set(lambda c: c["inputs"][0].update(name="img")),
        ("inputs[0].name: 'img' is not in the model; it has ['image']",),
    ),
    "newer-schema": (
        _set(lambda c: c.update(schema_version=99)),
        ("schema_version: card schema 99 is not one this edgecascade reads",),
    ),
    "not-UTF-8": (lambda c: b'{"name": "\xff\xfe"}', ("not UTF-8 text (byte 10 is 0xff)",)),
}


@pytest.mark.parametrize("case", list(CARDS))
def test_hostile_model_cards_are_one_line_naming_the_card_and_the_key(tmp_path: Path, case: str) -> None:
    make, expected = CARDS[case]
    model = tmp_path / "m.onnx"
    shutil.copyfile(MODELS / RGB, model)
    text = make(_schema2(_rgb_card()))
    card = tmp_path / "m.onnx.card.json"
    card.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = cli("agent", "predict", "--model", str(model), str(IMAGE))
    refused(result, f"error: cannot load model {card}: ", *expected)
    assert result.stdout == ""  # nothing reached the model


def test_card_files_that_are_not_cards_are_refused_unread(tmp_path: Path) -> None:
    """A FIFO (the read would block), a folder, and a 2 GiB card (sparse: no disk used), which
    is refused after 16 MiB instead of being read whole."""
    for kind in ("fifo", "folder", "huge"):
        folder = tmp_path / kind
        folder.mkdir()
        model = folder / "m.onnx"
        shutil.copyfile(MODELS / RGB, model)
        card = folder / "m.onnx.card.json"
        if kind == "fifo":
            os.mkfifo(card)
        elif kind == "folder":
            card.mkdir()
        else:
            with card.open("wb") as f:
                f.truncate(2 << 30)
        start = time.monotonic()
        result = cli("agent", "predict", "--model", str(model), str(IMAGE), timeout=30)
        expected = {
            "fifo": "not a regular file (a device, pipe or socket), not a model card",
            "folder": "is a folder, not a model card file",
            "huge": "over 16 MiB: not a model card",
        }[kind]
        refused(result, f"error: cannot load model {card}: {expected}")
        assert time.monotonic() - start < 15


def test_model_paths_that_are_not_model_files_say_what_they_are(tmp_path: Path) -> None:
    """Before: "model card folder.onnx.card.json not found beside it; write one with
    `edgecascade models import`", which would then fail on the folder or hang on the FIFO."""
    folder, fifo = tmp_path / "folder.onnx", tmp_path / "pipe.onnx"
    folder.mkdir()
    os.mkfifo(fifo)
    refused(
        cli("agent", "predict", "--model", str(folder), str(IMAGE), timeout=30),
        f"error: cannot load model {folder}: is a folder; expected a model file",
    )
    refused(
        cli("agent", "predict", "--model", str(fifo), str(IMAGE), timeout=30),
        f"error: cannot load model {fifo}: not a regular file (a device, pipe or socket)",
    )
    # `models import` opens the model itself (before: "file not found" for both).
    for path, what in ((folder, "is a folder; expected a model file"), (fifo, "not a regular file")):
        refused(cli("models", "import", str(path), timeout=30), f"cannot load model {path}: {what}", status=2)


def _external_model(path: Path, location: str, length: int = 16) -> Path:
    """x [1, 4] + w -> y, with w's bytes in the file `location` names."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("length", str(length))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_external_data_must_stay_inside_the_models_folder(tmp_path: Path) -> None:
    """Refused by edgecascade before any runtime opens the file, whatever its version (releases
    before late 2025 read such locations): absolute, climbing out, a symlink out, a FIFO."""
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    cases = {
        "/etc/passwd": "is an absolute path",
        "../secret.bin": f"resolves to {tmp_path / 'secret.bin'}, outside the model's folder",
        "link.bin": "resolves to /etc/passwd, outside the model's folder",
        "pipe.bin": "is not a regular file (a folder, device, pipe or socket)",
    }
    for i, (location, why) in enumerate(cases.items()):
        model = _external_model(tmp_path / f"m{i}" / "m.onnx", location)
        if location == "link.bin":
            os.symlink("/etc/passwd", model.parent / "link.bin")
        if location == "pipe.bin":
            os.mkfifo(model.parent / "pipe.bin")
        result = cli("models", "import", str(model), timeout=30)
        refused(
            result,
            f"error: cannot load model {model}: external data of tensor 'w': location {location!r} {why}",
            status=2,
        )
        assert not (model.parent / "m.onnx.card.json").exists()


def _int8_identity(path: Path, metadata: dict[str, str]) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    path.write_bytes(model.SerializeToString())
    return path


def test_quantization_parameters_in_a_model_must_be_finite_and_fit(tmp_path: Path) -> None:
    """An int8 model's scale and zero point convert every value: NaN, or a zero point outside
    int8, would make every answer NaN or nonsense (before: imported and served)."""
    for name, meta, expected in (
        ("nan", {"x.scale": "nan", "y.scale": "0.5"}, "quantization scale nan is not a finite number > 0"),
        (
            "zp",
            {"x.scale": "0.5", "x.zero_point": "99999", "y.scale": "0.5"},
            "quantization zero point 99999 is outside int8's -128..127",
        ),
    ):
        model = _int8_identity(tmp_path / f"{name}.onnx", meta)
        refused(
            cli("models", "import", str(model)),
            f"error: cannot load model {model}: metadata x.scale/zero_point of tensor 'x': {expected}",
            status=2,
        )


def _segfaulting_tflite(path: Path) -> Path:
    """ADD whose second input is -1 (the optional-tensor marker): LiteRT's kernel dereferences
    it and the process dies with SIGSEGV while allocating tensors."""
    import flatbuffers

    from edgecascade.tools.build_models_tflite import ADD, _model, _operator, _tensor

    b = flatbuffers.Builder(1024)
    tensors = [_tensor(b, n, [1, 4], [1, 4]) for n in ("x", "y")]
    path.write_bytes(_model(b, tensors, [_operator(b, 0, [0, -1], [1])], [0], [1], [ADD]))
    return path


def test_a_tflite_that_crashes_the_runtime_crashes_a_check_process_not_the_command(tmp_path: Path) -> None:
    model = _segfaulting_tflite(tmp_path / "crash.tflite")
    refused(
        cli("models", "import", str(model)),
        f"error: cannot load model {model}: crashed its interpreter (SIGSEGV) in a check process",
        status=2,
    )


def test_labels_files_are_read_bounded_and_must_be_text(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copyfile(MODELS / RGB, model)
    fifo, binary = tmp_path / "labels.fifo", tmp_path / "labels.txt"
    os.mkfifo(fifo)
    binary.write_bytes(b"\xff\xfe" + "cat\n".encode("utf-16-le"))
    for labels, expected in (
        (fifo, "not a regular file (a folder, device, pipe or socket)"),
        (Path("/dev/zero"), "not a regular file (a folder, device, pipe or socket)"),
        (binary, "not UTF-8 text (byte 0 is 0xff)"),
    ):
        result = cli("models", "import", str(model), "--labels", str(labels), timeout=30)
        refused(result, f"error: {labels}: {expected}", status=2)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    text += b" " * (118 - len(text)) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


def test_calibration_arrays_are_checked_before_numpy_allocates_them(tmp_path: Path) -> None:
    """A 200-byte .npy announcing 4 TB, an .npz of 50 KiB inflating to 50 MiB that announces the
    same, and NaN: each a clear refusal (before: MemoryError / AssertionError tracebacks)."""
    bomb = _npy_header((100_000, 100_000, 100)) + b"\0" * (50 << 20)
    cases: dict[str, tuple[Callable[[Path], object], str]] = {
        "huge.npy": (
            lambda p: p.write_bytes(_npy_header((100_000, 100_000, 100)) + b"\0" * 64),
            "header says float32 [100000, 100000, 100] (4,000,000,000,000 bytes) but 64 bytes follow it",
        ),
        "bomb.npz": (
            lambda p: zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED).writestr("input.npy", bomb),
            "array 'input': header says float32 [100000, 100000, 100]",
        ),
        "nan.npy": (
            lambda p: np.save(p, np.full((1, 64), np.nan, np.float32)),
            "64 value(s) are NaN or infinite",
        ),
    }
    for name, (write, expected) in cases.items():
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        write(folder / name)
        result = cli(
            "models", "quantize", str(MODELS / "digits_edge_fp32.onnx"), "--calibration", str(folder),
            "--out", str(tmp_path / "out.onnx"),
        )  # fmt: skip
        # `models quantize` prints its refusals on stdout (tests/tools/test_quantize.py).
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"error: {folder / name}: {expected}" in result.stdout, result.stdout


def test_a_key_file_nested_100000_deep_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text('{"a":' * 100_000 + '"x.png"' + "}" * 100_000)
    result = cli(
        "models", "build-table", "--cloud-model", str(MODELS / "digits_cloud.onnx"), "--keys", str(keys),
        "--key-scheme", "application", "--version", "1", "--out", str(tmp_path / "t.ectable"),
    )  # fmt: skip
    refused(result, f"error: {keys}: JSON nested too deeply")


# -- lookup tables ----------------------------------------------------------------------------
LABELS = [str(i) for i in range(10)]


def _table_bytes(keys: bytes, probs: np.ndarray, *, fmt: int = 1, meta_len: int | None = None) -> bytes:
    """A table file as a writer that skips the checks would make it (a valid CRC throughout)."""
    body = probs.astype("<f2").tobytes()
    meta = {
        "name": "t", "version": "bad-1", "created_at": "2024-01-01T00:00:00+00:00", "cloud_model": "c",
        "cloud_model_version": "1", "encoding_version": 1, "key_scheme": "content", "labels": LABELS,
        "entries": len(keys) // 16, "output": "probabilities-f16", "body_bytes": len(keys) + len(body),
        "body_crc32": zlib.crc32(body, zlib.crc32(keys)), "source": "",
    }  # fmt: skip
    raw = json.dumps(meta).encode()
    header = _HEADER.pack(MAGIC, fmt, meta_len if meta_len is not None else len(raw), zlib.crc32(raw)) + raw
    return header + b"\0" * (_body_offset(len(raw)) - len(header)) + keys + body


def test_lookup_tables_that_are_consistent_but_wrong_are_refused(tmp_path: Path) -> None:
    """A CRC proves only that the file is what its writer made: repeated or unsorted keys break
    the binary search, NaN or negative probabilities become answers; a header announcing 4 GiB
    of metadata is refused unread (the file is sparse, 5 GiB long)."""
    keys = sorted(os.urandom(16) for _ in range(4))
    probs = np.full((4, 10), 0.1, np.float32)
    nan, negative = probs.copy(), probs.copy()
    nan[2, 3], negative[1, 0] = np.nan, -0.5
    cases = {
        "duplicate": (_table_bytes(keys[0] * 2 + b"".join(keys[2:]), probs), "keys 0 and 1 are the same key twice"),
        "unsorted": (_table_bytes(b"".join(keys[::-1]), probs), "keys 0 and 1 are out of order"),
        "nan": (_table_bytes(b"".join(keys), nan), "entry 2 has probabilities that are not finite numbers"),
        "negative": (_table_bytes(b"".join(keys), negative), "entry 1 has probabilities that are not finite"),
    }  # fmt: skip
    for name, (data, expected) in cases.items():
        path = tmp_path / f"{name}.ectable"
        path.write_bytes(data)
        with pytest.raises(StorageError, match=f"table {path}: {expected}"):
            TableFile.open(path, encoding_version=1)
    huge = tmp_path / "huge.ectable"
    with huge.open("wb") as f:
        f.write(_table_bytes(b"".join(keys), probs, meta_len=0xFFFF_FFF0)[: _HEADER.size])
        f.truncate(5 << 30)
    with pytest.raises(StorageError, match="header announces 4294967280 bytes of metadata, over 16777216"):
        TableFile.open(huge, encoding_version=1)
    with pytest.raises(InputError, match="probabilities must be finite numbers in 0..1"):
        write_table(
            tmp_path / "w.ectable", np.zeros((1, 16), np.uint8), np.full((1, 10), np.nan), name="t",
            version="1", cloud_model="c", cloud_model_version="1", encoding_version=1,
            key_scheme="content", labels=LABELS,
        )  # fmt: skip


def test_the_agent_serves_its_model_when_its_table_is_a_fifo_or_answers_nan(tmp_path: Path) -> None:
    """`[lookup] table` naming a FIFO (before: the agent hung opening it) or a table whose entry
    for this very image holds NaN (before: answered from the table, confidence NaN): refused
    with an ERROR line naming the file; the answer comes from the model."""
    from edgecascade.edge.inputs import read_input_file
    from edgecascade.shared.lookup import content_key
    from edgecascade.shared.model_card import ModelCard

    model = MODELS / "digits_edge_int8.tflite"
    key = content_key(read_input_file(IMAGE, ModelCard.load_for(model).feature_spec()), 1)
    nan = tmp_path / "nan.ectable"
    nan.write_bytes(_table_bytes(key, np.full((1, 10), np.nan)))
    fifo = tmp_path / "fifo.ectable"
    os.mkfifo(fifo)
    for table, why in ((fifo, "not a regular file"), (nan, "entry 0 has probabilities that are not finite")):
        profile = tmp_path / f"{table.stem}.toml"
        profile.write_text(
            f'profile = "t"\ndevice_id = "t1"\ndata_dir = "{tmp_path / "data"}"\nmemory_budget_mb = 150\n'
            f'[model]\nname = "digits-edge"\npath = "{model}"\n'
            f'[lookup]\ntable = "{table}"\n[lookup.cache]\nenabled = false\n[telemetry]\nenabled = false\n'
        )
        result = cli("agent", "predict", "--config", str(profile), str(IMAGE), "--json", timeout=30)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        answer = json.loads(result.stdout)
        assert answer["source"] == "edge" and answer["label"] == "0", answer
        assert f"lookup table refused, keeping no table: table {table}: {why}" in result.stderr


def test_agent_predict_on_a_model_that_crashes_the_runtime_is_an_error_line(tmp_path: Path) -> None:
    # `agent run` always checked a model in a child first; `agent predict` loaded it in its own
    # process and died of SIGSEGV (exit 139).
    model = _segfaulting_tflite(tmp_path / "crash.tflite")
    data = model.read_bytes()
    ModelCard(
        name="crash",
        version="1",
        backend="tflite",
        file=model.name,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        task="tensor",
        inputs=[TensorCard(name="x", dtype="float32", shape=[1, 4])],
        outputs=[TensorCard(name="y", dtype="float32", shape=[1, 4])],
    ).save_beside(model)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4), np.float32))
    refused(
        cli("agent", "predict", "--model", str(model), str(x)),
        f"error: cannot load model {model}: crashed its interpreter (SIGSEGV) in a check process",
        status=1,
    )


def test_input_and_golden_arrays_are_checked_before_numpy_allocates_them(tmp_path: Path) -> None:
    """`agent predict` inputs and `fleet push --golden` cases: a .npy announcing 4 TB and an
    .npz inflating past the budget are refused naming the file (before: MemoryError tracebacks)."""
    from edgecascade.cloud.fleet.golden_builder import load_golden_inputs

    huge = tmp_path / "huge.npy"
    huge.write_bytes(_npy_header((100_000, 100_000, 100)) + b"\0" * 64)
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("input.npy", _npy_header((1 << 20, 64)) + b"\0" * (64 << 20))
    announced = "header says float32 [100000, 100000, 100] (4,000,000,000,000 bytes) but 64 bytes follow it"
    # An encoded-row model (the card's features) and a schema 2 one (its inputs by name).
    for model in ("digits_edge_int8.tflite", "digits_rgb_nchw.onnx"):
        refused(cli("agent", "predict", "--model", str(MODELS / model), str(huge)), f"{huge}: {announced}")
    refused(
        cli("agent", "predict", "--model", str(MODELS / "digits_rgb_nchw.onnx"), str(bomb)),
        f"{bomb}: its arrays would inflate to",
    )
    for path in (huge, bomb):
        with pytest.raises(UpdateError) as refusal:
            load_golden_inputs(path)
        assert str(refusal.value).startswith(f"golden inputs {path}: "), refusal.value
        assert "header says" in str(refusal.value) or "would inflate to" in str(refusal.value)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--input", "image:size=nanxnan"], "error: --input: size must be WIDTHxHEIGHT in pixels"),
        (["--name", "a\udcff"], "error: --name: not valid UTF-8 text (byte 1 is 0xff)"),
        (["--name", "a/b"], "error: --name: must not contain a '/'"),
        (["--name", ".hidden"], "error: --name: must not start with '.'"),
        (["--version", ""], "error: --version: must not be empty"),
    ],
    ids=["nan-size", "non-utf8-name", "slash-name", "dot-name", "empty-version"],
)
def test_models_import_refuses_names_and_sizes_no_profile_could_use(
    tmp_path: Path, flags: list[str], expected: str
) -> None:
    # Before: tracebacks (int('nan'), a card that could not be written as JSON), or a card
    # written that no profile could load.
    model = tmp_path / "m.onnx"
    shutil.copyfile(MODELS / RGB, model)
    refused(cli("models", "import", str(model), *flags), expected, status=2)
    assert not (tmp_path / "m.onnx.card.json").exists()
