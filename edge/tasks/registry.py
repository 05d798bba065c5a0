"""Task kind -> implementation. The kinds are named once, in shared/model_card.py
(TASK_KINDS, which cards are validated against); this registry covers exactly those."""

from __future__ import annotations

import importlib

from edgecascade.edge.config.cascade import CascadeSection
from edgecascade.edge.tasks.base import Task, TaskParts
from edgecascade.shared.model_card import TASK_KINDS

TASKS: dict[str, str] = {
    "classification": "edgecascade.edge.tasks.classification:ClassificationTask",
    "detection": "edgecascade.edge.tasks.detection:DetectionTask",
    "tensor": "edgecascade.edge.tasks.tensor:TensorTask",
}

if set(TASKS) != set(TASK_KINDS):  # a kind added in one place only is a bug, found at start
    raise ImportError(f"task registry {sorted(TASKS)} does not match TASK_KINDS {sorted(TASK_KINDS)}")


def build_task(kind: str, parts: TaskParts, cascade: CascadeSection) -> Task:
    """The task for a model card's `task`; the card has already been validated."""
    module_name, cls_name = TASKS[kind].split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if kind == "classification":
        task: Task = cls(parts, cascade)
    else:
        task = cls(parts)
    return task
