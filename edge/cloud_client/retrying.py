"""What every remote cloud client shares, whatever its transport: one idempotency key per
escalation, a deadline over all attempts, retries with jittered exponential backoff on
retryable errors only, a circuit breaker, and the token rules of the profile."""

from __future__ import annotations

import abc
import base64
import ipaddress
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import numpy as np

from edgecascade.edge.answer import ModelRef
from edgecascade.edge.cloud_client.base import CloudAnswer, CloudClient
from edgecascade.edge.cloud_client.breaker import CircuitBreaker
from edgecascade.edge.cloud_client.negotiation import ServerFacts
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.shared.errors import CloudBadResponseError, CloudError, CloudUnreachableError, ConfigError
from edgecascade.shared.v2 import DATATYPES, IDEMPOTENCY_KEY, RAW_INPUT_KEY, InferResponse

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

#: Seconds (connect, read) one attempt may take.
Timeout = tuple[float, float]
_T = TypeVar("_T")


class Retryable(CloudError):
    """The cloud is there but busy (429/502/503/504, gRPC UNAVAILABLE): worth another try."""


class RetryingCloudClient(CloudClient):
    """Subclasses implement `_attempt`: one try, raising CloudUnreachableError or Retryable for
    what another try may fix and any other CloudError for what it cannot."""

    def __init__(
        self,
        config: CloudSection,
        *,
        input_name: str = "input",
        probabilities_output: str = "probabilities",
        device_id: str = "",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.url is None:
            raise ConfigError("cloud.url is not set", key="cloud.url")
        self.config = config
        self.url: str = config.url
        self.input_name = input_name
        self.output = probabilities_output
        self.device_id = device_id
        self._sleep, self._clock = sleep, clock
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_s, clock)
        self.token = read_token(config)
        check_token_transport(config, self.token)
        self.attempts = 0
        self.facts: ServerFacts | None = None  # negotiated once per server (edge/cloud_client/negotiation.py)

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        key = request_id or uuid.uuid4().hex

        def row(facts: ServerFacts) -> dict[str, np.ndarray]:
            return {facts.input_name: features[None, ...].astype(DATATYPES[facts.datatype], copy=False)}

        def attempt(timeout: Timeout) -> CloudAnswer:
            decoded = self._exchange(row, key, [self.output], raw_input, timeout)
            try:
                probs = np.asarray(decoded.outputs[self.output], dtype=np.float32).reshape(-1)
            except (KeyError, ValueError) as exc:
                raise CloudBadResponseError(f"invalid V2 response: {exc}") from None
            if probs.size == 0 or not np.all(np.isfinite(probs)):
                raise CloudBadResponseError("invalid V2 response: empty or non-finite probabilities")
            return CloudAnswer(probs, _ref(decoded))

        return self._call(attempt)

    def infer_tensors(
        self, inputs: dict[str, np.ndarray], *, request_id: str, outputs: list[str] | None = None
    ) -> tuple[dict[str, np.ndarray], ModelRef]:
        key = request_id or uuid.uuid4().hex

        def attempt(timeout: Timeout) -> tuple[dict[str, np.ndarray], ModelRef]:
            decoded = self._exchange(lambda facts: inputs, key, outputs, None, timeout)
            return decoded.outputs, _ref(decoded)

        return self._call(attempt)

    def _call(self, attempt: Callable[[Timeout], _T]) -> _T:
        """`attempt` under the breaker, retried until the deadline. One idempotency key (made by
        the caller) serves every retry: the server computes and counts an escalation once even if
        a response is lost and we try again."""
        self.breaker.before_call()
        try:
            answer = self._with_retries(attempt)
        except CloudError:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return answer

    def _with_retries(self, attempt: Callable[[Timeout], _T]) -> _T:
        cfg = self.config
        deadline = self._clock() + cfg.deadline_s
        tries = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise CloudUnreachableError(f"deadline of {cfg.deadline_s}s passed after {tries} attempt(s)")
            tries += 1
            self.attempts += 1
            try:
                return attempt((min(cfg.connect_timeout_s, remaining), min(cfg.read_timeout_s, remaining)))
            except (CloudUnreachableError, Retryable) as exc:
                if tries > cfg.retries:
                    raise CloudUnreachableError(str(exc)) from None
                # Full jitter: a fleet that lost the cloud at once does not retry in lockstep.
                delay = random.uniform(0, cfg.backoff_base_s * 2 ** (tries - 1))
                if self._clock() + delay >= deadline:
                    raise CloudUnreachableError(f"{exc}; no time left for a retry") from None
                self._sleep(delay)

    def _server_facts(self, timeout: Timeout) -> ServerFacts:
        if self.facts is None:
            self.facts = self._negotiate(timeout)
        return self.facts

    @abc.abstractmethod
    def _negotiate(self, timeout: Timeout) -> ServerFacts:
        """What the server and its model say of themselves: binary tensors, the input's name and type."""

    @abc.abstractmethod
    def _exchange(
        self,
        inputs: Callable[[ServerFacts], dict[str, np.ndarray]],
        key: str,
        outputs: list[str] | None,
        raw_input: bytes | None,
        timeout: Timeout,
    ) -> InferResponse:
        """One request: `inputs` made from the server's negotiated facts, asking for `outputs`
        (None: all). Raises CloudUnreachableError or Retryable for what another try may fix and
        any other CloudError for what it cannot."""


