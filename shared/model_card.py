"""The model card written beside every built artifact (`<artifact>.card.json`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edgecascade.shared.errors import ModelLoadError
from edgecascade.shared.features.spec import FeatureSpec

CARD_SUFFIX = ".card.json"


class TensorCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: str
    shape: list[int]


class ModelCard(BaseModel):
    """What a model is, how it was made and how well it did. Written by tools/, read by edge/ and cloud/."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    schema_version: int = 1
    name: str = Field(description="Model name, as used in profiles, manifests and V2 URLs.")
    version: str = Field(description="Model version (independent of the agent version).")
    backend: str = Field(description="Backend that runs the artifact: tflite or onnx.")
    file: str = Field(description="Artifact file name, relative to the card.")
    sha256: str
    size_bytes: int
    dataset: str = Field(description="Data set and split the model was trained and evaluated on.")
    heldout_accuracy: float = Field(description="Top-1 accuracy on the held-out split, 0..1.")
    heldout_size: int
    quantization: str = Field(description="none, int8 (full-integer), int8-qdq, ...")
    inputs: list[TensorCard]
    outputs: list[TensorCard]
    probabilities_output: str = Field(description="Output holding per-class probabilities.")
    labels: list[str] = Field(description="Class names, in output order.")
    features: FeatureSpec
    tool_versions: dict[str, str] = Field(default_factory=dict)
    float_source: str | None = Field(None, description="Artifact this one was quantized from, if any.")

    @staticmethod
    def path_for(artifact: Path) -> Path:
        return artifact.with_name(artifact.name + CARD_SUFFIX)

    @classmethod
    def load_for(cls, artifact: Path) -> ModelCard:
        """Read the card beside `artifact`; raises ModelLoadError naming the card if absent or invalid."""
        card_path = cls.path_for(artifact)
        try:
            return cls.model_validate_json(card_path.read_text())
        except FileNotFoundError:
            raise ModelLoadError(str(artifact), f"model card {card_path.name} not found beside it") from None
        except ValueError as exc:
            raise ModelLoadError(str(card_path), f"invalid model card: {exc}") from exc

    def save_beside(self, artifact: Path) -> Path:
        path = self.path_for(artifact)
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path
