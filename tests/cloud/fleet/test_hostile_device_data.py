"""What the fleet tools read from devices is untrusted: a device can be buggy, compromised, or an
impostor with a leaked credential. Retained statuses, presence, telemetry bodies and dead-letter
reasons from such devices, through a real Mosquitto, the real ingester and the real CLI, must
never give a traceback, a hang, unbounded memory or a wrong fleet decision, and nothing they
carry may reach the fleet manager's terminal as a control character."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgecascade.cli import main
from edgecascade.cloud.fleet.status_board import StatusBoard
from edgecascade.shared.mqtt import MqttConnection, MqttSettings, Topics
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.cloud.ingest.support import FLEET as INGEST_FLEET
from tests.cloud.ingest.support import start_ingester, wait_for

FLEET = "hostile"
TOPICS = Topics(FLEET)
MODEL = "digits-edge"  # the name in model_v2's card


def _status(device: str, model: str = MODEL, **fields: Any) -> dict[str, Any]:
    """A status as a device writes it; a dict, so a test can put NaN or wrong types in."""
    base: dict[str, Any] = {
        "device": device,
        "profile": "raspberry-pi-4",
        "groups": ["g1"],
        "agent_version": "0.1.0",
        "model": model,
        "active_version": "1.0.0",
        "state": "active",
        "updated_at": time.time(),
    }
    return {**base, **fields}


def _table(device: str, **fields: Any) -> dict[str, Any]:
    base = {"device": device, "table": "digits", "active_version": "t2", "state": "active"}
    return {**base, "updated_at": time.time(), **fields}


def _raw(value: dict[str, Any]) -> bytes:
    # json.dumps writes NaN and Infinity as bare tokens, as a buggy or hostile device would.
    return json.dumps(value).encode()


def _device(broker: BrokerProcess, client_id: str) -> MqttConnection:
    conn = MqttConnection(MqttSettings(port=broker.port, client_id=client_id))
    assert conn.start(wait_s=5)
    return conn


def _publish_all(conn: MqttConnection, messages: list[tuple[str, bytes]], retain: bool = True) -> None:
    infos = [conn.publish(topic, payload, qos=1, retain=retain) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(10)


def _fleet_status(broker: BrokerProcess, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["fleet", "status", "--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}", "--wait", "0.2"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _unsafe(text: str) -> set[str]:
    """Characters a terminal would act on or hide (newlines between lines aside)."""
    return {c for c in text if c != "\n" and not c.isprintable()}


def test_garbage_statuses_are_ignored_and_never_hide_or_replace_the_good_ones(
    broker: BrokerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `updated_at: NaN` (or a clock past time_t) from one device ended `fleet status`
    with a traceback, so no device was shown; another device's status could replace pi-good's
    (state, table) by naming it in its payload; a 30 KB version made every row 30 KB wide."""
    good = "pi-good"
    st = TOPICS.update_status
    garbage: list[tuple[str, bytes]] = [
        (st("g01", MODEL), b'{"device": "g01", "profile"'),  # truncated
        (st("g02", MODEL), b"not json"),
        (st("g03", MODEL), b"\xff\xfe\x00\x80garbage"),  # not UTF-8
        (st("g04", MODEL), b"null"),
        (st("g05", MODEL), b"[]"),
        (st("g06", MODEL), b"42"),
        (st("g07", MODEL), b"{}"),
        (st("g08", MODEL), _raw(_status("g08", state="pwned"))),
        (st("g09", MODEL), _raw(_status("g09", updated_at="yesterday"))),
        (st("g10", MODEL), _raw(_status("g10", admin=True))),
        (st("g11", MODEL), _raw(_status("g11", updated_at=float("nan")))),
        (st("g12", MODEL), _raw(_status("g12", updated_at=float("inf")))),
        (st("g13", MODEL), _raw(_status("g13", updated_at=float("-inf")))),
        (
            st("g14", MODEL),
            _raw(_status("g14"))[:-1] + b', "health": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        ),
        (st("g15", MODEL), _raw(_status("g15", reason="x" * 100_000))),  # over 64 KiB
        (st("g16", MODEL), _raw(_status("g16"))[:-1] + b', "bytes_received": ' + b"9" * 5000 + b"}"),
        # Impostors: each names another device or model than its topic does.
        (st("g17", MODEL), _raw(_status(good, state="failed", reason="forged"))),
        (st(good, "other"), _raw(_status(good, state="failed", reason="forged model"))),
        (f"edgecascade/{FLEET}/models/status/{MODEL}", _raw(_status("models"))),  # a topic word
        (TOPICS.legacy_update_status("g20"), _raw(_status(good, state="failed"))),
        (TOPICS.table_status("g21"), _raw(_table(good, state="failed", target_version="t3"))),
        (TOPICS.table_status("g22"), _raw(_table("g22", model="seg"))),  # on the default table's topic
    ]
    odd_but_kept: list[tuple[str, bytes]] = [
        (st("far-clock", MODEL), _raw(_status("far-clock", updated_at=1e300))),
        (TOPICS.presence("far-clock"), b"\x1b[31m" + b"online" * 10_000),
        (
            st("nan-progress", MODEL),
            _raw(
                _status(
                    "nan-progress",
                    state="downloading",
                    progress=float("nan"),
                    health={"escalation_rate": {"before": float("nan"), "after": float("inf"), "samples": 3}},
                )
            ),
        ),
        (st("huge-progress", MODEL), _raw(_status("huge-progress", state="downloading", progress=1e300))),
        (st("long-version", MODEL), _raw(_status("long-version", active_version="9" * 30_000))),
    ]
    # The broker drops this one for the fleet manager (its MQTT 5 Maximum Packet Size).
    too_big = [(st("g23", MODEL), _raw(_status("g23", reason="y" * 1024 * 1024)))]
    conn = _device(broker, "hostile-devices")
    try:
        _publish_all(
            conn, [(st(good, MODEL), _raw(_status(good))), (TOPICS.table_status(good), _raw(_table(good)))]
        )
        _publish_all(conn, [(TOPICS.presence(good), b"online")])
        _publish_all(conn, garbage + odd_but_kept + too_big)
        rc, out, err = _fleet_status(broker, capsys)
    finally:
        conn.stop()
    assert rc == 0, err
    assert "Traceback" not in err
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["far-clock", "huge-progress", "long-version", "nan-progress", good]
    by_device = {r[0]: r for r in rows}
    pi_good = by_device[good]
    assert pi_good[:4] == [good, MODEL, "1.0.0", "active"] and pi_good[6:] == ["online", "digits", "t2"]
    assert by_device["far-clock"][4:6] == ["?", "?"]  # LAST SEEN: no such date; PRESENCE: not a word
    assert by_device["nan-progress"][3:4] == ["downloading"] and "nan->inf" in " ".join(
        by_device["nan-progress"]
    )
    assert by_device["huge-progress"][3] == "downloading" and by_device["huge-progress"][4][0].isdigit()
    assert max(len(line) for line in out.splitlines()) < 300  # the long version is cut
    assert f"warning: ignored {len(garbage)} malformed status message(s)" in err


def test_device_text_reaches_the_terminal_escaped(
    broker: BrokerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ESC sequences, carriage returns, backspaces, C1 controls and bidi overrides in a
    device id, a version, a reason, a health key or a table name went to the terminal raw (a
    failed device could repaint itself as active); a non-ASCII model name on a Latin-1
    terminal ended `fleet status` with UnicodeEncodeError."""
    # The broker refuses C0/C1 controls in topics, not bidi overrides: a device id holding one
    # is refused as a topic level (shared/topic_segments.py), so its status shows no row.
    evil, spoof = "pi-1", "pi-\u202e9"
    status = _status(
        evil,
        state="failed",
        active_version="1.0\x1b[2J",
        reason="bad\r\x1b[32mactive\x08\x08\x9b5m",
        health={"\x1b]0;pwned\x07": {"before": 0.1, "after": 0.2, "samples": 5}},
    )
    messages = [
        (TOPICS.update_status(evil, MODEL), _raw(status)),
        (TOPICS.table_status(evil), _raw(_table(evil, table="t\x1b[5m", active_version="t2\u2028"))),
        (TOPICS.presence(evil), b"online"),
        (TOPICS.update_status(spoof, MODEL), _raw(_status(spoof))),
        (TOPICS.update_status("caf\u00e9-2", "\u6a21\u578b"), _raw(_status("caf\u00e9-2", "\u6a21\u578b"))),
        (f"edgecascade/{FLEET}/evil\u202e/status/m", b"\x1b[2J not a status"),
    ]
    conn = _device(broker, "hostile-text")
    try:
        _publish_all(conn, messages)
        rc, out, err = _fleet_status(broker, capsys)
        env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
        argv = ["fleet", "status", "--fleet", FLEET, "--broker", f"127.0.0.1:{broker.port}", "--wait", "0.2"]
        latin = subprocess.run(
            [sys.executable, "-m", "edgecascade", *argv], env=env, capture_output=True, timeout=60
        )
    finally:
        conn.stop()
    assert rc == 0, err
    assert not _unsafe(out) and not _unsafe(err), (_unsafe(out), _unsafe(err))
    assert not any(line.startswith(("pi-\u202e9", "pi-\\u202e9")) for line in out.splitlines())
    for visible in (
        "1.0\\x1b[2J",
        "bad\\r\\x1b[32mactive\\x08\\x08\\x9b5m",
        "\\x1b]0;pwned\\x07",
    ):
        assert visible in out, visible
    assert "t\\x1b[5m t2\\u2028" in out
    assert "caf\u00e9-2" in out and "\u6a21\u578b" in out  # printable text stays as it is
    assert "evil\\u202e/status/m" in err  # the warning names the topic, escaped
    assert latin.returncode == 0, latin.stderr.decode("latin-1")[-2000:]
    latin_rows = [line.split()[:2] for line in latin.stdout.decode("latin-1").splitlines()]
    assert ["caf\u00e9-2", "\\u6a21\\u578b"] in latin_rows


def test_follow_counts_no_impostor_or_garbage_answer_and_escapes_reasons(
    broker: BrokerProcess, tmp_path: Path, model_v2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: during `fleet push --target group:g1`, pi-imp's status naming pi-x (on pi-imp's
    own topic) and pi-z's `active` with `updated_at: NaN` were both counted, so the push
    reported `active: 2` and exit 0 while pi-x had failed; pi-x's reason reached the terminal raw."""
    key = tmp_path / "signing.key"
    assert main(["fleet", "keygen", "--key", str(key)]) == 0
    conn = _device(broker, "hostile-fleet")
    _publish_all(conn, [(TOPICS.update_status(d, MODEL), _raw(_status(d))) for d in ("pi-x", "pi-z")])

    def answer(push_id: str) -> None:
        forged = _status("pi-x", push_id=push_id, target_version="1.1.0")
        conn.publish(TOPICS.update_status("pi-imp", MODEL), _raw(forged), qos=1, retain=True)
        nan = _status("pi-z", push_id=push_id, updated_at=float("nan"))
        conn.publish(TOPICS.update_status("pi-z", MODEL), _raw(nan), qos=1, retain=True)
        time.sleep(1.0)  # the real answer comes last: the forged ones must not have ended the wait
        failed = _status("pi-x", state="failed", push_id=push_id, reason="golden\r\x1b[32mactive\x1b[0m")
        conn.publish(TOPICS.update_status("pi-x", MODEL), _raw(failed), qos=1, retain=True)

    def on_manifest(msg: Any) -> None:
        if msg.payload:
            threading.Thread(target=answer, args=(json.loads(msg.payload)["push_id"],), daemon=True).start()

    conn.subscribe(TOPICS.manifest_group(MODEL, "g1"), on_manifest)
    try:
        capsys.readouterr()
        rc = main(
            ["fleet", "push", str(model_v2), "--target", "group:g1", "--timeout", "3", "--fleet", FLEET,
             "--broker", f"127.0.0.1:{broker.port}", "--key", str(key), "--state-dir", str(tmp_path / "state")]
        )  # fmt: skip
        out = capsys.readouterr().out
    finally:
        conn.stop()
    assert rc == 1, out
    assert not _unsafe(out), _unsafe(out)
    assert "sent to 2 device(s): pi-x, pi-z" in out
    assert "failed: 1: pi-x (golden\\r\\x1b[32mactive\\x1b[0m)" in out
    assert "no answer: 1: pi-z (a status it sent was ignored: updated_at is nan, not a finite time)" in out
    assert "active:" not in out


def test_a_flood_of_statuses_never_holds_fleet_status_up(
    broker: BrokerProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `fleet status` (and every push) waited for a pause of 0.5 s between statuses, so
    a device publishing its status every 20 ms, or a client making up a new device every 0.1 s,
    held it up for as long as it kept on. Updates of known statuses no longer count, and new
    devices at most MAX_SETTLE_S (here 1.5 s), which the command then says."""
    monkeypatch.setattr(StatusBoard, "MAX_SETTLE_S", 1.5, raising=False)
    stop = threading.Event()
    conn = _device(broker, "flooder")

    def flood() -> None:
        n = 0
        while not stop.wait(0.02):
            conn.publish(TOPICS.update_status("chatty", MODEL), _raw(_status("chatty")), qos=0)
            n += 1
            if n % 5 == 0:
                conn.publish(
                    TOPICS.update_status(f"new-{n:06d}", MODEL), _raw(_status(f"new-{n:06d}")), qos=0
                )

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    result: list[tuple[int, str, str]] = []
    runner = threading.Thread(target=lambda: result.append(_fleet_status(broker, capsys)), daemon=True)
    started = time.monotonic()
    try:
        runner.start()
        runner.join(15)
        took = time.monotonic() - started
    finally:
        stop.set()
        runner.join(15)
        flooder.join(5)
        conn.stop()
    assert took < 5, f"fleet status took {took:.1f} s under the flood"
    ((rc, out, err),) = result
    assert rc == 0 and out.splitlines()[1].split()[:2] == ["chatty", MODEL]
    assert "warning: statuses were still arriving after 1.5 s: the table may lack some devices" in err


def test_many_devices_are_all_read_and_fake_ones_held_within_the_limit(
    broker: BrokerProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the board subscribed at QoS 1, so the broker sent only as many retained statuses
    as its client queue holds (1,020 here, with Mosquitto's default max_queued_messages) and
    `fleet status` showed a smaller fleet; and every distinct device a client made up was held,
    without limit. Now all 3,000 are read, at most MAX_STATUSES (here 2,000) held and the rest
    counted, and the table stays one sorted row per status."""
    monkeypatch.setattr(StatusBoard, "MAX_STATUSES", 2000, raising=False)
    fakes = [f"fake-{i:05d}" for i in range(3000)]
    conn = _device(broker, "faker")
    try:
        _publish_all(conn, [(TOPICS.update_status(d, MODEL), _raw(_status(d))) for d in reversed(fakes)])
        rc, out, err = _fleet_status(broker, capsys)
    finally:
        conn.stop()
    assert rc == 0, err
    devices = [line.split()[0] for line in out.splitlines()[1:]]
    assert len(devices) == 2000 and devices == sorted(devices) and set(devices) <= set(fakes)
    assert "warning: 1000 status message(s) not kept: the board holds at most 2000 statuses" in err


def test_fleet_telemetry_escapes_device_ids_models_and_dead_letter_reasons(
    broker: BrokerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a body key `\\x1b[2J\\r...` (quoted in the dead letter's reason), a served model
    named with ESC and CR, and a device id with U+202E were printed raw by `fleet telemetry`."""
    path = tmp_path / "telemetry.sqlite3"
    ingester, ing_conn = start_ingester(broker.port, path, client_id="ingest-hostile")
    device = "cam-\u202e1"
    inference = {
        "model": "digits", "model_version": "1", "source": "edge", "confidence": 0.9, "label": "7",
        "latency_ms": 1.0, "escalated": False, "degraded": False, "reason": "confident",
        "served_model": "\x1b[31mdigits\r\u202e",
    }  # fmt: skip
    batch = {
        "v": 1,
        "device": device,
        "records": [
            {"seq": 1, "ts": 1.0, "kind": "event", "body": {"\x1b[2J\rkey": float("nan")}},
            {"seq": 2, "ts": 1.0, "kind": "inference", "body": inference},
        ],
    }
    conn = _device(broker, "telemetry-sender")
    try:
        _publish_all(conn, [(Topics(INGEST_FLEET).telemetry(device), _raw(batch))], retain=False)
        wait_for(lambda: ingester.counters()["dead_lettered"] == 1 and ingester.counters()["stored"] == 1)
    finally:
        conn.stop()
        ingester.stop()
        ing_conn.stop()
    outputs = []
    for extra in ([], ["--dead-letters"], ["--dead-letters", "--device", device], ["--by-model"]):
        capsys.readouterr()
        assert main(["fleet", "telemetry", "--store", str(path), *extra]) == 0
        outputs.append(capsys.readouterr().out)
    summary, letters, letters_of_device, by_model = outputs
    for out in outputs:
        assert not _unsafe(out), _unsafe(out)
    assert summary.splitlines()[1].startswith("cam-\\u202e1 ")
    assert letters == letters_of_device
    assert "records.0.body.\\x1b[2J\\rkey: nan is not a finite number" in letters
    assert "\\x1b[31mdigits\\r\\u202e" in by_model
