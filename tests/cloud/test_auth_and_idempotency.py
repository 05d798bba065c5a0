"""Token files and checks; the idempotency cache with an injected clock, and its byte bound
in a real server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
import requests

from edgecascade.cloud.auth import TokenAuthenticator, load_grants
from edgecascade.cloud.idempotency import IdempotencyCache
from edgecascade.shared.errors import AuthError, ConfigError
from edgecascade.shared.v2 import encode_infer_request
from tests.support.cloud_server import CloudServer, cloud_server


def test_tokens_from_file_and_env(tokens_file: Path) -> None:
    auth = TokenAuthenticator(load_grants(tokens_file, "van-9=tok-van"))
    assert len(auth) == 3
    assert auth.authenticate("Bearer tok-store-1", "any-model") == "store-1"
    assert auth.authenticate("bearer tok-van", "digits-cloud") == "van-9"
    assert auth.authenticate("Bearer tok-kiosk-2", "digits-batched") == "kiosk-2"
    with pytest.raises(AuthError) as info:
        auth.authenticate("Bearer tok-kiosk-2", "digits-cloud")
    assert info.value.forbidden
    for header in (None, "", "Basic abc", "Bearer ", "Bearer tok-store-2"):
        with pytest.raises(AuthError) as info:
            auth.authenticate(header, "m")
        assert not info.value.forbidden


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("a = 5", "a"),
        ('[a]\ntoken = ""', "a.token"),
        ('[a]\ntoken = "t"\nmodel = ["m"]', "a"),
        ('[a]\ntoken = "t"\nmodels = "m"', "a.models"),
    ],
)
def test_bad_tokens_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_grants(path, None)
    assert info.value.key == key and info.value.file == str(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'tok = "' + b"\xff" * 8 + b'"', "not UTF-8 text"),
        (b"x = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"#" * (2 << 20), "over 1024 KiB"),
        (None, "got a device, pipe or socket"),
    ],
    ids=["not-utf8", "deep", "huge", "fifo"],
)
def test_a_hostile_tokens_file_is_a_config_error_never_a_hang(
    tmp_path: Path, content: bytes | None, words: str
) -> None:
    path = tmp_path / "tokens.toml"
    if content is None:
        os.mkfifo(path)
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=words) as info:
        load_grants(path, None)
    assert info.value.file == str(path)


def test_duplicate_device_and_bad_env_are_refused(tokens_file: Path) -> None:
    with pytest.raises(ConfigError, match="two tokens"):
        load_grants(tokens_file, "store-1=other")
    with pytest.raises(ConfigError):
        load_grants(None, "no-equals-sign")


def test_idempotency_cache_expires_evicts_and_forgets_failures() -> None:
    now = [0.0]

    async def run() -> None:
        cache: IdempotencyCache[str] = IdempotencyCache(max_entries=2, ttl_s=10, clock=lambda: now[0])
        first = cache.begin(("d", "a"))
        first.set_result("A")
        assert cache.get(("d", "a")) is first
        now[0] = 11.0
        assert cache.get(("d", "a")) is None  # past the TTL
        for key in ("b", "c", "e"):
            cache.begin(("d", key)).set_result(key)
        assert len(cache) == 2 and cache.get(("d", "b")) is None  # least recently used went
        failing = cache.begin(("d", "f"))
        cache.fail(("d", "f"), failing, RuntimeError("model broke"))
        assert cache.get(("d", "f")) is None

    asyncio.run(run())


def _replays(server: CloudServer) -> float:
    for line in requests.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith('edgecascade_cloud_idempotent_replays_total{model="digits-cloud"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_answers_kept_for_replay_are_bounded_in_bytes_not_only_in_number(cloud_repo: Path) -> None:
    """Every distinct idempotency key kept its whole answer: 10,000 keys on batches of 40,000
    rows (1.9 MB of outputs each) would keep 19 GB. With --idempotency-max-mb 8 the oldest
    answers go once 8 MB are kept (30 answers of 0.38 MB here): the newest key still replays,
    the first is computed again. (The server's cache, made from its settings, was also ignored
    for a default one: no --idempotency-* setting had any effect.)"""
    rows = np.random.default_rng(0).random((8_000, 64), dtype=np.float32)
    with cloud_server(cloud_repo, extra_args=("--idempotency-max-mb", "8")) as server:
        session = requests.Session()
        url = f"{server.url}/v2/models/digits-cloud/infer"

        def infer(key: str) -> None:
            body, headers = encode_infer_request(
                {"input": rows}, parameters={"idempotency_key": key}, binary_outputs=True
            )
            assert session.post(url, data=body, headers=headers, timeout=60).status_code == 200

        for i in range(30):
            infer(f"key-{i}")
        replays = _replays(server)
        infer("key-29")
        assert _replays(server) == replays + 1  # the newest answer is kept
        infer("key-0")
        assert _replays(server) == replays + 1  # the oldest went: computed again
