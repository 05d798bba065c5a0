"""The http route: HTTP(S) Range requests against the cloud's /artifacts route."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from edgecascade.edge.updates.staging import StagedBlob
from edgecascade.edge.updates.transports.base import Progress, TransportContext
from edgecascade.shared.errors import TransportError, UpdateError

if TYPE_CHECKING:
    import requests

    from edgecascade.shared.manifest import Blob

log = logging.getLogger(__name__)


class HttpRangeTransport:
    """GET <blob.url> with `Range: bytes=a-b` for each run of missing chunks (at most
    `range_bytes` per request), streamed and stored chunk by chunk as it arrives, so after a cut
    the next request starts at the first chunk still missing. Connection errors, cuts and 5xx are
    retried with backoff until the overall timeout; other statuses, a file of another size, and an
    ETag that is not the blob's SHA-256 (the server holds other bytes) are refused."""

    def __init__(
        self,
        *,
        request_timeout_s: float,
        timeout_s: float,
        range_bytes: int = 4 << 20,
        verify: bool | str = True,
    ) -> None:
        import requests

        self.session = requests.Session()
        # Passed per request: a session-level `verify` loses to REQUESTS_CA_BUNDLE (requests#3829).
        self.verify = verify
        self.request_timeout_s = request_timeout_s
        self.timeout_s = timeout_s
        self.range_bytes = range_bytes
        self.retries = 0  # failed attempts that were retried (a cut, a 5xx)

    def fetch(self, staged: StagedBlob, stop: threading.Event, on_progress: Progress) -> None:
        import requests

        url = staged.blob.url
        if not url:
            raise UpdateError("manifest route is http but the artifact has no url")
        deadline = time.monotonic() + self.timeout_s
        delay = 0.1
        while not staged.done.is_set() and not stop.is_set():
            if time.monotonic() > deadline:
                raise UpdateError(f"download timed out with {len(staged.missing_sorted())} chunks missing")
            try:
                for first, last in self._runs(staged):
                    if stop.is_set():
                        return
                    self._get_run(staged, url, first, last, stop, on_progress)
                delay = 0.1
            except requests.exceptions.SSLError as exc:  # not a cut: retrying cannot help
                raise UpdateError(f"TLS to the artifact server failed: {exc}") from exc
            except (requests.RequestException, TransportError) as exc:
                self.retries += 1
                log.warning("artifact download from %s failed (%s); resuming in %.1fs", url, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def _runs(self, staged: StagedBlob) -> list[tuple[int, int]]:
        """Consecutive missing chunks, [first, last] inclusive, each at most `range_bytes` long."""
        per_request = max(1, self.range_bytes // staged.blob.chunk_size)
        runs: list[tuple[int, int]] = []
        for index in staged.missing_sorted():
            if runs and runs[-1][1] == index - 1 and index - runs[-1][0] < per_request:
                runs[-1] = (runs[-1][0], index)
            else:
                runs.append((index, index))
        return runs

    def _get_run(
        self,
        staged: StagedBlob,
        url: str,
        first: int,
        last: int,
        stop: threading.Event,
        on_progress: Progress,
    ) -> None:
        blob = staged.blob
        start, end = blob.chunk_bounds(first)[0], blob.chunk_bounds(last)[1]
        with self.session.get(
            url,
            headers={"Range": f"bytes={start}-{end - 1}"},
            timeout=self.request_timeout_s,
            stream=True,
            verify=self.verify,
        ) as resp:
            _check_response(resp, url, blob, start, end)
            _store_chunks(resp, staged, first, last, stop, on_progress)

    def close(self) -> None:
        self.session.close()

    @classmethod
    def from_context(cls, context: TransportContext) -> HttpRangeTransport:
        cfg = context.config
        return cls(
            request_timeout_s=cfg.http_timeout_s,
            timeout_s=cfg.download_timeout_s,
            range_bytes=cfg.http_range_kb * 1024,
            verify=context.verify,
        )


def _check_response(resp: requests.Response, url: str, blob: Blob, start: int, end: int) -> None:
    """Refuse an answer that is not the asked range of the manifest's bytes; a 5xx is retried."""
    if resp.status_code >= 500:
        raise TransportError(f"artifact server answered {resp.status_code}")
    if resp.status_code != 206:
        raise UpdateError(f"artifact server answered {resp.status_code} to a range request for {url}")
    etag = resp.headers.get("ETag", "").strip('"')
    if etag and etag != blob.sha256:
        raise UpdateError(f"artifact server holds other bytes than the signed manifest (ETag {etag[:16]})")
    expected = f"bytes {start}-{end - 1}/{blob.size_bytes}"
    if resp.headers.get("Content-Range") != expected:
        raise UpdateError(
            f"artifact server sent Content-Range {resp.headers.get('Content-Range')!r}, expected {expected!r}"
        )


def _store_chunks(
    resp: requests.Response,
    staged: StagedBlob,
    first: int,
    last: int,
    stop: threading.Event,
    on_progress: Progress,
) -> None:
    """Write chunks first..last from the streamed body as each one completes."""
    blob = staged.blob
    buf = bytearray()
    index = first
    for piece in resp.iter_content(64 * 1024):
        if stop.is_set():
            return
        buf += piece
        while index <= last:
            lo, hi = blob.chunk_bounds(index)
            if len(buf) < hi - lo:
                break
            if not staged.write_chunk(index, bytes(buf[: hi - lo])):
                raise UpdateError(f"chunk {index} failed the SHA-256 in the signed manifest (tampered?)")
            del buf[: hi - lo]
            on_progress(staged)
            index += 1
    if index <= last:
        raise TransportError(f"response ended after chunk {index - 1} of {first}..{last}")
