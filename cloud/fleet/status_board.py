"""The fleet manager's view of devices: retained update statuses and presence, read over MQTT."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from edgecascade.shared.manifest import HealthFigure, UpdateStatus
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.shared.table_manifest import TableStatus

log = logging.getLogger(__name__)

TERMINAL = ("active", "failed", "rolled_back")
_HEALTH_SHORT = {"escalation_rate": "esc", "confidence": "conf", "latency_ms": "p50ms", "disagreement": "dis"}


def format_health(health: dict[str, HealthFigure]) -> str:
    """`esc 0.08->0.41 conf 0.95->- p50ms 0.21->0.23 dis 0.02->0.40 (n=57)`; '' when none."""

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}" if value >= 10 else f"{value:.2f}"

    parts = [
        f"{_HEALTH_SHORT.get(key, key)} {num(fig.before)}->{num(fig.after)}" for key, fig in health.items()
    ]
    samples = max((fig.samples for fig in health.values()), default=0)
    return " ".join(parts) + (f" (n={samples})" if parts else "")


class StatusBoard:
    """Call `attach()` before the connection starts; `statuses()` is a snapshot. Devices publish
    one retained status per model they serve; agents before per-model updates published one
    per device (read too, so a fleet being upgraded shows every device)."""

    def __init__(self, connection: MqttConnection, topics: Topics) -> None:
        self.connection = connection
        self.topics = topics
        self._status: dict[tuple[str, str], UpdateStatus] = {}  # (device, model) -> status
        self._topic_of: dict[tuple[str, str], str] = {}
        self._tables: dict[str, TableStatus] = {}  # the default lookup model's, by device
        self._model_tables: dict[tuple[str, str], TableStatus] = {}  # other models', by (device, model)
        self._presence: dict[str, str] = {}
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self.malformed = 0

    def attach(self) -> None:
        self.connection.subscribe(self.topics.all_status(), self._on_status, qos=1)
        self.connection.subscribe(self.topics.all_legacy_status(), self._on_status, qos=1)
        self.connection.subscribe(self.topics.all_presence(), self._on_presence, qos=1)
        self.connection.subscribe(self.topics.all_table_status(), self._on_table_status, qos=1)
        self.connection.subscribe(self.topics.all_model_table_status(), self._on_table_status, qos=1)

    def _on_status(self, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:  # a cleared status (an upgraded device clears its old single one)
            with self.changed:
                for key in [k for k, topic in self._topic_of.items() if topic == msg.topic]:
                    del self._status[key], self._topic_of[key]
                self.changed.notify_all()
            return
        try:
            status = UpdateStatus.model_validate_json(msg.payload)
        except ValueError:
            self.malformed += 1
            log.warning("malformed status on %s (%d so far)", msg.topic, self.malformed)
            return
        key = (status.device, status.model)
        with self.changed:
            held = self._status.get(key)
            # The same model from its old and its new topic: the newer status stands.
            if held is None or self._topic_of[key] == msg.topic or status.updated_at >= held.updated_at:
                self._status[key] = status
                self._topic_of[key] = msg.topic
                self.changed.notify_all()

    def _on_table_status(self, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return
        try:
            status = TableStatus.model_validate_json(msg.payload)
        except ValueError:
            self.malformed += 1
            log.warning("malformed table status on %s (%d so far)", msg.topic, self.malformed)
            return
        with self.changed:
            if status.model is None:
                self._tables[status.device] = status
            else:
                self._model_tables[(status.device, status.model)] = status
            self.changed.notify_all()

    def _on_presence(self, msg: mqtt.MQTTMessage) -> None:
        device = Topics.device_of(msg.topic)
        if device:
            with self.changed:
                self._presence[device] = bytes(msg.payload).decode(errors="replace")

    def model_statuses(self) -> dict[tuple[str, str], UpdateStatus]:
        """Every (device, model) status."""
        with self._lock:
            return dict(self._status)

    def statuses(self, model: str | None = None) -> dict[str, UpdateStatus]:
        """By device: its status of `model` (devices serving it), or without `model` its
        latest status of any model."""
        with self._lock:
            return self._by_device(model)

    def _by_device(self, model: str | None) -> dict[str, UpdateStatus]:
        out: dict[str, UpdateStatus] = {}
        for (device, name), st in self._status.items():
            if model is not None and name != model:
                continue
            if device not in out or st.updated_at > out[device].updated_at:
                out[device] = st
        return out

    def table_statuses(self) -> dict[str, TableStatus]:
        """The default lookup model's table status of every device."""
        with self._lock:
            return dict(self._tables)

    def model_table_statuses(self) -> dict[tuple[str, str], TableStatus]:
        """The table statuses of the other models with tables, by (device, model)."""
        with self._lock:
            return dict(self._model_tables)

    def _table_for(self, device: str, push_id: str) -> TableStatus | None:
        """A device's table status for `push_id` (whichever model's table it is), else its default's."""
        for (d, _), st in self._model_tables.items():
            if d == device and st.push_id == push_id:
                return st
        return self._tables.get(device)

    def presence(self, device: str) -> str:
        with self._lock:
            return self._presence.get(device, "unknown")

    def devices_in(self, target: str, model: str | None = None) -> list[str]:
        """Known devices matching `device:ID`, `group:G` or `all`; with `model`, of a group or
        the fleet only those that serve it."""
        kind, _, value = target.partition(":")
        with self._lock:
            known = {t.device: t.groups for t in self._tables.values()} if model is None else {}
            known.update(
                {st.device: st.groups for (_, name), st in self._status.items() if model in (None, name)}
            )
        if kind == "device":
            return [value]
        if kind == "group":
            return sorted(d for d, groups in known.items() if value in groups)
        return sorted(known)

    def wait_settled(self, settle_s: float) -> None:
        """Wait until no new retained status arrived for `settle_s` (the initial burst is in)."""
        with self.changed:
            while self.changed.wait(settle_s):
                pass

    def _status_for(self, device: str, push_id: str, model: str | None) -> UpdateStatus | None:
        """The device's status of `model`; without `model` the one about `push_id`, else its latest."""
        if model is not None:
            return self._status.get((device, model))
        mine = [st for (d, _), st in self._status.items() if d == device]
        return next((st for st in mine if st.push_id == push_id), None) or max(
            mine, key=lambda st: st.updated_at, default=None
        )

    def wait_for(
        self,
        push_id: str,
        devices: Iterable[str],
        timeout_s: float,
        on_change: object = None,
        kind: str = "model",
        model: str | None = None,
    ) -> dict[str, Any]:
        """Wait until each device reports a terminal state for `push_id` (or the timeout).
        Values are UpdateStatus of `model` (kind "model"; default: whichever of the device's
        models reports the push) or TableStatus (kind "table"), None if unknown."""
        wanted = list(devices)
        deadline = time.monotonic() + timeout_s
        last: dict[str, tuple[str, float | None]] = {}
        with self.changed:
            while True:
                if kind == "table":
                    now: dict[str, Any] = {d: self._table_for(d, push_id) for d in wanted}
                else:
                    now = {d: self._status_for(d, push_id, model) for d in wanted}
                for device, st in now.items():
                    mine = st is not None and st.push_id == push_id
                    key = (st.state, st.progress) if st is not None and mine else ("waiting", None)
                    if callable(on_change) and last.get(device) != key:
                        on_change(device, st if mine else None)
                    last[device] = key
                if all(
                    st is not None and st.push_id == push_id and st.state in TERMINAL for st in now.values()
                ):
                    return dict(now)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return dict(now)
                self.changed.wait(min(remaining, 0.5))


