"""Everything the demo prepares before it starts processes, and the telemetry book-keeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecascade.tools.datasets import Split

MODELS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware-configs"
UPDATE_VERSION = "1.1.0"
#: The camera agent's detector, and the cloud detector it escalates hard frames to.
DETECTOR, CLOUD_DETECTOR = "digit-detector", "digit-detector-cloud"
#: Held-out canvases in the camera's video, each shown for HOLD frames (10 fps: 30 s, looped).
CANVASES, HOLD = 60, 5


@dataclass
class Prepared:
    work: Path
    held: Split
    cloud_repo: Path
    tokens: dict[str, str]
    tokens_file: Path
    telemetry_store: Path
    video: Path
    frame_labels: list[int]
    signing_key: Path
    public_key: str
    update_model: Path
    golden: Path  # held-out inputs: the device checks the candidate's answers on them before it serves
    canvas_video: Path  # held-out digit canvases for the camera agent's detector
    canvas_objects: list[list[dict[str, object]]]  # per frame of it: the true digits and boxes
    camera_profile: Path  # the camera agent's profile: its shipped one plus the detector

    def agent_env(
        self, device: str, api_port: int, broker_port: int, protocol: int, cloud_url: str, *, camera: bool
    ) -> dict[str, str]:
        """Environment overrides that turn a shipped device profile into a demo device."""
        env = {
            "EDGECASCADE_DEVICE_ID": device,
            "EDGECASCADE_FLEET": "demo",
            "EDGECASCADE_DATA_DIR": str(self.work / "devices" / device),
            "EDGECASCADE_API__PORT": str(api_port),
            "EDGECASCADE_MQTT__ENABLED": "true",
            "EDGECASCADE_MQTT__PORT": str(broker_port),
            "EDGECASCADE_MQTT__PROTOCOL": str(protocol),
            "EDGECASCADE_CLOUD__URL": cloud_url,
            "EDGECASCADE_CLOUD__TOKEN": self.tokens[device],
            "EDGECASCADE_CLOUD__BREAKER_RESET_S": "2",
            "EDGECASCADE_UPDATES__ENABLED": "true",
            "EDGECASCADE_UPDATES__PUBLIC_KEY": self.public_key,
            "EDGECASCADE_UPDATES__WATCH_WINDOW_S": "10",
            "EDGECASCADE_TELEMETRY__METRICS_INTERVAL_S": "5",
            "EDGECASCADE_DEFERRED__ENABLED": "true",
        }
        if camera:
            env.update(
                {
                    "EDGECASCADE_CAMERA__ENABLED": "true",
                    "EDGECASCADE_CAMERA__MODEL": DETECTOR,
                    "EDGECASCADE_CAMERA__SOURCE": str(self.canvas_video),
                    "EDGECASCADE_CAMERA__FPS": "10",
                    "EDGECASCADE_CAMERA__LOOP": "true",
                    "EDGECASCADE_CAMERA__REALTIME": "true",
                }
            )
        return env

    def push_args(self, broker_port: int, protocol: int) -> list[str]:
        return [
            "--log-level",
            "WARNING",
            "fleet",
            "push",
            str(self.update_model),
            "--fleet",
            "demo",
            "--broker",
            f"127.0.0.1:{broker_port}",
            "--protocol",
            str(protocol),
            "--key",
            str(self.signing_key),
            "--state-dir",
            str(self.work / "fleet"),
            "--target",
            "all",
            "--version",
            UPDATE_VERSION,
            "--golden",
            str(self.golden),
            "--timeout",
            "60",
        ]

    def devices(self) -> list[str]:
        return sorted(self.tokens)

    def telemetry_totals(self) -> dict[str, dict[str, int]]:
        """Per device: records produced (sequence numbers the buffer gave out), delivered (stored
        once in the cloud), still buffered on the device (not lost: sent on the next start),
        dropped by the buffer's bounds (counted), and lost (must be zero)."""
        from edgecascade.cloud.ingest import open_store
        from edgecascade.edge.telemetry.buffer import TelemetryBuffer

        store = open_store(str(self.telemetry_store))
        totals: dict[str, dict[str, int]] = {}
        try:
            for device in self.devices():
                path = self.work / "devices" / device / "telemetry.sqlite3"
                if not path.exists():
                    continue
                buf = TelemetryBuffer(path, max_bytes=1 << 40, max_age_s=1e12)
                stored = set(store.seqs(device))
                # A record stays buffered until the ingester's acknowledgement arrives, so one
                # can be both stored and still on the device: count it once, as delivered.
                produced = buf.last_seq - buf.start_seq  # sequence numbers start at the time
                buffered = sum(s not in stored for s in buf.seqs())
                by_reason = buf.dropped_by_reason()
                dropped = sum(by_reason.values()) - by_reason.get("invalid", 0)  # invalid ones had no seq
                buf.close()
                delivered = len(stored)
                totals[device] = {
                    "produced": produced,
                    "delivered": delivered,
                    "buffered": buffered,
                    "dropped": dropped,
                    "lost": produced - delivered - buffered - dropped,
                }
        finally:
            store.close()
        return totals

    def wait_for_drain(self, say: Callable[[str], None], timeout_s: float) -> dict[str, dict[str, int]]:
        deadline = time.monotonic() + timeout_s
        while True:
            totals = self.telemetry_totals()
            pending = sum(t["buffered"] for t in totals.values())
            if pending == 0 or time.monotonic() > deadline:
                return totals
            say(f"  {pending} telemetry records still buffered on devices")
            time.sleep(2)


