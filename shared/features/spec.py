"""How raw input becomes a model's input tensor. Stored in model cards and manifests."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Bumped whenever an encoding function changes its output for the same raw input. Lookup
#: tables and answer caches keyed by feature content are valid only for the same version.
ENCODING_VERSION = 1


class ImageEncoding(BaseModel):
    """Decode -> colour order -> resize -> scale/normalize -> layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["image"] = "image"
    width: int = Field(gt=0, description="Width the model expects, in pixels.")
    height: int = Field(gt=0, description="Height the model expects, in pixels.")
    color: Literal["gray", "rgb", "bgr"] = Field("gray", description="Channel order the model expects.")
    scale: float = Field(1 / 255, description="Multiplier applied to the 0-255 pixel values.")
    mean: float = Field(0.0, description="Subtracted after scaling.")
    std: float = Field(1.0, gt=0, description="Divided by after subtracting the mean.")
    layout: Literal["flat", "nhwc", "nchw"] = Field(
        "flat", description="flat: one row of H*W*C values; nhwc/nchw: image tensors with a batch axis."
    )
    interpolation: Literal["area", "linear", "nearest"] = Field(
        "area", description="OpenCV interpolation for resizing (area is right for downscaling)."
    )
    invert: bool = Field(False, description="Invert intensities (dark ink on light paper -> light on dark).")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @cached_property
    def tensor_shape(self) -> tuple[int, ...]:
        """Shape of one encoded example, without the batch axis (computed once: read per request)."""
        if self.layout == "flat":
            return (self.height * self.width * self.channels,)
        if self.layout == "nhwc":
            return (self.height, self.width, self.channels)
        return (self.channels, self.height, self.width)


class VectorEncoding(BaseModel):
    """Numbers already in model space (for example sensor readings), checked for length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["vector"] = "vector"
    length: int = Field(gt=0, description="Number of features per example.")

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        return (self.length,)


class FeatureSpec(BaseModel):
    """The encoding of one model input, with the encoding version it was made with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ENCODING_VERSION, description="ENCODING_VERSION the model was trained with.")
    input_name: str = Field("input", description="Name of the model input this encoding feeds.")
    encoding: Annotated[ImageEncoding | VectorEncoding, Field(discriminator="kind")]
