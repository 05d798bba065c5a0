"""The device's client for a cloud speaking the Open Inference Protocol over HTTP(S) (ours,
Triton, KServe, MLServer): pooled connections, TLS verified against the profile's CA, and,
once per server, negotiation: binary tensors only where `GET /v2` advertises them, the input's
name and datatype from the model's metadata, and JSON from then on if a server refuses a binary
request anyway (one log line). Retries, deadline and breaker: edge/cloud_client/retrying.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import requests
from pydantic import ValidationError
from requests.adapters import HTTPAdapter

from edgecascade.edge.cloud_client.negotiation import ServerFacts, negotiate
from edgecascade.edge.cloud_client.retrying import Retryable, RetryingCloudClient, Timeout, request_parameters
from edgecascade.edge.cloud_client.tls import cloud_tls
from edgecascade.edge.config.cloud import CloudSection
from edgecascade.shared.errors import (
    CloudAuthError,
    CloudBadResponseError,
    CloudUnreachableError,
    ProtocolError,
)
from edgecascade.shared.v2 import (
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    decode_infer_response,
    encode_infer_request,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 502, 503, 504}
#: Statuses with which servers without (working) binary support answer a binary request:
#: MLServer 1.7 answers 500 (it decodes the body as UTF-8), others 400, 415 or 422.
BINARY_REFUSED = {400, 415, 422, 500, 501}


class V2HttpCloudClient(RetryingCloudClient):
    def __init__(self, config: CloudSection, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        version = f"/versions/{config.model_version}" if config.model_version else ""
        self.model_url = f"{self.url}/v2/models/{config.model}{version}"
        self.infer_url = self.model_url + "/infer"
        self.tls = cloud_tls(config)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=8, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"
        if self.device_id:
            self.session.headers["X-Edgecascade-Device"] = self.device_id

    def _exchange(
        self,
        inputs: Callable[[ServerFacts], dict[str, np.ndarray]],
        key: str,
        outputs: list[str] | None,
        raw_input: bytes | None,
        timeout: Timeout,
    ) -> InferResponse:
        facts = self._server_facts(timeout)
        tensors = inputs(facts)
        resp = self._post(tensors, key, raw_input, outputs, facts.binary, timeout)
        if facts.binary and resp.status_code in BINARY_REFUSED:
            log.warning(
                "cloud %s refused a binary-tensor request (%d %s); sending JSON from now on",
                facts.server,
                resp.status_code,
                _error_text(resp)[:80],
            )
            # Switched before the JSON try: should that try be cut (some servers drop the
            # connection after such an error), the next attempt goes straight to JSON.
            self.facts = facts.without_binary()
            resp = self._post(tensors, key, raw_input, outputs, False, timeout)
            if resp.status_code in BINARY_REFUSED:
                log.info("JSON refused alike (%d): the error was not about binary tensors", resp.status_code)
                self.facts = facts
        return self._decoded(resp)

    def _negotiate(self, timeout: Timeout) -> ServerFacts:
        server = self._get_metadata(self.url + "/v2", ServerMetadata, timeout)
        model = self._get_metadata(self.model_url, ModelMetadata, timeout)
        return negotiate(server, model, input_name=self.input_name, allow_binary=self.config.binary_tensors)

    def _get_metadata(self, url: str, model: type[Any], timeout: Timeout) -> Any:
        resp = self._request("GET", url, timeout=timeout)
        if resp.status_code in (401, 403):
            raise CloudAuthError(f"{resp.status_code} {_error_text(resp)}")
        if resp.status_code in RETRYABLE_STATUS:
            raise Retryable(f"{resp.status_code} from {url}")
        if resp.status_code >= 500 and resp.status_code != 501:
            # A broken server, not an answer: negotiate again on the next escalation.
            raise CloudBadResponseError(f"{resp.status_code} from GET {url}: {_error_text(resp)}")
        if resp.status_code != 200:
            log.info("cloud answered %d to GET %s; assuming JSON tensors", resp.status_code, url)
            return None
        try:
            return model.model_validate_json(resp.content)
        except ValidationError:
            log.info("cloud's answer to GET %s is not V2 metadata; assuming JSON tensors", url)
            return None

    def _post(
        self,
        inputs: dict[str, np.ndarray],
        key: str,
        raw_input: bytes | None,
        outputs: list[str] | None,
        binary: bool,
        timeout: Timeout,
    ) -> requests.Response:
        body, headers = encode_infer_request(
            inputs,
            request_id=key,
            parameters=request_parameters(key, raw_input),
            outputs=outputs,
            binary=binary,
            binary_outputs=binary,
        )
        return self._request("POST", self.infer_url, data=body, headers=headers, timeout=timeout)

    def _request(self, method: str, url: str, *, timeout: Timeout, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(
                method, url, timeout=timeout, verify=self.tls.verify, cert=self.tls.cert, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            # Not a cut: another try meets the same certificate.
            raise CloudBadResponseError(f"TLS to {self.url} failed: {_reason(exc)}") from None
        except requests.Timeout as exc:
            raise CloudUnreachableError(f"timed out ({type(exc).__name__})") from None
        except requests.ConnectionError as exc:
            raise CloudUnreachableError(f"cannot connect to {self.url}: {type(exc).__name__}") from None

    def _decoded(self, resp: requests.Response) -> InferResponse:
        if resp.status_code in (401, 403):
            raise CloudAuthError(f"{resp.status_code} {_error_text(resp)}")
        if resp.status_code in RETRYABLE_STATUS:
            raise Retryable(f"{resp.status_code} {_error_text(resp)}")
        if resp.status_code != 200:
            raise CloudBadResponseError(f"{resp.status_code} {_error_text(resp)}")
        try:
            return decode_infer_response(resp.content, resp.headers)
        except (ProtocolError, ValueError) as exc:
            raise CloudBadResponseError(f"invalid V2 response: {exc}") from None

    def close(self) -> None:
        self.session.close()


def _error_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        # Ours, Triton and KServe: {"error": ...}; MLServer and FastAPI: {"detail": ...}.
        return str(body.get("error", body.get("detail", "")))[:200]
    return str(body)[:200]


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in (
        "CERTIFICATE_VERIFY_FAILED",
        "certificate verify failed",
        "WRONG_VERSION_NUMBER",
        "hostname",
    ):
        if marker in text:
            return marker
    return text[:160]
