"""The signed model manifest, the device's update status, and Ed25519 signing.

Manifests are retained MQTT messages (topics in shared/mqtt/topics.py, one set per model)
written only by the fleet manager. The signature covers the canonical bytes: JSON of every field except `signature`, keys
sorted, no whitespace. Devices hold only the public key.
"""

import base64
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgecascade.shared.backends.registry import BackendName
from edgecascade.shared.errors import ConfigError, UpdateError
from edgecascade.shared.lazy_module import lazy_module
from edgecascade.shared.model_card import ModelCard
from edgecascade.shared.policy_kinds import PolicyKind

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
else:
    # cryptography only when a signature is checked or made, not to read a manifest.
    serialization = lazy_module("cryptography.hazmat.primitives.serialization", needed_for="model updates")

MANIFEST_SCHEMA = 1
#: A manifest message larger than this is refused unread (goldens included it stays far below).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: A route name: lower-case letters, digits and dashes (looked up in the device's transport registry).
ROUTE_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
UpdateState = Literal["idle", "downloading", "verifying", "testing", "active", "failed", "rolled_back"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Blob(_Strict):
    """A byte string delivered in numbered chunks, each with its own SHA-256."""

    sha256: str = Field(description="SHA-256 (hex) of the whole blob.")
    size_bytes: int = Field(ge=1, description="Size of the whole blob.")
    chunk_size: int = Field(ge=1, description="Every chunk but the last has this many bytes.")
    chunk_sha256: list[str] = Field(description="SHA-256 (hex) of chunk i, in order.")
    topic: str = Field(description="MQTT route: chunk i is the retained message on `<topic>/<i>`.")
    url: str | None = Field(None, description="HTTP route: the blob's URL, fetched with Range requests.")

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.size_bytes)


class Delta(_Strict):
    """A binary diff (bsdiff4) from `base_version`; the patched result must match the artifact's hash."""

    base_version: str = Field(description="Version the device must hold to use the delta.")
    base_sha256: str = Field(description="SHA-256 of the base artifact the delta applies to.")
    blob: Blob = Field(description="The delta's bytes.")


class GoldenVector(_Strict):
    """Schema 1 golden: one feature row and the probabilities the model gave (kept so manifests
    stored on devices before golden cases existed still parse and check)."""

    features: list[float] = Field(description="One encoded input row.")
    expected: list[float] = Field(description="Probabilities the pushed model gave at push time.")


#: Datatypes a golden tensor may hold (numpy names); strings are not carried.
GoldenDatatype = Literal[
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
]  # fmt: skip


class GoldenTensor(_Strict):
    """One named tensor, its bytes exact: raw little-endian, base64 (no float text rounding)."""

    name: str = Field(description="Input or output name, as in the model's signature.")
    datatype: GoldenDatatype = Field(description="numpy dtype name of the elements.")
    shape: list[int] = Field(max_length=16, description="Dimensions (each >= 0).")
    data_b64: str = Field(description="Base64 of the elements, row-major, little-endian.")

    @classmethod
    def from_array(cls, name: str, array: np.ndarray) -> Self:
        """Raises UpdateError for a dtype a golden cannot carry (strings, objects, complex)."""
        dtype = array.dtype
        if dtype.name not in GoldenDatatype.__args__:  # type: ignore[attr-defined]
            raise UpdateError(f"golden tensor {name!r} has dtype {dtype}; numbers and bool only")
        data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
        return cls(
            name=name, datatype=dtype.name, shape=list(array.shape), data_b64=base64.b64encode(data).decode()
        )

    def to_array(self) -> np.ndarray:
        """The tensor; UpdateError if the bytes do not hold exactly `shape` elements."""
        dtype = np.dtype(self.datatype).newbyteorder("<")
        if any(d < 0 for d in self.shape):
            raise UpdateError(f"golden tensor {self.name!r} has a negative dimension {self.shape}")
        try:
            raw = base64.b64decode(self.data_b64, validate=True)
        except ValueError:
            raise UpdateError(f"golden tensor {self.name!r} is not valid base64") from None
        if len(raw) != math.prod(self.shape) * dtype.itemsize:
            raise UpdateError(
                f"golden tensor {self.name!r}: {len(raw)} bytes do not hold {self.datatype}{self.shape}"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(self.shape).astype(dtype.newbyteorder("="))


class GoldenCase(_Strict):
    """One user-given input set and the outputs the candidate gave for it at push time."""

    inputs: list[GoldenTensor] = Field(min_length=1, description="Every model input, by name.")
    expected: list[GoldenTensor] = Field(min_length=1, description="Every model output, by name.")


class Golden(_Strict):
    """Inputs with expected outputs: a candidate must reproduce them before it may serve."""

    tolerance: float = Field(ge=0.0, description="Largest allowed absolute difference per output element.")
    cases: list[GoldenCase] = Field(
        default_factory=list,
        description="User-given inputs with the candidate's outputs (fleet push --golden).",
    )
    vectors: list[GoldenVector] = Field(
        default_factory=list,
        description="Schema 1 goldens (features -> probabilities); new pushes use cases.",
    )


class EscalationThreshold(_Strict):
    kind: PolicyKind = Field(description="Policy kind, as in [cascade] (shared/policy_kinds.py).")
    threshold: float = Field(ge=0.0, le=1.0, description="Threshold tuned for this model version.")


class HealthLimits(_Strict):
    """How far the new model may move from the previous model's figures in its first window
    after a swap before the device rolls it back. Unset limits are not judged."""

    max_escalation_rate_increase: float | None = Field(
        None, ge=0.0, le=1.0, description="Escalation rate may rise by at most this (0.10 = 10 points)."
    )
    max_confidence_drop: float | None = Field(
        None, ge=0.0, le=1.0, description="Mean confidence of edge-served answers may fall by at most this."
    )
    max_latency_ratio: float | None = Field(
        None, gt=1.0, description="Median edge latency may grow by at most this factor."
    )
    max_disagreement_increase: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Edge-vs-cloud disagreement on sampled easy cases may rise by at most this.",
    )
    min_requests: int = Field(
        50, ge=1, description="Judge a signal only once the new model has this many samples of it."
    )
    min_samples: int = Field(
        20, ge=1, description="Judge disagreement once this many sampled escalations came back."
    )


