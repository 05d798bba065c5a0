"""Feature encoding shared by training (tools/) and serving (edge/, cloud/): one function per
input kind, so the tensors a model sees in production are the ones it was trained on."""

from edgecascade.shared.features.audio import decode_wav, encode_audio
from edgecascade.shared.features.image import decode_image, encode_image
from edgecascade.shared.features.spec import (
    ENCODING_VERSION,
    AudioEncoding,
    FeatureSpec,
    ImageEncoding,
    VectorEncoding,
)
from edgecascade.shared.features.vector import encode_vector

__all__ = [
    "ENCODING_VERSION",
    "AudioEncoding",
    "FeatureSpec",
    "ImageEncoding",
    "VectorEncoding",
    "decode_image",
    "decode_wav",
    "encode_audio",
    "encode_image",
    "encode_vector",
]
