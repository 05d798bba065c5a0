"""Detections across frames as objects, the way NVRs report them: a detection that overlaps an
object of the same label seen in the last frames is that object again (update); one that
overlaps none is a new object; an object not seen for `lost_after` frames ends. Greedy IoU
matching, bounded by the few detections a frame holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgecascade.shared.detection.boxes import iou_matrix
from edgecascade.shared.detection.decoders import LabeledDetection

Box = tuple[float, float, float, float]


@dataclass
class Track:
    id: str
    label: str
    box: Box
    score: float
    top_score: float
    first_frame: int
    last_frame: int
    missed: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """What one frame did to one object: new, update or end (`track` as it is after it)."""

    type: Literal["new", "update", "end"]
    track: Track


class ObjectTracker:
    """Call `update(frame, detections)` once per answered frame, in order; it returns the
    frame's changes, ends first."""

    def __init__(self, prefix: str, *, iou: float = 0.3, lost_after: int = 2) -> None:
        self.prefix, self.iou, self.lost_after = prefix, iou, lost_after
        self.tracks: list[Track] = []
        self.started = 0

    def update(self, frame: int, found: list[LabeledDetection]) -> list[Change]:
        matched: dict[int, int] = {}  # detection -> track index
        if found and self.tracks:
            ious = iou_matrix(np.array([d.box for d in found]), np.array([t.box for t in self.tracks]))
            same = np.array([[d.label == t.label for t in self.tracks] for d in found])
            ious = np.where(same, ious, 0.0)
            # Best overlaps first; each detection and each object matched at most once.
            for flat in np.argsort(-ious, axis=None, kind="stable"):
                d, t = divmod(int(flat), len(self.tracks))
                if ious[d, t] < self.iou:
                    break
                if d not in matched and t not in matched.values():
                    matched[d] = t
        changes: list[Change] = []
        seen = set(matched.values())
        kept: list[Track] = []
        for t, track in enumerate(self.tracks):
            if t in seen:
                kept.append(track)
                continue
            track.missed += 1
            if track.missed >= self.lost_after:
                changes.append(Change("end", track))
            else:
                kept.append(track)
        for d, det in enumerate(found):
            if d in matched:
                track = self.tracks[matched[d]]
                track.box, track.score, track.last_frame, track.missed = det.box, det.score, frame, 0
                track.top_score = max(track.top_score, det.score)
                changes.append(Change("update", track))
            else:
                self.started += 1
                track = Track(
                    f"{self.prefix}-{self.started}", det.label, det.box, det.score, det.score, frame, frame
                )
                kept.append(track)
                changes.append(Change("new", track))
        self.tracks = kept
        return changes

    def end_all(self) -> list[Change]:
        """Every open object ends (the source stopped)."""
        changes = [Change("end", t) for t in self.tracks]
        self.tracks = []
        return changes
