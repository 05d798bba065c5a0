"""The device's client for a cloud speaking the Open Inference Protocol (ours, Triton, KServe,
MLServer): pooled connections, connect/read timeouts, a deadline per escalation, retries with
jittered exponential backoff on retryable errors only, and a circuit breaker."""

from __future__ import annotations

import base64
import logging
import random
import time
import uuid
from collections.abc import Callable

import numpy as np
import requests
from requests.adapters import HTTPAdapter

from edgecascade.edge.cloud_client.base import CloudAnswer, CloudClient
from edgecascade.edge.cloud_client.breaker import CircuitBreaker
from edgecascade.edge.config.cascade import CloudSection
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.shared.answer import ModelRef
from edgecascade.shared.errors import (
    CloudAuthError,
    CloudBadResponseError,
    CloudError,
    CloudUnreachableError,
    ConfigError,
    ProtocolError,
)
from edgecascade.shared.v2 import IDEMPOTENCY_KEY, RAW_INPUT_KEY, decode_infer_response, encode_infer_request

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 502, 503, 504}


class V2HttpCloudClient(CloudClient):
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
        self.input_name = input_name
        self.output = probabilities_output
        version = f"/versions/{config.model_version}" if config.model_version else ""
        self.infer_url = f"{config.url}/v2/models/{config.model}{version}/infer"
        self._sleep, self._clock = sleep, clock
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_s, clock)
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=8, max_retries=0))
        self.session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=8, max_retries=0))
        token = _read_token(config)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if device_id:
            self.session.headers["X-Edgecascade-Device"] = device_id
        self.attempts = 0

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> V2HttpCloudClient:
        return cls(profile.cloud, device_id=profile.device_id)

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        self.breaker.before_call()
        # One idempotency key for every retry of this escalation: the server computes and
        # counts it once even if a response is lost and we try again.
        key = request_id or uuid.uuid4().hex
        params: dict[str, object] = {IDEMPOTENCY_KEY: key}
        if raw_input is not None:  # read, checked and counted by the cloud (cloud/dataplane.py)
            params[RAW_INPUT_KEY] = base64.b64encode(raw_input).decode()
        body, headers = encode_infer_request(
            {self.input_name: features[None, ...].astype(np.float32, copy=False)},
            request_id=key,
            parameters=params,
            outputs=[self.output],
            binary=self.config.binary_tensors,
            binary_outputs=self.config.binary_tensors,
        )
        try:
            answer = self._with_retries(body, headers)
        except CloudError:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return answer

    def _with_retries(self, body: bytes, headers: dict[str, str]) -> CloudAnswer:
        cfg = self.config
        deadline = self._clock() + cfg.deadline_s
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise CloudUnreachableError(
                    f"deadline of {cfg.deadline_s}s passed after {attempt} attempt(s)"
                )
            attempt += 1
            self.attempts += 1
            try:
                return self._attempt(
                    body,
                    headers,
                    timeout=(min(cfg.connect_timeout_s, remaining), min(cfg.read_timeout_s, remaining)),
                )
            except (CloudUnreachableError, _Retryable) as exc:
                if attempt > cfg.retries:
                    raise CloudUnreachableError(str(exc)) from None
                # Full jitter: a fleet that lost the cloud at once does not retry in lockstep.
                delay = random.uniform(0, cfg.backoff_base_s * 2 ** (attempt - 1))
                if self._clock() + delay >= deadline:
                    raise CloudUnreachableError(f"{exc}; no time left for a retry") from None
                self._sleep(delay)

    def _attempt(self, body: bytes, headers: dict[str, str], timeout: tuple[float, float]) -> CloudAnswer:
        try:
            resp = self.session.post(self.infer_url, data=body, headers=headers, timeout=timeout)
        except requests.Timeout as exc:
            raise CloudUnreachableError(f"timed out ({type(exc).__name__})") from None
        except requests.ConnectionError as exc:
            raise CloudUnreachableError(
                f"cannot connect to {self.config.url}: {type(exc).__name__}"
            ) from None
        if resp.status_code in (401, 403):
            raise CloudAuthError(f"{resp.status_code} {_error_text(resp)}")
        if resp.status_code in RETRYABLE_STATUS:
            raise _Retryable(f"{resp.status_code} {_error_text(resp)}")
        if resp.status_code != 200:
            raise CloudBadResponseError(f"{resp.status_code} {_error_text(resp)}")
        try:
            decoded = decode_infer_response(resp.content, resp.headers)
            probs = np.asarray(decoded.outputs[self.output], dtype=np.float32).reshape(-1)
        except (ProtocolError, KeyError, ValueError) as exc:
            raise CloudBadResponseError(f"invalid V2 response: {exc}") from None
        if probs.size == 0 or not np.all(np.isfinite(probs)):
            raise CloudBadResponseError("invalid V2 response: empty or non-finite probabilities")
        return CloudAnswer(probs, ModelRef(decoded.model_name, decoded.model_version or "unknown"))

    def close(self) -> None:
        self.session.close()


class _Retryable(CloudError):
    """A 429/502/503/504: the cloud is there but busy; worth another try."""


def _error_text(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", ""))[:200]
    except ValueError:
        return resp.text[:200]


def _read_token(config: CloudSection) -> str | None:
    if config.token is not None:
        return config.token.get_secret_value()
    if config.token_file is not None:
        try:
            return config.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file: {exc.strerror}", key="cloud.token_file") from None
    return None
