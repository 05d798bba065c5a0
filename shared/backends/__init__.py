"""Model backends: one small interface (`ModelBackend`), one short module per runtime."""

from edgecascade.shared.backends.base import (
    BackendOptions,
    ModelBackend,
    OnnxProvider,
    Signature,
    TensorSpec,
    TFLiteDelegate,
)
from edgecascade.shared.backends.registry import SUPPORTED_EXTENSIONS, load_backend

__all__ = [
    "BackendOptions",
    "ModelBackend",
    "OnnxProvider",
    "TFLiteDelegate",
    "Signature",
    "TensorSpec",
    "SUPPORTED_EXTENSIONS",
    "load_backend",
]