def _ref(decoded: InferResponse) -> ModelRef:
    return ModelRef(decoded.model_name, decoded.model_version or "unknown")


def request_parameters(key: str, raw_input: bytes | None) -> dict[str, object]:
    """The V2 request parameters of an escalation: its idempotency key, and the raw input where
    the profile lets it leave the device."""
    params: dict[str, object] = {IDEMPOTENCY_KEY: key}
    if raw_input is not None:
        params[RAW_INPUT_KEY] = base64.b64encode(raw_input).decode()
    return params


def read_token(config: CloudSection) -> str | None:
    if config.token is not None:
        return config.token.get_secret_value()
    if config.token_file is not None:
        from edgecascade.shared.bounded_read import FileTooLargeError, NotRegularFileError, read_bounded

        where = {"file": str(config.token_file), "key": "cloud.token_file"}
        try:
            token = read_bounded(config.token_file, 64 * 1024).decode("ascii").strip()
        except (IsADirectoryError, NotRegularFileError):
            raise ConfigError("not a regular file (a folder, device or pipe)", **where) from None
        except FileTooLargeError:
            raise ConfigError("over 64 KiB: not a token file", **where) from None
        except UnicodeDecodeError:
            raise ConfigError("a bearer token is printable ASCII", **where) from None
        except OSError as exc:
            raise ConfigError(f"cannot read token file: {exc.strerror}", **where) from None
        if not token or not all(0x21 <= ord(c) <= 0x7E for c in token):
            # Never shown: it is a secret, and the message would quote it.
            raise ConfigError("a bearer token is one line of printable ASCII without spaces", **where)
        return token
    return None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; names are not resolved (no I/O at start-up)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_token_transport(config: CloudSection, token: str | None) -> None:
    """A bearer token goes over plain HTTP/gRPC only to this machine, or where the profile says
    so explicitly: anyone on the path could read it and call the cloud as this device."""
    if token is None or config.url is None or config.allow_token_over_plain_text:
        return
    parts = urlsplit(config.url)
    if parts.scheme in ("http", "grpc") and not is_loopback(parts.hostname or ""):
        raise ConfigError(
            f"refusing to send the bearer token over plain {parts.scheme}:// to {parts.hostname}; "
            f"use {parts.scheme}s:// (with cloud.ca_file for a private CA), or set "
            "cloud.allow_token_over_plain_text = true on a network you trust",
            key="cloud.allow_token_over_plain_text",
        )
