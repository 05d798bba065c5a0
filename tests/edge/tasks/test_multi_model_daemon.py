"""One daemon, two models from [[models]]: a classifier and a segmenter, each at its own V2
URL; an MQTT request names the model it is for and gets that model's own outputs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from edgecascade.tools.model_import import ImportAnswers, import_model
from edgecascade.tools.mqtt_broker import BrokerProcess, free_port
from tests.edge.daemon.support import MODELS, DaemonProcess
from tests.edge.tasks import onnx_models


def test_two_models_over_http_and_mqtt(tmp_path: Path, broker: BrokerProcess) -> None:
    seg = onnx_models.segmenter(tmp_path / "seg.onnx")
    import_model(seg, ImportAnswers(name="seg", task="tensor")).card.save_beside(seg)
    port = free_port()
    profile = tmp_path / "two.toml"
    profile.write_text(
        f'profile = "t"\ndevice_id = "dev-2"\nfleet = "t"\ndata_dir = "{tmp_path / "data"}"\nmemory_budget_mb = 300\n'
        f'[[models]]\nname = "digits-edge"\npath = "{MODELS / "digits_edge_int8.tflite"}"\n'
        f'[[models]]\nname = "seg"\npath = "{seg}"\n'
        f"[api]\nport = {port}\n[mqtt]\nenabled = true\nport = {broker.port}\nprotocol = 4\n"
    )
    daemon = DaemonProcess(profile, port, tmp_path / "d.log")
    daemon.start()
    frame = np.random.default_rng(5).random((1, 6, 5, 3), dtype=np.float32)
    want = ort.InferenceSession(str(seg), providers=["CPUExecutionProvider"]).run(["mask"], {"image": frame})[
        0
    ]
    replies: list[dict[str, object]] = []
    got = threading.Event()
    app = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="app-seg")
    app.on_message = lambda c, u, m: (replies.append(json.loads(m.payload)), got.set())
    app.connect("127.0.0.1", broker.port)
    app.loop_start()
    try:
        meta = requests.get(f"{daemon.url}/v2/models/seg", timeout=5).json()
        assert meta["outputs"] == [{"name": "mask", "datatype": "FP32", "shape": [1, 6, 5, 2]}]
        assert requests.get(f"{daemon.url}/v2/models/digits-edge", timeout=5).json()["parameters"][
            "task"
        ] == ("classification")
        app.subscribe("app/seg", qos=1)
        time.sleep(0.3)
        request = {
            "id": "m1",
            "parameters": {"reply_to": "app/seg", "model": "seg"},
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [1, 6, 5, 3],
                    "data": frame.reshape(-1).tolist(),
                }
            ],
        }
        app.publish("edgecascade/t/dev-2/requests", json.dumps(request), qos=1)
        assert got.wait(15), daemon.log.read_text()[-3000:]
        body = replies[0]
        assert body["model_name"] == "seg" and body["id"] == "m1"
        (mask,) = body["outputs"]  # type: ignore[misc]
        assert mask["name"] == "mask" and mask["shape"] == [1, 6, 5, 2]
        assert np.array_equal(np.array(mask["data"], dtype=np.float32).reshape(1, 6, 5, 2), want)
        assert body["parameters"]["provenance"][0]["edge_model"] == "seg:1.0.0"  # type: ignore[index]
    finally:
        app.loop_stop()
        daemon.stop()
    assert "Traceback" not in daemon.log.read_text()