class _Signed(_Strict):
    """Canonical bytes, Ed25519 signing and verification shared by model and table manifests."""

    key_id: str = Field(description="Fingerprint of the signing key.")
    signature: str | None = Field(None, description="Base64 Ed25519 signature over the canonical bytes.")

    def canonical_bytes(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: "Ed25519PrivateKey") -> Self:
        unsigned = self.model_copy(update={"key_id": key_id(key.public_key()), "signature": None})
        sig = key.sign(unsigned.canonical_bytes())
        return unsigned.model_copy(update={"signature": base64.b64encode(sig).decode()})

    def verify(self, public: "Ed25519PublicKey") -> None:
        """Raise UpdateError("unsigned manifest" / "bad signature ...") unless signed by `public`."""
        if not self.signature:
            raise UpdateError("unsigned manifest")
        from cryptography.exceptions import InvalidSignature

        try:
            public.verify(base64.b64decode(self.signature), self.canonical_bytes())
        except (InvalidSignature, ValueError):
            raise UpdateError(f"bad signature (key {self.key_id}; device trusts {key_id(public)})") from None

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        """Parse a manifest message; raises UpdateError naming the problem (never anything else,
        whatever the bytes: too large, not JSON, nested too deep, wrong types)."""
        if len(payload) > MAX_MANIFEST_BYTES:
            raise UpdateError(f"manifest of {len(payload)} bytes exceeds {MAX_MANIFEST_BYTES}")
        try:
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UpdateError(f"malformed manifest: {where}: {first['msg']}") from None


class Manifest(_Signed):
    """One model version for some devices: those its signed `target` covers (see target_covers)."""

    schema_version: int = Field(MANIFEST_SCHEMA, description="Manifest schema version.")
    kind: Literal["model"] = Field("model", description="What the manifest carries: a model.")
    fleet: str = Field(description="Fleet name.")
    name: str = Field(
        description="Model name: the device model it replaces; published on that model's own topics "
        "(Topics.manifest_*), refused by a device that does not serve it there."
    )
    version: str = Field(description="Model version, independent of the agent version.")
    backend: BackendName = Field(description="Backend that runs the artifact.")
    file_name: str = Field(description="Artifact file name on the device.")
    card: ModelCard = Field(description="The model card installed beside the artifact.")
    min_agent_version: str = Field(description="Oldest agent version that can run this model.")
    profiles: list[str] = Field(description="Compatible device profiles; empty = any.")
    escalation: list[EscalationThreshold] = Field(
        default_factory=list, description="Escalation thresholds that go with this model."
    )
    golden: Golden | None = Field(
        None, description="Golden cases the candidate must reproduce on the device; None = load test only."
    )
    health: HealthLimits | None = Field(
        None, description="ML-aware rollback limits for the watch window after the swap."
    )
    route: str = Field(
        pattern=ROUTE_PATTERN,
        description="Delivery route for the artifact: a transport name the device knows "
        "(edge/updates/transports/registry.py: mqtt, http).",
    )
    artifact: Blob = Field(description="The full artifact.")
    delta: Delta | None = Field(None, description="Optional delta against a named base version.")
    target: str = Field(
        description="device:ID, group:G or all. Signed: a device applies only a manifest whose "
        "target covers it, whatever topic it came on."
    )
    push_id: str = Field(description="Unique id of the push (a rollback is a new push).")
    rollback_of: str | None = Field(
        None, description="Version this push rolls back; only a rollback may lower a device's version."
    )
    issued_at: float = Field(
        description="Unix time the manifest was signed; the newest signed instruction for a device wins "
        "and one older than the instruction it applied last is refused (replay)."
    )

    def canonical_bytes(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"signature"})
        # Manifests signed before `kind` existed stay valid: the default is left out of the bytes.
        # A table manifest always carries kind "table", so neither can pass for the other.
        body.pop("kind", None)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class HealthFigure(_Strict):
    """One health signal after a swap: the previous model's figure and the new one's so far."""

    before: float | None = Field(None, description="Previous model's figure (frozen at the swap).")
    after: float | None = Field(None, description="New model's figure in its watch window.")
    samples: int = Field(0, description="Samples behind `after`.")


