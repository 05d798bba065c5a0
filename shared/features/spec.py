"""How raw input becomes a model's input tensor. Stored in model cards and manifests."""

from functools import cached_property
from typing import Annotated, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Bumped whenever an encoding function changes its output for the same raw input. Lookup
#: tables and answer caches keyed by feature content are valid only for the same version.
ENCODING_VERSION = 1

#: Longest side of an image a model may ask for, and its most pixels: far above any real
#: model input, far below a size whose resize buffer could not be allocated.
MAX_IMAGE_SIDE = 1 << 14
MAX_IMAGE_PIXELS = 1 << 26
#: The largest float32: an encoding whose values can pass it makes infinities out of pixels.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ImageEncoding(BaseModel):
    """Decode -> colour order -> resize -> scale/normalize -> layout."""

    # NaN or infinity in scale, mean or std would turn every pixel into NaN.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["image"] = "image"
    width: int = Field(gt=0, le=MAX_IMAGE_SIDE, description="Width the model expects, in pixels.")
    height: int = Field(gt=0, le=MAX_IMAGE_SIDE, description="Height the model expects, in pixels.")
    color: Literal["gray", "rgb", "bgr"] = Field("gray", description="Channel order the model expects.")
    scale: float = Field(1 / 255, description="Multiplier applied to the 0-255 pixel values.")
    mean: float | tuple[float, ...] = Field(
        0.0,
        description="Subtracted after scaling: one number, or one per channel in the model's colour "
        "order (e.g. ImageNet RGB 0.485, 0.456, 0.406 after scale 1/255).",
    )
    std: float | tuple[float, ...] = Field(
        1.0, description="Divided by after subtracting the mean: one number > 0, or one per channel."
    )
    layout: Literal["flat", "nhwc", "nchw"] = Field(
        "flat", description="flat: one row of H*W*C values; nhwc/nchw: image tensors with a batch axis."
    )
    interpolation: Literal["area", "linear", "nearest"] = Field(
        "area", description="OpenCV interpolation for resizing (area is right for downscaling)."
    )
    invert: bool = Field(False, description="Invert intensities (dark ink on light paper -> light on dark).")

    @field_validator("std")
    @classmethod
    def _positive_std(cls, std: float | tuple[float, ...]) -> float | tuple[float, ...]:
        if any(v <= 0 for v in (std if isinstance(std, tuple) else (std,))):
            raise ValueError(f"std must be > 0 (every channel), got {std}")
        return std

    @model_validator(mode="after")
    def _per_channel(self) -> Self:
        # A list of means/stds is per channel: as many as the colour order has channels.
        for key in ("mean", "std"):
            value = getattr(self, key)
            if isinstance(value, tuple) and len(value) not in (1, self.channels):
                raise ValueError(
                    f"{key} has {len(value)} values; color {self.color!r} has {self.channels} "
                    f"channel{'s' if self.channels > 1 else ''}: give one number or {self.channels}"
                )
        if self.width * self.height > MAX_IMAGE_PIXELS:
            raise ValueError(
                f"{self.width}x{self.height} is over {MAX_IMAGE_PIXELS} pixels; no model input is this large"
            )
        # Checked once here, not per request: pixels 0 and 255 are the extremes of (p*scale-mean)/std.
        means = self.mean if isinstance(self.mean, tuple) else (self.mean,)
        stds = self.std if isinstance(self.std, tuple) else (self.std,)
        worst = max(abs(p * self.scale - m) for p in (0.0, 255.0) for m in means) / min(stds)
        if not worst < _FLOAT32_MAX:
            raise ValueError(
                f"scale {self.scale}, mean {self.mean} and std {self.std} make pixel values beyond "
                "float32's range (infinities)"
            )
        return self

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def describe(self) -> str:
        return f"image {self.width}x{self.height}, color {self.color} ({self.channels} channels), layout {self.layout}"

    @cached_property
    def tensor_shape(self) -> tuple[int, ...]:
        """Shape of one encoded example, without the batch axis (computed once: read per request)."""
        if self.layout == "flat":
            return (self.height * self.width * self.channels,)
        if self.layout == "nhwc":
            return (self.height, self.width, self.channels)
        return (self.channels, self.height, self.width)


class AudioEncoding(BaseModel):
    """WAV bytes -> mono (channels averaged) -> the model's window of samples -> [-1, 1] floats
    or int16 values. A clip at another sample rate is refused (resampling well is not cheap)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["audio"] = Field(description="Audio input: WAV files (PCM 8/16/32-bit or 32-bit float).")
    sample_rate: int = Field(
        gt=0, le=1 << 22, description="Sample rate the model expects, in Hz; other rates are refused."
    )
    samples: int = Field(gt=0, le=1 << 28, description="Samples per example (the model's window).")
    values: Literal["unit", "int16"] = Field(
        "unit", description="unit: float samples in [-1, 1]; int16: PCM16 integer values."
    )
    fit: Literal["pad_crop", "exact"] = Field(
        "pad_crop",
        description="pad_crop: a shorter clip is zero-padded at the end, a longer one cut to its first "
        "`samples`; exact: other lengths are refused.",
    )
    layout: Literal["samples", "channel_samples", "samples_channel"] = Field(
        "samples",
        description="Example shape: [samples], [1, samples] or [samples, 1] (after the batch axis).",
    )
    max_seconds: float = Field(
        60.0, gt=0, le=86400, description="Longer clips are refused before they are decoded."
    )

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        return {
            "samples": (self.samples,),
            "channel_samples": (1, self.samples),
            "samples_channel": (self.samples, 1),
        }[self.layout]

    def describe(self) -> str:
        return f"audio {self.sample_rate} Hz, {self.samples} samples ({self.values}), layout {self.layout}"


class VectorEncoding(BaseModel):
    """Numbers already in model space (for example sensor readings), checked for length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["vector"] = "vector"
    length: int = Field(gt=0, le=1 << 28, description="Number of features per example.")

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        return (self.length,)


class FeatureSpec(BaseModel):
    """The encoding of one model input, with the encoding version it was made with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ENCODING_VERSION, description="ENCODING_VERSION the model was trained with.")
    input_name: str = Field("input", description="Name of the model input this encoding feeds.")
    encoding: Annotated[ImageEncoding | VectorEncoding, Field(discriminator="kind")]
