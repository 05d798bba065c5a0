"""The fleet manager's view of devices: retained update statuses and presence, read over MQTT.

What devices publish is untrusted: a device can be buggy, compromised, or an impostor with a
leaked credential. A status is kept only when its topic names a valid device id (and model)
and its payload speaks for that same device and model: under the shipped ACL a device writes
only its own topics, so no device can answer for another. A status that is too large
(MAX_STATUS_BYTES), off its schema, or that names a time that is not a finite number is counted
as malformed (`malformed`, `malformed_of`) and changes nothing. The board holds at most
MAX_STATUSES statuses of each kind (model statuses, table statuses, presences) and
MAX_HELD_BYTES of their payloads; a new one past either limit is not kept and is counted
(`not_kept`), so a flood of fake devices cannot take the fleet manager's memory. Everything
printed from a status goes through terminal_text.shown() (escaped, cut)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from edgecascade.cloud.fleet.terminal_text import shown
from edgecascade.shared.manifest import HealthFigure, UpdateStatus
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.shared.table_manifest import TableStatus
from edgecascade.shared.topic_segments import check_model_name, check_segment

log = logging.getLogger(__name__)

TERMINAL = ("active", "failed", "rolled_back")
_HEALTH_SHORT = {"escalation_rate": "esc", "confidence": "conf", "latency_ms": "p50ms", "disagreement": "dis"}
#: Presence payloads a device sends; anything else is shown as "?".
PRESENCE_WORDS = frozenset({"online", "offline"})

#: A status message larger than this is malformed (a real one is about a kilobyte).
MAX_STATUS_BYTES = 64 * 1024
#: The fleet manager's MQTT Maximum Packet Size (MQTT 5): the broker drops a larger message
#: for it instead of sending it, so a huge retained status is never read into memory whole.
MAX_PACKET_BYTES = 4 * MAX_STATUS_BYTES
#: Malformed statuses logged per board; later ones are only counted (a flood cannot flood the log).
MAX_LOGGED = 5

#: Widest cells of `format_table` (characters, escapes included); a longer value is cut.
VERSION_CHARS = 40
TABLE_CHARS = 60
HEALTH_CHARS = 120
HEALTH_KEY_CHARS = 24
REASON_CHARS = 200

K = TypeVar("K")
V = TypeVar("V")
S = TypeVar("S", UpdateStatus, TableStatus)


class _Bounded(Generic[K, V]):
    """A dict of at most `max_items` values holding at most `max_bytes` of payload in all; a
    new key (or a larger replacement) past either limit is refused. Caller holds the lock."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.items: dict[K, V] = {}
        self._sizes: dict[K, int] = {}
        self._bytes = 0

    def put(self, key: K, value: V, size: int) -> bool:
        old = self._sizes.get(key)
        if old is None and len(self.items) >= self.max_items:
            return False
        if self._bytes - (old or 0) + size > self.max_bytes:
            return False
        self.items[key] = value
        self._sizes[key] = size
        self._bytes += size - (old or 0)
        return True

    def pop(self, key: K) -> V | None:
        self._bytes -= self._sizes.pop(key, 0)
        return self.items.pop(key, None)


@dataclass(frozen=True)
class _Source:
    """What a status topic names: the device, and the model for a per-model topic."""

    device: str
    model: str | None


def _source_of(topic: str) -> _Source:
    """`edgecascade/<fleet>/<device>/<status|table-status|presence>[/<model>]`; ValueError
    saying why when a level cannot be what it stands for (the `+` also matches topic words)."""
    parts = topic.split("/")
    if len(parts) not in (4, 5):
        raise ValueError("not a device's status topic")
    try:
        check_segment(parts[2], reserved=True)
    except ValueError as exc:
        raise ValueError(f"the topic's device id {exc}") from None
    model = parts[4] if len(parts) == 5 else None
    if model is not None:
        try:
            check_model_name(model)
        except ValueError as exc:
            raise ValueError(f"the topic's model name {exc}") from None
    return _Source(parts[2], model)


