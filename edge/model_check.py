"""Load every model of a profile in a child process before the daemon loads them itself.

A third-party model can crash an interpreter outright (a segfault in native code, seen with
real models on tflite-runtime, and with crafted .tflite files on LiteRT: an operator input of
-1 where the kernel needs a tensor, an int8 tensor without quantization under XNNPACK).
`python -m edgecascade.edge.model_check [--options JSON] [--bare] PATH[@BACKEND]...` loads
each model with its card (and the card check), with the daemon's backend options, and runs the
backend's warm-up; it exits 0, or 3 after printing the reason. A child killed by a signal or
running past the timeout means the model never serves, and the daemon refuses to start,
naming the file. `--bare` loads the model alone, without a card: `models import` (which writes
the card) and `models quantize` check a user's file this way before loading it themselves.

A check that passed is remembered in `<data_dir>/model_checks.json`, keyed by everything the
outcome depends on: the artifact's and the card's sha256, the backend, the installed versions
of its runtimes (and numpy, Python, edgecascade) and the backend options. An unchanged model
that already passed is not checked again at every start (a child process costs about as much
as the daemon's own start-up); a new or changed artifact or card, another runtime version or
other options is checked in a child before it serves. Only passes are recorded, so a model
that fails (or crashes) its check is checked again, and refused again, at every start."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgecascade.shared.backends.base import BackendOptions, OnnxProvider, TFLiteDelegate
from edgecascade.shared.errors import EdgecascadeError, ModelError, ModelLoadError
from edgecascade.shared.version import __version__

log = logging.getLogger(__name__)

REFUSED = 3
CACHE_FILE = "model_checks.json"
#: Bump when what the child checks changes, so records made by an older check are not trusted.
CHECK_FORMAT = 1
#: Records kept (newest first): enough for every model and version a device keeps around.
MAX_RECORDS = 64
#: Distributions whose version decides how a backend loads a file (any of them may serve it).
RUNTIME_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "tflite": ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu"),
    "onnx": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
}


def check_in_child(
    models: list[tuple[Path, str | None]],
    timeout_s: float = 60.0,
    *,
    options: BackendOptions | None = None,
    cache_dir: Path | None = None,
    python: list[str] | None = None,
    bare: bool = False,
) -> None:
    """Raise ModelLoadError naming the model (and the reason) if any fails to load in a child.

    `options` are the backend options the daemon will load with (the child uses them, with one
    warm-up run). With `cache_dir`, models whose check already passed unchanged are skipped
    and new passes are recorded there. `bare`: load each model without its card (there may be
    none yet). `python` replaces the interpreter command (tests)."""
    if not models:
        return
    options = options or BackendOptions()
    cache = _CheckCache(cache_dir / CACHE_FILE) if cache_dir is not None and not bare else None
    keys = {path: check_key(path, backend, options) for path, backend in models} if cache else {}
    todo = [(p, b) for p, b in models if cache is None or not cache.passed(keys[p])]
    if not todo:
        log.info("models already checked unchanged: %s", ", ".join(str(p) for p, _ in models))
        return
    _run_child(todo, options, timeout_s, python, bare)
    if cache is not None:
        cache.record({keys[p]: str(p) for p, _ in todo})


def _run_child(
    models: list[tuple[Path, str | None]],
    options: BackendOptions,
    timeout_s: float,
    python: list[str] | None,
    bare: bool = False,
) -> None:
    cmd = [*(python or [sys.executable]), "-m", "edgecascade.edge.model_check"]
    cmd += ["--options", json.dumps(options_to_json(options))]
    cmd += ["--bare"] if bare else []
    cmd += [f"{path}@{backend}" if backend else str(path) for path, backend in models]
    where = ", ".join(str(p) for p, _ in models)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            where, f"loading did not finish within {timeout_s:.0f}s in a check process"
        ) from None
    if done.returncode == 0:
        return
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        last = done.stdout.strip().splitlines()[-1:]  # the model being loaded when it crashed
        raise ModelLoadError(
            last[0].removeprefix("checking ") if last else where,
            f"crashed its interpreter ({name}) in a check process",
        )
    reason = done.stdout.strip().splitlines()[-1:] or done.stderr.strip().splitlines()[-1:]
    # The child's last line is already "cannot load model <file>: <why>" for a refusal.
    raise ModelError(
        reason[0] if reason else f"cannot load model {where}: check exited with {done.returncode}"
    )


# -- what a check's outcome depends on ----------------------------------------------------------
def options_to_json(options: BackendOptions) -> dict[str, Any]:
    """The options as JSON (warm-up inputs are arrays, not settings: the child warms up alone)."""
    out = dataclasses.asdict(dataclasses.replace(options, warmup_inputs=None))
    del out["warmup_inputs"]
    return out


def options_from_json(data: dict[str, Any]) -> BackendOptions:
    return BackendOptions(
        **{
            **data,
            "onnx_providers": tuple(OnnxProvider(**p) for p in data.get("onnx_providers", ())),
            "tflite_delegates": tuple(TFLiteDelegate(**d) for d in data.get("tflite_delegates", ())),
        }
    )


def _sha256(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return "unreadable"  # the child will say why; such a model never gets a record


def _versions(backend: str) -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in ("numpy", *RUNTIME_DISTRIBUTIONS.get(backend, ())):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "-"
    return found


def check_key(path: Path, backend: str | None, options: BackendOptions) -> str:
    """The sha256 of everything the child's verdict on `path` depends on."""
    from edgecascade.shared.backends.registry import backend_name_for
    from edgecascade.shared.model_card import ModelCard

    try:
        name = backend_name_for(path, backend)
    except EdgecascadeError:
        name = backend or path.suffix
    facts = {
        "format": CHECK_FORMAT,
        "edgecascade": __version__,
        "python": sys.version,
        "artifact": _sha256(path),
        "card": _sha256(ModelCard.path_for(path)),
        "backend": name,
        "runtimes": _versions(name),
        "options": options_to_json(options),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


class _CheckCache:
    """Keys of passed checks in one small JSON file; unreadable means empty, unwritable is a warning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_bytes())
            self.records: dict[str, dict[str, Any]] = dict(data["passed"])
        except FileNotFoundError:
            self.records = {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable model check records %s: %s", path, exc)
            self.records = {}

    def passed(self, key: str) -> bool:
        return key in self.records

    def record(self, passed: dict[str, str]) -> None:
        now = time.time()
        merged = {k: {"path": p, "checked_at": now} for k, p in passed.items()}
        merged.update({k: v for k, v in self.records.items() if k not in merged})
        self.records = dict(list(merged.items())[:MAX_RECORDS])
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"passed": self.records}, indent=1))
            os.replace(tmp, self.path)  # a torn write reads as unreadable: a re-check, never a pass
        except OSError as exc:
            log.warning("cannot record model checks in %s (%s); they run again next start", self.path, exc)


# -- the child ----------------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import load_backend

    options = BackendOptions()
    if argv[:1] == ["--options"]:
        options = options_from_json(json.loads(argv[1]))
        argv = argv[2:]
    bare = argv[:1] == ["--bare"]
    argv = argv[1:] if bare else argv
    options = dataclasses.replace(options, warmup_runs=1)
    for arg in argv:
        path, _, backend = arg.partition("@")
        print(f"checking {path}", flush=True)
        try:
            if bare:
                load_backend(Path(path), options, backend or None).close()
            else:
                LocalModel.load(Path(path), options, backend or None).close()
        except EdgecascadeError as exc:
            print(str(exc), flush=True)
            return REFUSED
        except Exception as exc:  # a runtime's own error escaping the backend: still a refusal
            print(f"cannot load model {path}: {type(exc).__name__}: {exc}", flush=True)
            return REFUSED
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
