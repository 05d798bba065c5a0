"""Every classifier with lookups has its own table and answer cache: real models, real tables
built by the real cloud model over the held-out digits, real SQLite caches on disk."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.edge.agent import Agent
from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.lookup import AnswerCache, lookup_paths
from edgecascade.edge.updates.store import Installed
from edgecascade.edge.updates.table_store import TableStore


def _profile(tmp_path: Path, models_dir: Path, models: list[dict[str, Any]]) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "runtime": {"warmup_runs": 0},
            # Every example is "hard", so a table or cache hit is what answers before the model.
            "cascade": {"policies": [{"kind": "max_prob", "threshold": 1.0}]},
            "models": models,
        }
    )


def _two_classifiers(models_dir: Path, table_b: Path | None = None) -> list[dict[str, Any]]:
    b: dict[str, Any] = {"name": "b", "path": str(models_dir / "digits_edge_fp32.onnx")}
    if table_b is not None:
        b["table"] = str(table_b)
    return [{"name": "a", "path": str(models_dir / "digits_edge_int8.tflite")}, b]


def _predict(agent: Agent, name: str, row: np.ndarray) -> Answer:
    task = agent.get(name).task
    return task.cascade.answer(CascadeRequest(row, request_id=name))  # type: ignore[attr-defined]


def test_a_hit_on_model_bs_table_answers_for_b_not_a(
    tmp_path: Path, models_dir: Path, heldout_table: Path, digits_split
) -> None:  # type: ignore[no-untyped-def]
    _, held = digits_split
    agent = Agent.from_profile(_profile(tmp_path, models_dir, _two_classifiers(models_dir, heldout_table)))
    try:
        assert sorted(agent.model_lookups) == ["a", "b"]
        b_answer = _predict(agent, "b", held.features[0])
        a_answer = _predict(agent, "a", held.features[0])
        assert b_answer.source == "table" and b_answer.table_version == "t1"
        assert a_answer.source == "edge" and a_answer.edge_model is not None
        counters = agent.counters()
    finally:
        agent.close()
    assert counters["model_b_table_hits"] == 1 and counters["model_a_table_hits"] == 0
    # The first classifier's counters also keep their names from before counters were per model.
    assert counters["cache_misses"] == counters["model_a_cache_misses"] == 1
    assert counters["model_b_cache_misses"] == 0
    data = tmp_path / "data"
    assert (data / "answer_cache.sqlite3").is_file()  # a: the default model keeps its path
    assert (data / "lookups" / "b" / "answer_cache.sqlite3").is_file()
    assert not (data / "lookups" / "a").exists()


def test_an_upgraded_device_keeps_its_delivered_table_and_cached_answers(
    tmp_path: Path, models_dir: Path, heldout_table: Path, cloud, digits_split
) -> None:  # type: ignore[no-untyped-def]
    """A single-model device's files, as the agent before per-model lookups left them: the
    delivered table under <data_dir>/tables (pointer `active`) and the answer cache at
    <data_dir>/answer_cache.sqlite3. Upgraded to two models, the first still answers from them."""
    _, held = digits_split
    data = tmp_path / "data"
    version_dir = data / "tables" / "t1"
    version_dir.mkdir(parents=True)
    shutil.copyfile(heldout_table, version_dir / "digits.ectable")
    TableStore(data / "tables").set_active(Installed("t1", version_dir / "digits.ectable"), None)
    outside = np.zeros_like(held.features[0])  # not in the table: answered by the cache
    cached = AnswerCache(data / "answer_cache.sqlite3", max_entries=10, max_bytes=1 << 20, ttl_s=3600.0)
    request = CascadeRequest(outside)
    reply = cloud.infer(outside, request_id="old")
    top = int(reply.probabilities.argmax())
    cached.remember(
        request,
        Answer(str(top), top, float(reply.probabilities[top]), "cloud", None, cloud_model=reply.model,
               probabilities=tuple(reply.probabilities.tolist())),
    )  # fmt: skip
    cached.close()

    profile = _profile(tmp_path, models_dir, _two_classifiers(models_dir))
    assert lookup_paths(profile, "a").tables == data / "tables"
    agent = Agent.from_profile(profile)
    try:
        from_table = _predict(agent, "a", held.features[1])
        from_cache = _predict(agent, "a", outside)
        b_answer = _predict(agent, "b", outside)
    finally:
        agent.close()
    assert from_table.source == "table" and from_table.table_version == "t1"
    assert from_cache.source == "cache" and from_cache.class_index == top
    assert b_answer.source == "edge"  # b has no table and an empty cache of its own


def test_each_cache_is_invalidated_by_its_own_cloud_models_version_only(tmp_path: Path) -> None:
    caches = {
        m: AnswerCache(tmp_path / m / "answer_cache.sqlite3", max_entries=10, max_bytes=1 << 20, ttl_s=3600.0)
        for m in ("a", "b")
    }
    row = np.linspace(0, 1, 64, dtype=np.float32)

    def cloud_answer(version: str) -> Answer:
        return Answer("3", 3, 0.9, "cloud", None, cloud_model=ModelRef("big", version), probabilities=(0.9,))

    try:
        for cache in caches.values():
            cache.remember(CascadeRequest(row), cloud_answer("1"))
        caches["b"].remember(CascadeRequest(row * 0.5), cloud_answer("2"))  # b's cloud model moved on
        assert caches["a"].stats.entries == 1 and caches["a"].stats.invalidations == 0
        assert caches["b"].stats.entries == 1 and caches["b"].stats.invalidations == 1
        assert caches["b"].lookup(CascadeRequest(row)) is None
        hit = caches["a"].lookup(CascadeRequest(row))
        assert hit is not None and hit.cloud_model == ModelRef("big", "1")
    finally:
        for cache in caches.values():
            cache.close()
