"""Shared pieces of the profile models.

Modules that define pydantic classes (here, shared/model_card.py, shared/v2/schema.py, ...) do
not use `from __future__ import annotations`: pydantic would have to evaluate every string
annotation again when it builds the class, and these classes are built at every start of the
agent (about 8% of their build time, issue 13). Forward references are written as `Self` or
in quotes."""

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, ValidationInfo
from pydantic.functional_validators import AfterValidator

from edgecascade.shared.topic_segments import DeviceId, ModelName, TopicName

__all__ = ["DeviceId", "ModelName", "ProfilePath", "Section", "TopicName"]


class Section(BaseModel):
    """Base for every profile section: unknown keys are errors, so typos never pass silently."""

    # No infinity or NaN anywhere: no setting means "unbounded" by them, and inf only fails
    # later, as a traceback (int(inf) when a size in MiB becomes bytes).
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


def _resolve(path: Path, info: ValidationInfo) -> Path:
    # Relative paths are relative to the profile file (passed as validation context), not to
    # the working directory the daemon happens to start in. No I/O here.
    base = (info.context or {}).get("base_dir")
    path = path.expanduser()
    if base is not None and not path.is_absolute():
        return (Path(base) / path).resolve()
    return path


#: A filesystem path; relative ones are resolved against the profile file's folder.
ProfilePath = Annotated[Path, AfterValidator(_resolve)]
