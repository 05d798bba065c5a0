"""Detection cascade quality on held-out real data: the committed digit detectors on 400
held-out canvases (1-3 held-out digits each, tools/build_detector_data.py).

    python -m edgecascade.tools.bench.detection_cascade [--cloud-url URL]

Rows: edge-only (the int8 edge detector, raw outputs decoded by shared/detection), cloud-only
(the larger cloud detector, NMS in its graph), and cascades that escalate a frame to the cloud
when any edge detection's score falls in an uncertain band [low, high): the frame's answer is
then the cloud's. Recall and precision at IoU 0.5 (right digit), and the escalation rate.
With --cloud-url the cloud detector is asked over the real V2 API (model `digit-detector-cloud`
in that server's repository), else it runs in-process through the same backend."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.detection import Detection, MatchCounts, from_raw_outputs, match
from edgecascade.tools import build_detector as det
from edgecascade.tools.build_detector_data import Canvases, canvas_splits

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "fixtures" / "models"
LOW = 0.3  # edge detections below this are dropped; the band starts here
ACCEPT = det.EDGE_SCORE_THRESHOLD  # edge detections kept in the edge answer
BANDS = [(LOW, 0.7), (LOW, 0.9), (LOW, 0.99)]


def edge_candidates(outputs: dict[str, np.ndarray], index: int) -> list[Detection]:
    return from_raw_outputs(
        outputs["scores"][index : index + 1],
        outputs["deltas"][index : index + 1],
        det.ANCHORS.cxcywh(),
        score_threshold=LOW,
        iou_threshold=det.EDGE_NMS_IOU,
        max_detections=det.MAX_DETECTIONS,
    )


def in_process_cloud(path: Path) -> Callable[[np.ndarray], list[Detection]]:
    backend = load_backend(path)
    return lambda image: det.cloud_detections(backend.predict({"image": image}))


def remote_cloud(url: str, model: str) -> Callable[[np.ndarray], list[Detection]]:
    import requests

    from edgecascade.shared.detection.served import from_served, serves_decoded
    from edgecascade.shared.v2 import decode_infer_response, encode_infer_request

    session = requests.Session()

    def ask(image: np.ndarray) -> list[Detection]:
        # Every output: `cloud serve` adds the standard decoded ones for a model whose card has
        # a detection section (what devices ask for); a bare model gives its SSD-style outputs.
        body, headers = encode_infer_request({"image": image})
        resp = session.post(f"{url}/v2/models/{model}/infer", data=body, headers=headers, timeout=10)
        resp.raise_for_status()
        outputs = decode_infer_response(resp.content, resp.headers).outputs
        if serves_decoded(outputs):
            return [Detection(d.class_index, d.score, d.box) for d in from_served(outputs)[0]]
        return det.cloud_detections(outputs)

    return ask


def _score(answers: list[list[Detection]], data: Canvases) -> MatchCounts:
    total = MatchCounts()
    for dets, boxes, classes in zip(answers, data.boxes, data.classes, strict=True):
        total.add(match(dets, boxes, classes, 0.5))
    return total


def evaluate(
    data: Canvases, edge_path: Path, cloud: Callable[[np.ndarray], list[Detection]]
) -> list[tuple[str, MatchCounts, float]]:
    """[(row name, counts, escalation rate)] for edge-only, cloud-only and each band."""
    spec_shape = load_backend(edge_path, BackendOptions(warmup_runs=0)).signature.inputs[0].shape
    images = data.images.transpose(0, 2, 3, 1) if spec_shape[-1] == 1 else data.images  # NHWC (TFLite)
    edge = load_backend(edge_path, BackendOptions(warmup_inputs={"image": images[:1]}))
    if spec_shape[0] < 0:
        outputs = edge.predict({"image": images})
        candidates = [edge_candidates(outputs, i) for i in range(len(images))]
    else:
        candidates = [
            edge_candidates(edge.predict({"image": images[i : i + 1]}), 0) for i in range(len(images))
        ]
    edge.close()
    edge_answers = [[d for d in c if d.score >= ACCEPT] for c in candidates]
    cloud_answers = [cloud(data.images[i : i + 1]) for i in range(len(data.images))]
    rows = [
        (f"edge only ({edge_path.name})", _score(edge_answers, data), 0.0),
        ("cloud only", _score(cloud_answers, data), 1.0),
    ]
    for low, high in BANDS:
        escalate = [any(low <= d.score < high for d in c) for c in candidates]
        answers = [cloud_answers[i] if escalate[i] else edge_answers[i] for i in range(len(data.images))]
        rows.append((f"cascade, band [{low}, {high})", _score(answers, data), float(np.mean(escalate))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecascade.tools.bench.detection_cascade")
    parser.add_argument("--edge-model", type=Path, default=MODELS / "digit_detector_int8.onnx")
    parser.add_argument("--cloud-model", type=Path, default=MODELS / "digit_detector_cloud.onnx")
    parser.add_argument("--cloud-url", default=None, help="ask a running cloud API instead (V2)")
    parser.add_argument("--cloud-name", default="digit-detector-cloud")
    parser.add_argument("--canvases", type=int, default=400)
    args = parser.parse_args(argv)
    _, held = canvas_splits(train_count=1, held_count=args.canvases)
    cloud = (
        remote_cloud(args.cloud_url, args.cloud_name)
        if args.cloud_url
        else in_process_cloud(args.cloud_model)
    )
    objects = sum(len(b) for b in held.boxes)
    print(f"{len(held.images)} held-out canvases, {objects} digits; IoU 0.5, right digit")
    print("| run | recall | precision | escalated |")
    print("| --- | ---: | ---: | ---: |")
    for name, counts, rate in evaluate(held, args.edge_model, cloud):
        print(f"| {name} | {counts.recall:.1%} | {counts.precision:.1%} | {rate:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
