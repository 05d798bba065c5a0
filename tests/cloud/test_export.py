"""`cloud export`: the Triton model repository parses with Triton's own model-config proto
(shipped in tritonclient) and matches each model's signature and batching settings; the KServe
InferenceService passes a JSON schema of the Kubernetes and KServe v1beta1 fields it uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from edgecascade.cloud.export import export, kserve_manifest
from edgecascade.cloud.repository import add_version
from edgecascade.shared.backends import load_backend
from edgecascade.shared.errors import ConfigError

# The parts of the InferenceService CRD (serving.kserve.io/v1beta1) and of Kubernetes' ObjectMeta
# that the export writes; no extra keys, so a misspelt field fails here rather than in a cluster.
QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"}
RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    },
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "additionalProperties": False,
            "properties": {
                "predictor": {
                    "type": "object",
                    "required": ["model"],
                    "additionalProperties": False,
                    "properties": {
                        "minReplicas": {"type": "integer", "minimum": 0},
                        "maxReplicas": {"type": "integer", "minimum": 0},
                        "model": {
                            "type": "object",
                            "required": ["modelFormat", "storageUri"],
                            "additionalProperties": False,
                            "properties": {
                                "modelFormat": {
                                    "type": "object",
                                    "required": ["name"],
                                    "additionalProperties": False,
                                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                                },
                                "protocolVersion": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
                                "runtime": {"type": "string"},
                                "storageUri": {"type": "string", "pattern": "^[a-z0-9]+://"},
                                "resources": RESOURCES,
                            },
                        },
                    },
                }
            },
        },
    },
}


def _config(path: Path) -> model_config_pb2.ModelConfig:
    # Strict: an unknown field or a wrong value type is a ParseError.
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_triton_repository_parses_and_matches_the_models(cloud_repo: Path, tmp_path: Path) -> None:
    models, manifest_path = export(
        cloud_repo, tmp_path / "out", name="digits", storage_uri="s3://bucket/triton"
    )
    triton = tmp_path / "out" / "triton"
    assert sorted(m.name for m in models) == ["digits-batched", "digits-cloud", "digits-tiny-queue"]
    assert sorted(p.name for p in triton.iterdir()) == ["digits-batched", "digits-cloud", "digits-tiny-queue"]

    cloud = _config(triton / "digits-cloud" / "config.pbtxt")
    assert (
        cloud.name == "digits-cloud"
        and cloud.platform == "onnxruntime_onnx"
        and cloud.backend == "onnxruntime"
    )
    assert cloud.max_batch_size == 16 and cloud.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in cloud.input] == [
        ("input", "TYPE_FP32", [64])
    ]
    outputs = {t.name: (model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in cloud.output}
    assert outputs == {"label": ("TYPE_INT64", [1]), "probabilities": ("TYPE_FP32", [10])}
    assert cloud.output[0].HasField("reshape") and list(cloud.output[0].reshape.shape) == []
    assert cloud.parameters["edgecascade_versions"].string_value == "1=1.0.0,2=2.0.0"
    assert cloud.parameters["edgecascade_default_version"].string_value == "1"
    assert cloud.instance_group[0].count == 1
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(cloud.instance_group[0].kind) == "KIND_CPU"
    assert sorted(p.name for p in (triton / "digits-cloud").iterdir()) == ["1", "2", "config.pbtxt"]
    source = cloud_repo / "digits-cloud" / "2.0.0" / "model.onnx"
    assert (triton / "digits-cloud" / "2" / "model.onnx").read_bytes() == source.read_bytes()
    backend = load_backend(triton / "digits-cloud" / "1" / "model.onnx")
    assert [t.name for t in backend.signature.outputs] == ["label", "probabilities"]
    backend.close()

    batched = _config(triton / "digits-batched" / "config.pbtxt")
    assert batched.max_batch_size == 16 and batched.dynamic_batching.max_queue_delay_microseconds == 300_000
    # No batching: the batch dimension stays in dims, and there is no dynamic_batching block.
    solo = _config(triton / "digits-tiny-queue" / "config.pbtxt")
    assert solo.max_batch_size == 0 and not solo.HasField("dynamic_batching")
    assert list(solo.input[0].dims) == [-1, 64]

    manifest = json.loads(manifest_path.read_text())
    jsonschema.validate(manifest, SCHEMA)
    model = manifest["spec"]["predictor"]["model"]
    assert model == {
        "modelFormat": {"name": "onnx"},
        "protocolVersion": "v2",
        "runtime": "kserve-tritonserver",
        "storageUri": "s3://bucket/triton",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    }


def test_the_schema_catches_what_kubernetes_would_refuse() -> None:
    good = kserve_manifest("digits", "gs://b/triton", namespace="ml")
    jsonschema.validate(good, SCHEMA)
    typo = json.loads(json.dumps(good))
    typo["spec"]["predictor"]["model"]["storageURI"] = typo["spec"]["predictor"]["model"].pop("storageUri")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, SCHEMA)
    for name in ("Digits", "digits_cloud", "-x", "9lives", "x" * 64):
        with pytest.raises(ConfigError, match="RFC 1123"):
            kserve_manifest(name, "s3://b/t")
    with pytest.raises(ConfigError, match="storage URI"):
        kserve_manifest("digits", "/local/folder")


def test_a_tflite_model_is_refused_naming_the_file(tmp_path: Path, models_dir: Path) -> None:
    repo = tmp_path / "repo"
    add_version(repo, "edge", "1", models_dir / "digits_edge_int8.tflite")
    with pytest.raises(ConfigError, match=r"model\.tflite.*\.onnx models only"):
        export(repo, tmp_path / "out", name="x", storage_uri="s3://b/t")


def test_cli(cloud_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "edgecascade", "cloud", "export", "--repository", str(cloud_repo)]
    cmd += ["--out", str(out), "--storage-uri", "pvc://models/triton", "--namespace", "ml"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "digits-cloud (versions 1.0.0 -> 1, 2.0.0 -> 2)" in done.stdout
    manifest = json.loads((out / "inferenceservice.json").read_text())
    assert manifest["metadata"] == {
        "name": "edgecascade-cloud",
        "namespace": "ml",
        "labels": {"app.kubernetes.io/part-of": "edgecascade"},
    }
    bad = subprocess.run(
        [*cmd[:-4], "--storage-uri", "pvc://m/t", "--name", "Bad_Name"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "--name" in bad.stderr and "RFC 1123" in bad.stderr