class UpdateStatus(_Strict):
    """The retained update status of one model a device serves (topic Topics.update_status,
    one per model)."""

    device: str = Field(description="Device id.")
    profile: str = Field(description="Device profile name.")
    groups: list[str] = Field(default_factory=list, description="Groups the device belongs to.")
    agent_version: str = Field(description="edgecascade version of the agent.")
    model: str = Field(description="Model name (the last level of its status topic).")
    active_version: str = Field(description="Version serving now.")
    state: UpdateState = Field(description="Update state machine state.")
    target_version: str | None = Field(None, description="Version being applied, if any.")
    push_id: str | None = Field(None, description="Push the state refers to.")
    progress: float | None = Field(None, description="Download progress 0..1 while downloading.")
    reason: str | None = Field(None, description="Why it failed or rolled back.")
    bytes_received: int = Field(0, description="Bytes received for the current update.")
    refused_manifests: int = Field(
        0, description="Manifests refused unapplied since start (garbage, forged, replayed, not for it)."
    )
    last_refusal: str | None = Field(None, description="Why the latest refused manifest was refused.")
    health: dict[str, HealthFigure] = Field(
        default_factory=dict,
        description="ML health figures of the last swap by signal (escalation_rate, confidence, "
        "latency_ms, disagreement).",
    )
    updated_at: float = Field(description="Unix time of this status.")


def target_covers(target: str, device: str, groups: list[str] | tuple[str, ...]) -> bool:
    """Whether a signed target (`device:ID`, `group:G` or `all`) names this device."""
    level, _, value = target.partition(":")
    if target == "all":
        return True
    if level == "device":
        return value == device
    return level == "group" and value in groups


# -- keys ---------------------------------------------------------------------------------------
def key_id(public: "Ed25519PublicKey") -> str:
    import hashlib

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_b64(public: "Ed25519PublicKey") -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(text: str) -> "Ed25519PublicKey":
    """A public key from base64 of the 32 raw bytes, or PEM text. Raises ConfigError."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key: Any = serialization.load_pem_public_key(text.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except ValueError as exc:
        raise ConfigError(f"not an Ed25519 public key: {exc}", key="updates.public_key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("not an Ed25519 public key", key="updates.public_key")
    return key


def save_private_key(key: "Ed25519PrivateKey", path: Path) -> None:
    """Write PEM with mode 0600: the signing key never leaves the fleet manager."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(pem)


#: Largest signing key file read: an Ed25519 PEM key is 119 bytes.
MAX_PRIVATE_KEY_BYTES = 64 * 1024


def load_private_key(path: Path) -> "Ed25519PrivateKey":
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded

    try:
        # Bounded: a FIFO blocked here for ever, and /dev/zero was read until memory ran out.
        data = read_bounded(path, MAX_PRIVATE_KEY_BYTES)
    except FileNotFoundError:
        raise ConfigError("signing key not found (run `edgecascade fleet keygen`)", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a folder; give the signing key's file", file=str(path)) from None
    except NotRegularFileError:
        raise ConfigError("not a regular file (a device, pipe or socket)", file=str(path)) from None
    except FileTooLargeError:
        raise ConfigError(
            f"over {MAX_PRIVATE_KEY_BYTES} bytes: not a PEM private key", file=str(path)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key: {exc.strerror}", file=str(path)) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's answer to a key encrypted with a passphrase
        raise ConfigError(
            "encrypted with a passphrase; a signing key is kept unencrypted", file=str(path)
        ) from None
    except ValueError as exc:
        raise ConfigError(f"not a PEM private key: {exc}", file=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("not an Ed25519 private key", file=str(path))
    return key
