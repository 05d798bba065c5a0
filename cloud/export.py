"""`cloud export`: the cloud model repository as a Triton model repository and as a KServe
InferenceService, so the same models scale out on Kubernetes behind the same V2 protocol.

Triton layout::

    <out>/triton/<model>/config.pbtxt     platform onnxruntime_onnx, batching, instances
    <out>/triton/<model>/<n>/model.onnx   n = 1, 2, ... in version order (Triton wants integers)

Our version names (1.0.0, ...) become Triton's integers in order; config.pbtxt records the
mapping and the default version in its `parameters`. KServe: one InferenceService (V2
protocol, the Triton runtime, which serves ONNX) whose storageUri holds that repository."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecascade.cloud.repository import ModelEntry, scan_repository
from edgecascade.shared.backends.registry import load_backend
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.v2 import DATATYPES

#: V2 datatype -> Triton's model-config DataType.
TRITON_TYPES = {name: ("TYPE_STRING" if name == "BYTES" else f"TYPE_{name}") for name in DATATYPES}
_DTYPE_TO_V2 = {str(dtype): name for name, dtype in DATATYPES.items()}
#: Kubernetes object names (RFC 1123 labels; KServe also needs a leading letter).
K8S_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
KSERVE_RUNTIME = "kserve-tritonserver"


@dataclass(frozen=True)
class ExportedModel:
    name: str
    config: Path
    versions: dict[str, int]  # our version -> Triton's


def export_triton(repository: Path, out: Path) -> list[ExportedModel]:
    """Write `out/<model>/...` for every model; raises ConfigError for what Triton cannot serve."""
    exported = []
    for entry in scan_repository(repository):
        folder = out / entry.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        numbers = {v.version: i for i, v in enumerate(entry.versions, start=1)}
        for version in entry.versions:
            if version.artifact.suffix != ".onnx":
                raise ConfigError(
                    "Triton's onnxruntime backend serves .onnx models only", file=str(version.artifact)
                )
            dest = folder / str(numbers[version.version])
            dest.mkdir()
            shutil.copyfile(version.artifact, dest / "model.onnx")
        config = folder / "config.pbtxt"
        config.write_text(triton_config(entry, numbers))
        exported.append(ExportedModel(entry.name, config, numbers))
    return exported


def triton_config(entry: ModelEntry, numbers: dict[str, int]) -> str:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for one model."""
    backend = load_backend(entry.versions[-1].artifact)
    try:
        signature = backend.signature
    finally:
        backend.close()
    settings = entry.settings
    batched = settings.max_batch_size > 1 and all(
        t.shape[:1] == (-1,) for t in (*signature.inputs, *signature.outputs)
    )
    lines = [
        f"name: {_q(entry.name)}",
        'platform: "onnxruntime_onnx"',
        'backend: "onnxruntime"',
        f"max_batch_size: {settings.max_batch_size if batched else 0}",
        "version_policy: { all: { } }",
    ]
    for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
        items = [_tensor(t.name, t.dtype, t.shape[1:] if batched else t.shape) for t in tensors]
        lines.append(f"{kind} [\n" + ",\n".join(items) + "\n]")
    if batched:
        delay_us = int(settings.max_queue_delay_ms * 1000)
        lines.append(
            "dynamic_batching {\n"
            f"  max_queue_delay_microseconds: {delay_us}\n"
            f"  default_queue_policy {{ max_queue_size: {settings.max_queue_size} }}\n"
            "}"
        )
    lines.append(f"instance_group [ {{ count: {settings.instances}, kind: KIND_CPU }} ]")
    params = {
        "edgecascade_versions": ",".join(f"{n}={v}" for v, n in numbers.items()),
        "edgecascade_default_version": str(numbers[entry.default_version]),
    }
    for key, value in params.items():
        lines.append(f"parameters {{ key: {_q(key)} value {{ string_value: {_q(value)} }} }}")
    return "\n".join(lines) + "\n"


def _tensor(name: str, dtype: str, dims: tuple[int, ...]) -> str:
    datatype = _DTYPE_TO_V2.get(dtype)
    if datatype is None:
        raise ConfigError(f"tensor {name!r} has dtype {dtype}, which V2 cannot carry")
    body = [f"name: {_q(name)}", f"data_type: {TRITON_TYPES[datatype]}"]
    if dims:
        body.append(f"dims: [ {', '.join(str(d) for d in dims)} ]")
    else:  # one value per row: Triton wants a dimension, reshaped away
        body.append("dims: [ 1 ]")
        body.append("reshape: { shape: [ ] }")
    return "  {\n" + "\n".join(f"    {line}" for line in body) + "\n  }"


def _q(text: str) -> str:
    return json.dumps(text)  # a protobuf text-format string literal for these ASCII names


def kserve_manifest(
    name: str, storage_uri: str, *, namespace: str | None = None, min_replicas: int = 1, max_replicas: int = 4
) -> dict[str, Any]:
    """One InferenceService serving the exported Triton repository over the V2 protocol."""
    if not K8S_NAME.match(name):
        raise ConfigError(
            "must be a lower-case RFC 1123 name starting with a letter (a-z, 0-9, '-'; at most 63)",
            key="--name",
        )
    if not re.match(r"^(s3|gs|pvc|https?|hdfs|webhdfs|oci)://\S+$", storage_uri):
        raise ConfigError(
            "expected a storage URI KServe can fetch (s3://, gs://, pvc://, https://, ...)",
            key="--storage-uri",
        )
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "edgecascade"}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {
            "predictor": {
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "model": {
                    "modelFormat": {"name": "onnx"},
                    "protocolVersion": "v2",
                    "runtime": KSERVE_RUNTIME,
                    "storageUri": storage_uri,
                    "resources": {
                        "requests": {"cpu": "1", "memory": "1Gi"},
                        "limits": {"cpu": "2", "memory": "2Gi"},
                    },
                },
            }
        },
    }


def export(
    repository: Path, out: Path, *, name: str, storage_uri: str, namespace: str | None = None
) -> tuple[list[ExportedModel], Path]:
    """Both forms under `out`: triton/ and inferenceservice.json. Returns what was written."""
    manifest = kserve_manifest(name, storage_uri, namespace=namespace)  # check names before writing
    models = export_triton(repository, out / "triton")
    path = out / "inferenceservice.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return models, path
