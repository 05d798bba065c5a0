"""The detection cascade benchmark, end to end against the real cloud API serving the cloud
detector, on held-out canvases of held-out digits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgecascade.shared.model_card import ModelCard
from edgecascade.tools.bench.detection_cascade import evaluate, in_process_cloud, remote_cloud
from edgecascade.tools.build_detector import detection_card
from edgecascade.tools.build_detector_data import canvas_splits
from tests.support.cloud_server import cloud_server


@pytest.mark.parametrize("card", [False, True], ids=["bare-model", "detection-card"])
def test_cascade_over_the_real_cloud_api_matches_in_process(
    tmp_path: Path, models_dir: Path, card: bool
) -> None:
    _, held = canvas_splits(train_count=1, held_count=80)
    edge = models_dir / "digit_detector_int8.onnx"
    local = evaluate(held, edge, in_process_cloud(models_dir / "digit_detector_cloud.onnx"))
    repo = tmp_path / "repo"
    (repo / "digit-detector-cloud" / "1").mkdir(parents=True)
    served = repo / "digit-detector-cloud" / "1" / "model.onnx"
    shutil.copyfile(models_dir / "digit_detector_cloud.onnx", served)
    if card:  # the cloud then answers with the standard decoded outputs as well
        cloud_card = ModelCard.load_for(models_dir / "digit_detector_cloud.onnx")
        detection_card(cloud_card).model_copy(update={"file": served.name}).save_beside(served)
    with cloud_server(repo) as server:
        remote = evaluate(held, edge, remote_cloud(server.url, "digit-detector-cloud"))
    names = [r[0] for r in remote]
    assert names[:2] == ["edge only (digit_detector_int8.onnx)", "cloud only"] and len(names) == 5
    for (_, a, rate_a), (_, b, rate_b) in zip(local, remote, strict=True):
        assert (a.tp, a.fp, a.fn, rate_a) == (b.tp, b.fp, b.fn, rate_b)
    by_name = {name: (counts, rate) for name, counts, rate in remote}
    edge_counts, _ = by_name["edge only (digit_detector_int8.onnx)"]
    cloud_counts, _ = by_name["cloud only"]
    assert cloud_counts.recall > edge_counts.recall  # the larger model is better
    widest, widest_rate = remote[-1][1], remote[-1][2]
    assert 0.0 < widest_rate < 1.0
    # escalating the uncertain frames recovers part of the gap
    assert widest.recall > edge_counts.recall
    assert widest.tp + widest.fn == edge_counts.tp + edge_counts.fn == sum(len(b) for b in held.boxes)
