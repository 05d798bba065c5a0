"""Whole object lifecycles for a subscriber, across events a sink could not deliver.

A detector's events tell a subscriber (an NVR dashboard, an automation) that an object
appeared (`new`), is still there (`update`) and left (`end`). When some are lost (the broker
was down), the stream a subscriber sees would break that contract: an `update` or `end` for
an object it never heard of, or an object it did hear of that never ends. Lost events are not
replayed (stale detections would fire automations late); instead, only what keeps each
lifecycle whole is repaired:

- the first event delivered for an object whose `new` was lost goes out as `new`;
- an `end` for an object the subscriber never heard of is not sent at all;
- an `end` lost for an object the subscriber did hear of is kept, and sent first once events
  flow again (late, with its own frame and time), so no object stays open forever.

Memory is bounded: at most `max_objects` objects are remembered (the oldest are forgotten,
and counted). A classifier's per-frame CameraEvent has no lifecycle and passes through."""

from __future__ import annotations

import threading
from dataclasses import replace

from edgecascade.edge.sources.events import DetectionEvent, Event


class Lifecycles:
    def __init__(self, max_objects: int = 10_000) -> None:
        self.max_objects = max_objects
        self._announced: dict[str, None] = {}  # ids the subscriber has had a `new` for; oldest first
        self._lost_ends: dict[str, DetectionEvent] = {}  # of announced ids, the `end` not yet delivered
        self._lock = threading.Lock()
        self.sent_as_new = 0
        self.ends_unannounced = 0
        self.ends_late = 0
        self.forgotten = 0

    def due(self, event: Event) -> list[Event]:
        """What to send now for `event`, in order: lost ends first, then `event` as the
        subscriber must see it (renamed `new`, or nothing). Report each one's fate with
        `sent` or `missed`."""
        with self._lock:
            out: list[Event] = list(self._lost_ends.values())
            if not isinstance(event, DetectionEvent):
                return [*out, event]
            if event.id in self._announced or event.type == "new":
                return [*out, event]
            if event.type == "end":
                self.ends_unannounced += 1
                return out
            self.sent_as_new += 1
            return [*out, replace(event, type="new")]

    def sent(self, event: Event) -> None:
        if not isinstance(event, DetectionEvent):
            return
        with self._lock:
            if event.type == "end":
                self._announced.pop(event.id, None)
                if self._lost_ends.pop(event.id, None) is not None:
                    self.ends_late += 1
            elif event.id not in self._announced:
                self._announced[event.id] = None
                while len(self._announced) > self.max_objects:
                    oldest = next(iter(self._announced))
                    del self._announced[oldest]
                    self._lost_ends.pop(oldest, None)
                    self.forgotten += 1

    def missed(self, event: Event) -> None:
        """`event` was not delivered: an announced object's `end` is kept to send later."""
        if isinstance(event, DetectionEvent) and event.type == "end":
            with self._lock:
                if event.id in self._announced:
                    self._lost_ends[event.id] = event

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "events_sent_as_new": self.sent_as_new,
                "events_end_unannounced": self.ends_unannounced,
                "events_end_late": self.ends_late,
                "events_ends_pending": len(self._lost_ends),
                "objects_forgotten": self.forgotten,
            }
