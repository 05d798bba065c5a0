"""Accelerators in order of preference: the first that loads is used and reported; a missing
one falls back with one log line. Tested with what this machine has (XNNPACK, the reference
kernels, ONNX Runtime's CPU provider) and with absent ones (a delegate library that does not
exist, TensorRT and CUDA providers this onnxruntime build lacks)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgecascade.edge.config.runtime import AcceleratorSettings, RuntimeSection
from edgecascade.shared.backends import BackendOptions, OnnxProvider, TFLiteDelegate, load_backend


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_onnx_default_is_the_cpu_provider(models_dir: Path) -> None:
    backend = load_backend(models_dir / "digits_edge_fp32.onnx")
    assert backend.signature.accelerator == "CPUExecutionProvider"
    assert "[onnx on CPUExecutionProvider]" in backend.describe()
    backend.close()


def test_missing_onnx_providers_fall_back_with_one_log_line(
    models_dir: Path, digits_split, caplog: pytest.LogCaptureFixture
) -> None:
    _, held = digits_split
    wanted = (
        OnnxProvider("TensorrtExecutionProvider", {"trt_fp16_enable": "1"}),
        OnnxProvider("CUDAExecutionProvider", {"device_id": "0"}),
        OnnxProvider("CPUExecutionProvider"),
    )
    with caplog.at_level(logging.WARNING):
        backend = load_backend(models_dir / "digits_edge_fp32.onnx", BackendOptions(onnx_providers=wanted))
    assert backend.signature.accelerator == "CPUExecutionProvider"
    (line,) = _warnings(caplog)
    assert "TensorrtExecutionProvider" in line and "CUDAExecutionProvider" in line and "falling back" in line
    plain = load_backend(models_dir / "digits_edge_fp32.onnx")
    np.testing.assert_array_equal(
        backend.predict({"input": held.features})["probabilities"],
        plain.predict({"input": held.features})["probabilities"],
    )
    backend.close()
    plain.close()


def test_absent_external_delegate_falls_back_to_xnnpack(
    models_dir: Path, tmp_path: Path, digits_split, caplog: pytest.LogCaptureFixture
) -> None:
    _, held = digits_split
    missing = tmp_path / "libedgetpu.so.1"
    wanted = (
        TFLiteDelegate("external", str(missing), {"device": "usb"}),
        TFLiteDelegate("xnnpack", threads=2),
    )
    with caplog.at_level(logging.WARNING):
        backend = load_backend(
            models_dir / "digits_edge_int8.tflite", BackendOptions(tflite_delegates=wanted)
        )
    assert backend.signature.accelerator == "xnnpack"
    (line,) = _warnings(caplog)
    assert f"external:{missing}" in line and "did not load" in line
    probs = backend.predict({"input": held.features})["output_0"]
    assert probs.shape == (len(held.labels), 10)
    backend.close()
    # only the absent one: the runtime's default is the last resort
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        fallback = load_backend(
            models_dir / "digits_edge_int8.tflite", BackendOptions(tflite_delegates=wanted[:1])
        )
    assert fallback.signature.accelerator == "xnnpack" and len(_warnings(caplog)) == 1
    np.testing.assert_array_equal(fallback.predict({"input": held.features})["output_0"], probs)
    fallback.close()


def test_builtin_kernels_without_delegate(models_dir: Path, digits_split) -> None:
    _, held = digits_split
    builtin = load_backend(
        models_dir / "digits_edge_int8.tflite", BackendOptions(tflite_delegates=(TFLiteDelegate("builtin"),))
    )
    assert builtin.signature.accelerator == "builtin"
    xnn = load_backend(models_dir / "digits_edge_int8.tflite")
    a = builtin.predict({"input": held.features})["output_0"]
    b = xnn.predict({"input": held.features})["output_0"]
    # two int8 kernel sets may round differently; the answers agree
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.99
    builtin.close()
    xnn.close()


def test_profile_accelerators_become_backend_options(tmp_path: Path) -> None:
    rt = RuntimeSection.model_validate(
        {
            "threads": 2,
            "accelerators": {
                "onnx_providers": [
                    {"name": "TensorrtExecutionProvider"},
                    {"name": "CUDAExecutionProvider", "options": {"device_id": "0"}},
                    {"name": "OpenVINOExecutionProvider"},
                ],
                "tflite_delegates": [
                    {"kind": "external", "library": "lib/libedgetpu.so.1", "options": {"device": "usb"}},
                    {"kind": "xnnpack", "threads": 4},
                ],
            },
        },
        context={"base_dir": tmp_path},
    )
    options = rt.backend_options()
    assert options.threads == 2
    assert [p.name for p in options.onnx_providers] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "OpenVINOExecutionProvider",
    ]
    assert dict(options.onnx_providers[1].options) == {"device_id": "0"}
    assert options.tflite_delegates[0] == TFLiteDelegate(
        "external", str(tmp_path / "lib" / "libedgetpu.so.1"), {"device": "usb"}, None
    )
    assert options.tflite_delegates[1].threads == 4
    assert RuntimeSection().backend_options().onnx_providers == ()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tflite_delegates": [{"kind": "external"}]}, "needs `library`"),
        ({"tflite_delegates": [{"kind": "xnnpack", "library": "x.so"}]}, "only for kind = 'external'"),
        ({"tflite_delegates": [{"kind": "gpu"}]}, "'xnnpack', 'external' or 'builtin'"),
        ({"onnx_providers": [{"name": "cuda"}]}, "should match pattern"),
        ({"onnx_providers": [{"name": "CUDAExecutionProvider", "device": 0}]}, "Extra inputs"),
    ],
)
def test_bad_accelerator_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AcceleratorSettings.model_validate(settings)
