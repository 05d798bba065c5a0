"""Detection post-processing shared by tools/, the agent and the cloud: box formats, anchors,
IoU and non-maximum suppression (numpy only, bounded work)."""

from edgecascade.shared.detection.anchors import GridAnchors, SsdAnchors, card_anchors, decode_deltas
from edgecascade.shared.detection.boxes import BOX_FORMATS, iou_matrix, to_xyxy
from edgecascade.shared.detection.detections import (
    Detection,
    from_anchor_outputs,
    from_raw_outputs,
    from_ssd_outputs,
)
from edgecascade.shared.detection.metrics import MatchCounts, match
from edgecascade.shared.detection.nms import non_max_suppression

__all__ = [
    "BOX_FORMATS",
    "Detection",
    "GridAnchors",
    "SsdAnchors",
    "MatchCounts",
    "card_anchors",
    "decode_deltas",
    "from_anchor_outputs",
    "from_raw_outputs",
    "from_ssd_outputs",
    "iou_matrix",
    "match",
    "non_max_suppression",
    "to_xyxy",
]