def _first_error(exc: ValidationError) -> str:
    """The first problem, without the input (pydantic's text quotes a piece of the payload)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _numbers(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if not math.isfinite(value) or abs(value) >= 10 else f"{value:.2f}"


def format_health(health: dict[str, HealthFigure]) -> str:
    """`esc 0.08->0.41 conf 0.95->- p50ms 0.21->0.23 dis 0.02->0.40 (n=57)`; '' when none."""
    parts = [
        f"{shown(_HEALTH_SHORT.get(key, key), HEALTH_KEY_CHARS)} {_numbers(fig.before)}->{_numbers(fig.after)}"
        for key, fig in health.items()
    ]
    samples = max((fig.samples for fig in health.values()), default=0)
    return shown(" ".join(parts) + (f" (n={samples})" if parts else ""), HEALTH_CHARS)


def progress_text(progress: float | None) -> str | None:
    """`42%`, or None when there is no progress between 0 and 1 to show (NaN included)."""
    if progress is None or not 0.0 <= progress <= 1.0:
        return None
    return f"{progress:.0%}"


def _seen(ts: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    except (OverflowError, OSError, ValueError):  # a clock far off, past what time_t holds
        return "?"


class StatusBoard:
    """Call `attach()` before the connection starts; `statuses()` is a snapshot. Devices publish
    one retained status per model they serve; agents before per-model updates published one
    per device (read too, so a fleet being upgraded shows every device)."""

    #: Limits of each kind held (model statuses, table statuses, presences); see the module doc.
    MAX_STATUSES = 100_000
    MAX_HELD_BYTES = 128 * 1024 * 1024
    #: wait_settled() returns after this long at most, whatever keeps arriving.
    MAX_SETTLE_S = 10.0

    def __init__(self, connection: MqttConnection, topics: Topics) -> None:
        self.connection = connection
        self.topics = topics
        # (device, model) -> status, and the topic it came on
        self._status: _Bounded[tuple[str, str], UpdateStatus] = _Bounded(
            self.MAX_STATUSES, self.MAX_HELD_BYTES
        )
        self._topic_of: dict[tuple[str, str], str] = {}
        self._keys_on: dict[str, set[tuple[str, str]]] = {}  # topic -> the keys it holds
        self._models_of: dict[str, set[str]] = {}  # device -> its models with a status
        # table statuses by (device, model); model None: the default lookup model's
        self._tables: _Bounded[tuple[str, str | None], TableStatus] = _Bounded(
            self.MAX_STATUSES, self.MAX_HELD_BYTES
        )
        self._table_models_of: dict[str, set[str | None]] = {}
        self._presence: _Bounded[str, str] = _Bounded(self.MAX_STATUSES, self.MAX_HELD_BYTES)
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)
        self.malformed = 0
        self.not_kept = 0  # statuses past MAX_STATUSES / MAX_HELD_BYTES
        self.last_malformed: str | None = None  # "<topic>: <why>", raw (print through shown())
        self._malformed_of: _Bounded[str, str] = _Bounded(self.MAX_STATUSES, self.MAX_HELD_BYTES)
        self._last_arrival = 0.0  # monotonic time of the last retained status or new key
        #: The seconds after which wait_settled() gave up with statuses still arriving, if it did.
        self.settle_cut: float | None = None

    def attach(self) -> None:
        # QoS 0: a broker sends the retained messages of a QoS 1 subscription only as far as
        # the client's queue goes (Mosquitto: max_queued_messages, 1,000 by default, 10,000 in
        # the shipped config), and silently drops the rest: a larger fleet looked smaller.
        # Statuses are retained state, re-read on every (re)connect, so QoS 1 added nothing
        # to this clean-session client.
        for topic, handler in (
            (self.topics.all_status(), self._on_status),
            (self.topics.all_legacy_status(), self._on_status),
            (self.topics.all_presence(), self._on_presence),
            (self.topics.all_table_status(), self._on_table_status),
            (self.topics.all_model_table_status(), self._on_table_status),
        ):
            self.connection.subscribe(topic, handler, qos=0)

    # -- what devices send ------------------------------------------------------------------
    def _refuse(self, msg: mqtt.MQTTMessage, why: str) -> None:
        """Count (and, the first few, log) a message that is no status; it changes nothing."""
        with self.changed:
            self.malformed += 1
            count = self.malformed
            self.last_malformed = f"{msg.topic}: {why}"
            parts = msg.topic.split("/")
            if len(parts) > 2:
                self._malformed_of.put(parts[2], why, len(why))
            if msg.retain:
                self._last_arrival = time.monotonic()
        if count <= MAX_LOGGED:
            log.warning(
                "ignored a malformed status on %s (%d so far%s): %s",
                shown(msg.topic, 300),
                count,
                "; later ones are only counted" if count == MAX_LOGGED else "",
                shown(why, 300),
            )

    def _parsed(self, msg: mqtt.MQTTMessage, model: type[S]) -> tuple[_Source, S]:
        """The message's topic names and its payload as `model`; ValueError saying why not."""
        source = _source_of(msg.topic)
        size = len(msg.payload)
        if size > MAX_STATUS_BYTES:
            raise ValueError(f"{size} bytes, over the {MAX_STATUS_BYTES}-byte limit")
        try:
            status = model.model_validate_json(msg.payload)
        except ValidationError as exc:
            raise ValueError(_first_error(exc)) from None
        if status.device != source.device:
            raise ValueError(f"names device {status.device[:64]!r}, not the topic's")
        if source.model is not None and status.model != source.model:
            raise ValueError(f"names model {str(status.model)[:64]!r}, not the topic's")
        if status.model is not None:  # the legacy topics carry no model name to compare with
            try:
                check_model_name(status.model)
            except ValueError as exc:
                raise ValueError(f"model {status.model[:64]!r} {exc}") from None
        if not math.isfinite(status.updated_at):
            raise ValueError(f"updated_at is {status.updated_at!r}, not a finite time")
        return source, status

    def _on_status(self, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:  # a cleared status (an upgraded device clears its old single one)
            with self.changed:
                for key in self._keys_on.pop(msg.topic, set()):
                    self._drop_status(key)
                self.changed.notify_all()
            return
        try:
            source, status = self._parsed(msg, UpdateStatus)
        except ValueError as exc:
            self._refuse(msg, str(exc))
            return
        key = (source.device, status.model)
        with self.changed:
            held = self._status.items.get(key)
            # The same model from its old and its new topic: the newer status stands.
            if held is not None and self._topic_of[key] != msg.topic and status.updated_at < held.updated_at:
                return
            if not self._status.put(key, status, len(msg.payload)):
                self.not_kept += 1
                return
            if held is None or msg.retain:
                self._last_arrival = time.monotonic()
            previous = self._topic_of.get(key)
            if previous is not None and previous != msg.topic:
                self._keys_on.get(previous, set()).discard(key)
            self._topic_of[key] = msg.topic
            self._keys_on.setdefault(msg.topic, set()).add(key)
            self._models_of.setdefault(key[0], set()).add(key[1])
            self.changed.notify_all()

    def _drop_status(self, key: tuple[str, str]) -> None:
        self._status.pop(key)
        self._topic_of.pop(key, None)
        models = self._models_of.get(key[0])
        if models is not None:
            models.discard(key[1])
            if not models:
                del self._models_of[key[0]]

    def _on_table_status(self, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return
        try:
            source, status = self._parsed(msg, TableStatus)
        except ValueError as exc:
            self._refuse(msg, str(exc))
            return
        if source.model is None and status.model is not None:
            self._refuse(msg, f"names model {status.model[:64]!r} on the default model's table topic")
            return
        key = (source.device, status.model)
        with self.changed:
            new = key not in self._tables.items
            if not self._tables.put(key, status, len(msg.payload)):
                self.not_kept += 1
                return
            if new or msg.retain:
                self._last_arrival = time.monotonic()
            self._table_models_of.setdefault(key[0], set()).add(key[1])
            self.changed.notify_all()

    def _on_presence(self, msg: mqtt.MQTTMessage) -> None:
        try:
            device = _source_of(msg.topic).device
        except ValueError as exc:
            self._refuse(msg, str(exc))
            return
        # Only the two words a device sends are shown: anything else is "?", however long.
        word = bytes(msg.payload).decode(errors="replace") if len(msg.payload) <= 16 else ""
        with self.changed:
            if not msg.payload:
                self._presence.pop(device)
                return
            if not self._presence.put(device, word if word in PRESENCE_WORDS else "?", 1):
                self.not_kept += 1

    # -- snapshots ----------------------------------------------------------------------------
    def model_statuses(self) -> dict[tuple[str, str], UpdateStatus]:
        """Every (device, model) status."""
        with self._lock:
            return dict(self._status.items)

    def statuses(self, model: str | None = None) -> dict[str, UpdateStatus]:
        """By device: its status of `model` (devices serving it), or without `model` its
        latest status of any model."""
        with self._lock:
            return self._by_device(model)

    def _by_device(self, model: str | None) -> dict[str, UpdateStatus]:
        out: dict[str, UpdateStatus] = {}
        for (device, name), st in self._status.items.items():
            if model is not None and name != model:
                continue
            if device not in out or st.updated_at > out[device].updated_at:
                out[device] = st
        return out

    def table_statuses(self) -> dict[str, TableStatus]:
        """The default lookup model's table status of every device."""
        with self._lock:
            return {d: st for (d, m), st in self._tables.items.items() if m is None}

    def model_table_statuses(self) -> dict[tuple[str, str], TableStatus]:
        """The table statuses of the other models with tables, by (device, model)."""
        with self._lock:
            return {(d, m): st for (d, m), st in self._tables.items.items() if m is not None}

    def _table_for(self, device: str, push_id: str) -> TableStatus | None:
        """A device's table status for `push_id` (whichever model's table it is), else its default's."""
        tables = self._tables.items
        for model in self._table_models_of.get(device, ()):
            st = tables.get((device, model))
            if model is not None and st is not None and st.push_id == push_id:
                return st
        return tables.get((device, None))

    def presence(self, device: str) -> str:
        with self._lock:
            return self._presence.items.get(device, "unknown")

    def malformed_of(self, device: str) -> str | None:
        """Why the device's latest malformed status was ignored (raw text), if it sent one."""
        with self._lock:
            return self._malformed_of.items.get(device)

    def warnings(self) -> list[str]:
        """Lines for the fleet manager about what was ignored or not kept (raw device text
        escaped); none when all was well."""
        with self._lock:
            malformed, last, not_kept = self.malformed, self.last_malformed, self.not_kept
        lines = []
        if self.settle_cut is not None:
            lines.append(
                f"statuses were still arriving after {self.settle_cut:g} s: the table may lack "
                "some devices (run it again)"
            )
        if malformed:
            lines.append(
                f"ignored {malformed} malformed status message(s); the latest: {shown(last, REASON_CHARS)}"
            )
        if not_kept:
            lines.append(
                f"{not_kept} status message(s) not kept: the board holds at most "
                f"{self.MAX_STATUSES} statuses and {self.MAX_HELD_BYTES // 2**20} MiB of each kind"
            )
        return lines

    def devices_in(self, target: str, model: str | None = None) -> list[str]:
        """Known devices matching `device:ID`, `group:G` or `all`; with `model`, of a group or
        the fleet only those that serve it."""
        kind, _, value = target.partition(":")
        with self._lock:
            known: dict[str, list[str]] = {}
            if model is None:
                known.update({d: t.groups for (d, m), t in self._tables.items.items() if m is None})
            known.update(
                {
                    st.device: st.groups
                    for (_, name), st in self._status.items.items()
                    if model in (None, name)
                }
            )
        if kind == "device":
            return [value]
        if kind == "group":
            return sorted(d for d, groups in known.items() if value in groups)
        return sorted(known)

    # -- waiting ------------------------------------------------------------------------------
    def wait_settled(self, settle_s: float, max_s: float | None = None) -> None:
        """Wait until no retained status and no status of a new device or model arrived for
        `settle_s` (the initial burst is in), at most `max_s` (default MAX_SETTLE_S): a device
        that keeps changing its status, or floods, cannot hold a command up."""
        start = time.monotonic()
        limit = self.MAX_SETTLE_S if max_s is None else max_s
        deadline = start + limit
        with self.changed:
            while True:
                now = time.monotonic()
                quiet_at = max(self._last_arrival, start) + settle_s
                if now >= quiet_at:
                    return
                if now >= deadline:
                    self.settle_cut = limit
                    return
                self.changed.wait(min(quiet_at, deadline) - now)

    def _status_for(self, device: str, push_id: str, model: str | None) -> UpdateStatus | None:
        """The device's status of `model`; without `model` the one about `push_id`, else its latest."""
        if model is not None:
            return self._status.items.get((device, model))
        mine = [self._status.items[(device, m)] for m in self._models_of.get(device, ())]
        return next((st for st in mine if st.push_id == push_id), None) or max(
            mine, key=lambda st: st.updated_at, default=None
        )

    def wait_for(
        self,
        push_id: str,
        devices: Iterable[str],
        timeout_s: float,
        on_change: Callable[[str, Any], None] | None = None,
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
                    if on_change is not None and last.get(device) != key:
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
    statuses()); the TABLE column is the device's lookup table. Every cell from a device is
    escaped and cut (terminal_text.shown)."""
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
        pct = progress_text(st.progress) if st.state == "downloading" and st.progress else None
        rows.append(
            (
                shown(device),
                shown(st.model),
                shown(st.active_version, VERSION_CHARS),
                st.state + (f" {pct}" if pct else ""),
                _seen(st.updated_at),
                shown(presence(device)),
                shown(_table_cell(tables.get(device)), TABLE_CHARS),
                format_health(st.health),
                shown(st.reason or "", REASON_CHARS),
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