def prepare(work: Path, say: Callable[[str], None]) -> Prepared:
    from edgecascade.cloud.repository import seed_demo_repository
    from edgecascade.shared.manifest import public_key_b64, save_private_key
    from edgecascade.tools.build_detector_data import canvas_splits
    from edgecascade.tools.datasets import load_split
    from edgecascade.tools.make_video import read_objects, write_canvas_video, write_digits_video

    if not (MODELS / "digits_edge_int8.tflite").exists():
        from edgecascade.tools.build_demo import build_demo

        say("building the demo models (first run)")
        build_demo(MODELS)
    _, held = load_split()
    repo = seed_demo_repository(work / "cloud-models", MODELS)
    tokens = {d: f"demo-token-{d}" for d in ("demo-pi4", "demo-storepc", "demo-jetson")}
    tokens_file = work / "tokens.toml"
    tokens_file.write_text("".join(f'{d} = "{t}"\n' for d, t in tokens.items()))
    video = work / "digits.avi"
    write_digits_video(video, held.images, held.labels, fps=10, scale=8)
    say(f"wrote a video of the {len(held.labels)} held-out digits")
    detector = add_detectors(work / "detector", repo)
    _, canvases = canvas_splits(train_count=1, held_count=CANVASES)
    canvas_video = work / "canvases.avi"
    write_canvas_video(canvas_video, canvases.images, canvases.boxes, canvases.classes, hold=HOLD, fps=10)
    say(
        f"wrote a video of {CANVASES} canvases of held-out digits for the camera agent's detector; "
        f"cloud detector {CLOUD_DETECTOR} added to the cloud repository"
    )
    key = Ed25519PrivateKey.generate()
    key_path = work / "fleet" / "signing.key"
    key_path.parent.mkdir(parents=True, exist_ok=True)
    save_private_key(key, key_path)
    update = build_update_model(work / "update", say)
    golden = work / "update" / "golden.npz"
    np.savez(golden, input=held.features[:16].astype(np.float32))
    return Prepared(
        work,
        held,
        repo,
        tokens,
        tokens_file,
        work / "telemetry.sqlite3",
        video,
        [int(v) for v in held.labels],
        key_path,
        public_key_b64(key.public_key()),
        update,
        golden,
        canvas_video,
        read_objects(canvas_video),
        write_camera_profile(work / "profiles" / "jetson-orin-nano-detector.toml", detector),
    )


def add_detectors(dest: Path, repo: Path) -> Path:
    """The committed digit detectors as detection cards: the int8 edge detector (raw anchor
    outputs) into `dest`, the cloud detector (SSD-style outputs, NMS in its graph) into the
    cloud repository `repo`. Returns the edge detector."""
    import shutil

    from edgecascade.cloud.repository import add_version
    from edgecascade.shared.model_card import ModelCard
    from edgecascade.tools.build_detector import detection_card

    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("digit_detector_int8.onnx", "digit_detector_cloud.onnx"):
        path = dest / name
        shutil.copyfile(MODELS / name, path)
        detection_card(ModelCard.load_for(MODELS / name)).save_beside(path)
        paths.append(path)
    add_version(repo, CLOUD_DETECTOR, "1", paths[1])
    return paths[0]


def write_camera_profile(path: Path, detector: Path) -> Path:
    """The shipped Jetson profile with its one model as the first [[models]] entry (the model
    updates replace) and the digit detector beside it, for the camera."""
    import re

    text = (FIRMWARE / "jetson-orin-nano.toml").read_text()
    block = re.search(r"^\[model\]\n(?:(?!\[).*\n)*", text, re.M)
    if block is None:
        raise RuntimeError("firmware-configs/jetson-orin-nano.toml has no [model] section")
    model = dict(re.findall(r'^(\w+) = "(.*)"$', block.group(0), re.M))
    classifier = (FIRMWARE / model["path"]).resolve()
    models = f"""[[models]]
name = "{model["name"]}"
path = "{classifier}"

[[models]]
name = "{DETECTOR}"
path = "{detector}"
cloud_model = "{CLOUD_DETECTOR}"
# A frame is hard when a digit scores in [0.3, 0.7); up to half the frames may go to the cloud.
cascade = {{ policies = [{{ kind = "entropy", threshold = 0.5 }}], max_escalation_fraction = 0.5 }}
detection = {{ uncertain_low = 0.3, uncertain_high = 0.7, report_threshold = 0.5 }}
cloud_detection = {{ answer = "decoded" }}

"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[: block.start()] + models + text[block.end() :])
    return path


def build_update_model(out: Path, say: Callable[[str], None]) -> Path:
    """digits-edge 1.1.0: the same architecture retrained with another seed, int8 ONNX."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    from edgecascade.tools.build_demo import EDGE_ALPHA, EDGE_HIDDEN, evaluate, write_card
    from edgecascade.tools.datasets import load_split
    from edgecascade.tools.onnx_export import mlp_to_onnx, quantize_onnx_int8

    out.mkdir(parents=True, exist_ok=True)
    train, held = load_split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(EDGE_HIDDEN, alpha=EDGE_ALPHA, max_iter=2000, random_state=7).fit(
            train.features, train.labels
        )
    fp32, int8 = out / "digits_edge_fp32.onnx", out / "digits_edge_v110_int8.onnx"
    mlp_to_onnx(mlp, train.features.shape[1], fp32)
    quantize_onnx_int8(fp32, int8, train.features)
    card = write_card(
        int8,
        name="digits-edge",
        version=UPDATE_VERSION,
        quantization="int8-qdq",
        probs=evaluate(int8, held.features),
        labels=held.labels,
        float_source=fp32.name,
        tools={},
    )
    say(
        f"built model update digits-edge {UPDATE_VERSION} (int8 ONNX, held-out accuracy {card.heldout_accuracy:.2%})"
    )
    return int8
