"""What `Agent.infer` adds over the bare interpreter for a classifier, a detector and a tensor
model, beyond the pre/post-processing, which is measured on its own (issue 12).

    python -m edgecascade.tools.bench.task_overhead [--calls 20000] [--rounds 10] [--json PATH]

The fixture models, each served by one agent (no cloud, nothing escalates):
- classifier: digits_edge_int8.tflite (LiteRT, int8), one encoded row [1, 64];
- detector: digit_detector_int8.tflite (LiteRT, int8, raw anchor outputs), one 64x64 canvas;
- tensor: digits_rows_stateful.onnx (ONNX Runtime, fp32), one image row [1, 8] with the
  state carried between calls by a session id (the agent) or by the caller (bare).

Three callables per kind, in alternating rounds so that machine noise hits them alike:
- bare: the runtime's own API on inputs already in the model's dtype, every output fetched
  (LiteRT set_tensor/invoke/get_tensor, ONNX Runtime session.run);
- pre/post: what any caller must do around it: int8 models quantize the input and
  dequantize the outputs (shared/backends/quantization.py, the converters the backend uses);
  the classifier picks the top class; the detector decodes
  its anchors and runs NMS (shared/detection, what the agent's decoder calls); the tensor
  model needs none;
- agent: `Agent.infer(name, TaskRequest(...))`: input pipeline and signature checks, the
  quantized run under the model's lock, the task (cascade policy and budget; detection policy
  and decoded outputs; session state), provenance.

- bare+pre/post: the two in one call, as a hand-written pipeline doing the agent's job.

added = median(agent) - median(bare+pre/post); target <= 25 µs per kind. The separate sum
(bare + pre/post, each timed alone) is printed too: it reads some µs lower than the combined
call, since a callable repeated alone keeps its data in the CPU caches (about 20 µs for the
detector on the 2-core test machine), which is no work of the agent's."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.tools.bench.stats import time_calls

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
TARGET_US = 25.0

CLASSIFIER = "digits_edge_int8.tflite"
DETECTOR = "digit_detector_int8.tflite"
TENSOR = "digits_rows_stateful.onnx"


def _models(tmp: Path) -> dict[str, Path]:
    """The three artifacts in `tmp`, the detector and the tensor model with schema-2 cards."""
    from edgecascade.shared.model_card import AnchorDecoding, DetectionCard, ModelCard
    from edgecascade.tools.model_import import ImportAnswers, import_model

    out = {}
    for name in (CLASSIFIER, DETECTOR, TENSOR):
        out[name] = tmp / name
        shutil.copyfile(MODELS / name, out[name])
        shutil.copyfile(ModelCard.path_for(MODELS / name), ModelCard.path_for(out[name]))
    grid = AnchorDecoding(image_size=(64, 64), size=16, stride=4, nms_iou=0.3, max_detections=10)
    detection = DetectionCard(
        format="anchors", boxes_output="deltas", scores_output="scores", min_score=0.5, anchors=grid
    )
    card = ModelCard.load_for(out[DETECTOR])
    card.model_copy(update={"task": "detection", "detection": detection}).save_beside(out[DETECTOR])
    answers = ImportAnswers(name="digits-rows", task="tensor", state=["state=state_out"])
    import_model(out[TENSOR], answers).card.save_beside(out[TENSOR])
    return out


def _agent(tmp: Path, models: dict[str, Path]) -> Any:
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config.profile import DeviceProfile

    profile = DeviceProfile.model_validate(
        {
            "profile": "bench",
            "data_dir": str(tmp / "data"),
            "memory_budget_mb": 512,
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
            "runtime": {"threads": 1},
            "models": [
                {
                    "name": "classifier",
                    "path": str(models[CLASSIFIER]),
                    # threshold 0: nothing escalates, the local path is measured
                    "cascade": {"policies": [{"kind": "max_prob", "threshold": 0.0}]},
                },
                {
                    "name": "detector",
                    "path": str(models[DETECTOR]),
                    # an empty uncertain band: every frame is answered on the device
                    "detection": {"uncertain_low": 0.5, "uncertain_high": 0.5, "report_threshold": 0.5},
                },
                {"name": "tensor", "path": str(models[TENSOR])},
            ],
        }
    )
    return Agent.from_profile(profile, use_lookups=False)


def _litert(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return interp


def _quantizer(detail: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    # The converters the backend itself uses: pre/post is the same code on both sides.
    from edgecascade.shared.backends.quantization import Quantizer

    scale, zero = detail["quantization"]
    return Quantizer(scale, zero, np.dtype(detail["dtype"]))


def _dequantizer(detail: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    from edgecascade.shared.backends.quantization import Dequantizer

    scale, zero = detail["quantization"]
    return Dequantizer(scale, zero)


Calls = tuple[Callable[[], object], Callable[[], object], Callable[[], object], Callable[[], object]]


def classifier(agent: Any, models: dict[str, Path]) -> Calls:
    from edgecascade.edge.tasks import TaskRequest
    from edgecascade.tools.datasets import load_split

    _, held = load_split()
    row = held.features[:1].astype(np.float32)
    interp = _litert(models[CLASSIFIER])
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    quantize, dequantize = _quantizer(inp), _dequantizer(out)
    x = quantize(row)
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    raw = interp.get_tensor(out["index"])

    def bare() -> object:
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])

    def prepost() -> object:
        quantize(row)
        probs = dequantize(raw)
        best = int(probs[0].argmax())
        return best, float(probs[0, best])

    def pipeline() -> object:
        interp.set_tensor(inp["index"], quantize(row))
        interp.invoke()
        probs = dequantize(interp.get_tensor(out["index"]))
        best = int(probs[0].argmax())
        return best, float(probs[0, best])

    request = TaskRequest({"input": row})
    return bare, prepost, pipeline, lambda: agent.infer("classifier", request)


def detector(agent: Any, models: dict[str, Path]) -> Calls:
    from edgecascade.edge.tasks import TaskRequest
    from edgecascade.shared.detection import from_raw_outputs
    from edgecascade.shared.detection.anchors import GridAnchors

    image = np.load(MODELS / f"{DETECTOR}.sample.npz")["image"][:1].astype(np.float32)
    interp = _litert(models[DETECTOR])
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    quantize = _quantizer(inp)
    dequant = [_dequantizer(d) for d in outs]
    x = quantize(image)
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    raws = [interp.get_tensor(d["index"]) for d in outs]
    # Which output is which: the scores have 11 values (10 digits + background) per anchor.
    scores_i = next(i for i, r in enumerate(raws) if r.shape[-1] == 11)
    deltas_i = 1 - scores_i
    anchors = GridAnchors((64, 64), 16, 4).cxcywh()

    def bare() -> object:
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return [interp.get_tensor(d["index"]) for d in outs]

    def prepost() -> object:
        quantize(image)
        scores, deltas = dequant[scores_i](raws[scores_i]), dequant[deltas_i](raws[deltas_i])
        return from_raw_outputs(
            scores, deltas, anchors, score_threshold=0.5, iou_threshold=0.3, max_detections=10
        )

    def pipeline() -> object:
        interp.set_tensor(inp["index"], quantize(image))
        interp.invoke()
        got = [interp.get_tensor(d["index"]) for d in outs]
        scores, deltas = dequant[scores_i](got[scores_i]), dequant[deltas_i](got[deltas_i])
        return from_raw_outputs(
            scores, deltas, anchors, score_threshold=0.5, iou_threshold=0.3, max_detections=10
        )

    found = pipeline()
    assert isinstance(found, list) and found, "the sample canvas holds digits the detector finds"
    request = TaskRequest({"image": image})
    return bare, prepost, pipeline, lambda: agent.infer("detector", request)


def tensor(agent: Any, models: dict[str, Path]) -> Calls:
    import onnxruntime as ort

    from edgecascade.edge.tasks import TaskRequest

    rows = np.load(MODELS / f"{TENSOR}.sample.npz")["row"].astype(np.float32)[:1]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(models[TENSOR]), so, providers=["CPUExecutionProvider"])
    state = [np.zeros((1, 56), dtype=np.float32)]

    def bare() -> object:
        probs, state[0] = session.run(None, {"row": rows, "state": state[0]})
        return probs

    request = TaskRequest({"row": rows}, session_id="bench")
    return bare, lambda: None, bare, lambda: agent.infer("tensor", request)


def measure(calls: int, rounds: int) -> list[dict[str, float | str]]:
    results: list[dict[str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(Path(tmp))
        agent = _agent(Path(tmp), models)
        try:
            for kind, factory in (("classifier", classifier), ("detector", detector), ("tensor", tensor)):
                fns = factory(agent, models)
                samples: list[list[np.ndarray]] = [[] for _ in fns]
                for _ in range(rounds):  # alternating rounds
                    for i, fn in enumerate(fns):
                        samples[i].append(time_calls(fn, max(1, calls // rounds), warmup=50))
                bare, prepost, pipeline, through = (float(np.median(np.concatenate(s))) for s in samples)
                added = through - pipeline
                results.append(
                    {
                        "kind": kind,
                        "bare_us": bare,
                        "prepost_us": prepost,
                        "bare_with_prepost_us": pipeline,
                        "agent_us": through,
                        "added_us": added,
                        "added_over_separate_sum_us": through - bare - prepost,
                        "ratio": through / bare,
                        "ratio_to_bare_with_prepost": through / pipeline,
                    }
                )
                verdict = "met" if added <= TARGET_US else "NOT met"
                print(
                    f"{kind:10s} bare {bare:7.2f}  pre/post {prepost:6.2f}  bare+pre/post {pipeline:7.2f}  "
                    f"agent {through:7.2f} µs  ratio {through / bare:5.2f}x ({through / pipeline:4.2f}x)  "
                    f"added {added:+6.2f} µs (target <= {TARGET_US:g}: {verdict}; "
                    f"{through - bare - prepost:+.2f} over the separate sum)",
                    flush=True,
                )
        finally:
            agent.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20000, help="calls per callable, over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print(f"medians over {args.rounds} alternating rounds, {args.calls} calls each", flush=True)
    results = measure(args.calls, args.rounds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
