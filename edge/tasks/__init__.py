"""What a served model does with a request, per task kind (classification, detection,
tensor): one interface (base.py), one registry (registry.py), one module per kind."""

from edgecascade.edge.tasks.base import Task, TaskParts, TaskReply, TaskRequest
from edgecascade.edge.tasks.registry import TASKS, build_task

__all__ = ["TASKS", "Task", "TaskParts", "TaskReply", "TaskRequest", "build_task"]
