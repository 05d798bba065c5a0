"""V2 requests -> cascade requests, and answers -> V2 outputs. Shared by the local HTTP API and
the MQTT request topic, so an application uses one message format for both (and for the cloud)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.inputs import encode_raw
from edgecascade.shared.answer import Answer
from edgecascade.shared.errors import InputError, ProtocolError
from edgecascade.shared.features import decode_image
from edgecascade.shared.model_card import ModelCard
from edgecascade.shared.v2 import InferRequest
from edgecascade.shared.v2.checks import check_datatypes, check_finite

#: Outputs the agent can return; a request's `outputs` list picks among them.
OUTPUTS = ("label", "class_index", "confidence", "probabilities", "source")
KEY_INPUT = "key"  # optional BYTES [N]: application keys (SKU, barcode) for lookup tables


@dataclass(frozen=True, slots=True)
class InputRules:
    """How strictly requests are read (the profile's [api] section)."""

    convert_datatypes: bool = False
    max_image_pixels: int = 8_388_608


_CONVERT_SETTING = "api.convert_datatypes"


def has_images(request: InferRequest) -> bool:
    """True when the request carries encoded images (BYTES data): decode them off the event loop."""
    return any(arr.dtype.kind == "O" for name, arr in request.inputs.items() if name != KEY_INPUT)


def to_cascade_requests(
    request: InferRequest, card: ModelCard, rules: InputRules = InputRules()
) -> list[CascadeRequest]:
    """Rows of encoded features (the model's input name, FP32 [N, ...]) or images (any BYTES
    input other than `key`, one encoded image per element). Raises ProtocolError/InputError
    naming the input for a wrong datatype, shape, non-finite value or oversized image."""
    keys = request.inputs.get(KEY_INPUT)
    data = {name: arr for name, arr in request.inputs.items() if name != KEY_INPUT}
    if len(data) != 1:
        raise ProtocolError(
            f"expected one input: {card.features.input_name!r} (encoded features) or a BYTES image input; "
            f"got {sorted(data)}",
            field="inputs",
        )
    name, arr = next(iter(data.items()))
    rows: list[np.ndarray]
    raws: list[bytes | None]
    if arr.dtype.kind == "O":
        images = [bytes(v) if not isinstance(v, str) else v.encode() for v in arr.ravel().tolist()]
        rows = [_image_row(raw, i, name, card, rules) for i, raw in enumerate(images)]
        raws = list(images)
    elif name == card.features.input_name:
        arr = check_datatypes(
            data, {name: "FP32"}, convert=rules.convert_datatypes, setting=_CONVERT_SETTING
        )[name]
        check_finite({name: arr})
        rank = len(card.inputs[0].shape)
        if arr.ndim == rank - 1:
            arr = arr[None, ...]  # one example without the batch axis
        elif arr.ndim != rank:
            want = ", ".join("N" if d < 0 else str(d) for d in card.inputs[0].shape)
            raise InputError(
                f"inputs[0].shape: input {name!r} has shape {list(arr.shape)}; the model takes [{want}] "
                "(or one example without the batch axis)"
            )
        rows = [encode_raw(arr[i], card.features) for i in range(len(arr))]  # indexing beats iterating
        raws = [None] * len(rows)
    else:
        raise ProtocolError(
            f"unknown input {name!r}; this model takes {card.features.input_name!r} or a BYTES image",
            field="inputs[0].name",
        )
    if keys is not None and keys.size != len(rows):
        raise InputError(f"input 'key' has {keys.size} elements for {len(rows)} examples")
    key_list = [None] * len(rows) if keys is None else [_text(k) for k in keys.ravel().tolist()]
    base = request.id or ""
    return [
        CascadeRequest(row, request_id=f"{base}#{i}" if len(rows) > 1 else (base or None), key=key, raw=raw)
        for i, (row, key, raw) in enumerate(zip(rows, key_list, raws, strict=True))
    ]


def _image_row(raw: bytes, index: int, name: str, card: ModelCard, rules: InputRules) -> np.ndarray:
    try:
        return encode_raw(decode_image(raw, rules.max_image_pixels), card.features)
    except InputError as exc:
        raise InputError(f"inputs[0].data: image {index} of input {name!r}: {exc}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def provenance(answer: Answer) -> dict[str, Any]:
    """The answer's provenance, as the response's `parameters.provenance[i]`."""
    return {
        "request_id": answer.request_id,
        "source": answer.source,
        "escalated": answer.escalated,
        "degraded": answer.degraded,
        "reason": answer.reason,
        "edge_model": _ref(answer.edge_model),
        "cloud_model": _ref(answer.cloud_model),
        "table_version": answer.table_version,
        "latency_ms": round(answer.latency_ms, 3),
    }


def _ref(ref: Any) -> str | None:
    return None if ref is None else f"{ref.name}:{ref.version}"


def to_outputs(answers: list[Answer], wanted: list[str] | None) -> dict[str, np.ndarray]:
    names = wanted or list(OUTPUTS)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise ProtocolError(f"unknown output(s) {unknown}; available: {list(OUTPUTS)}", field="outputs")
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "label":
            out[name] = np.array([a.label.encode() for a in answers], dtype=object)
        elif name == "source":
            out[name] = np.array([a.source.encode() for a in answers], dtype=object)
        elif name == "class_index":
            out[name] = np.array([a.class_index for a in answers], dtype=np.int64)
        elif name == "confidence":
            out[name] = np.array([a.confidence for a in answers], dtype=np.float32)
        else:
            out[name] = np.array([a.probabilities for a in answers], dtype=np.float32)
    return out