def format_table(statuses: Mapping[Any, Any], presence: Any, tables: dict[str, Any] | None = None) -> str:
    """One row per device and model it serves (`statuses`: StatusBoard.model_statuses() or
    statuses()); the TABLE column is the device's lookup table."""
    tables = tables or {}
    rows = [
        (
            "DEVICE",
            "MODEL",
            "VERSION",
            "STATE",
            "LAST SEEN",
            "PRESENCE",
            "TABLE",
            "HEALTH (before->after)",
            "REASON",
        )
    ]
    for st in sorted(statuses.values(), key=lambda st: (st.device, st.model)):
        device = st.device
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.updated_at))
        state = st.state + (f" {st.progress:.0%}" if st.state == "downloading" and st.progress else "")
        health = format_health(st.health)
        rows.append(
            (
                device,
                st.model,
                st.active_version,
                state,
                seen,
                presence(device),
                _table_cell(tables.get(device)),
                health,
                st.reason or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _table_cell(st: Any) -> str:
    """`digits t2`, or with a table update not (yet) active: `digits t1 (failed t3)`; '-' = none."""
    if st is None:
        return "-"
    cell = f"{st.table} {st.active_version}" if st.active_version else "none"
    if st.state not in ("active", "idle") and st.target_version:
        cell += f" ({st.state} {st.target_version})"
    return cell
