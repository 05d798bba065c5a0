"""Profile values that passed validation and failed later, as a traceback or a leak: each is
refused when the profile is read now, naming the key and never quoting a secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgecascade.edge.cloud_client.retrying import read_token
from edgecascade.edge.config import load_profile
from edgecascade.edge.config.loader import profile_path
from edgecascade.shared.errors import ConfigError
from tests.edge.config.support import write_profile

SECRET = "s3cr3t-value"


def test_a_shutdown_timeout_beyond_an_hour_is_refused(tmp_path: Path) -> None:
    # 1e10 s passed, then `agent run` died of OverflowError at SIGTERM (threading.Timer).
    with pytest.raises(ConfigError) as info:
        load_profile(write_profile(tmp_path), environ={"EDGECASCADE_DAEMON__SHUTDOWN_TIMEOUT_S": "1e10"})
    assert info.value.key == "EDGECASCADE_DAEMON__SHUTDOWN_TIMEOUT_S" and "3600" in str(info.value)


@pytest.mark.parametrize("token", [f"{SECRET}\nX-Evil: 1", f"{SECRET}€", f"{SECRET} two", ""])
def test_a_token_that_cannot_be_an_http_header_is_refused_unshown(tmp_path: Path, token: str) -> None:
    # A newline reached the HTTP library, whose traceback quoted `Bearer <token>`; a non-Latin-1
    # character crashed the first escalation.
    body = f'[cloud]\nurl = "http://127.0.0.1:1"\ntoken = {token!r}\n'.replace("'", '"').replace(
        '\n"', '\\n"'
    )
    path = write_profile(tmp_path, body.replace(f"{SECRET}\nX", f"{SECRET}\\nX"))
    if token == "":
        assert load_profile(path, environ={}).cloud.token is not None  # empty: no token sent
        return
    with pytest.raises(ConfigError) as info:
        load_profile(path, environ={})
    assert "printable ASCII" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{SECRET}\nsecond line\n", "one line of printable ASCII"),
        (b"\xff\xfe" + SECRET.encode("utf-16-le"), "printable ASCII"),
        (b"x" * (65 * 1024), "over 64 KiB"),
        (None, "not a regular file (a device, pipe or socket)"),
    ],
    ids=["two-lines", "utf-16", "huge", "fifo"],
)
def test_a_token_file_is_read_bounded_and_checked(
    tmp_path: Path, content: str | bytes | None, expected: str
) -> None:
    token_file = tmp_path / "token"
    if content is None:
        os.mkfifo(token_file)  # read whole, a FIFO without a writer hung the agent
    else:
        token_file.write_bytes(content.encode() if isinstance(content, str) else content)
    path = write_profile(tmp_path, f'[cloud]\nurl = "http://127.0.0.1:1"\ntoken_file = "{token_file}"\n')
    with pytest.raises(ConfigError) as info:  # a FIFO is refused as the profile is read
        read_token(load_profile(path, environ={}).cloud)
    assert (
        expected in str(info.value) and info.value.key == "cloud.token_file" and SECRET not in str(info.value)
    )


def test_groups_are_bounded_and_never_repeated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"groups \['a'\] appear more than once"):
        load_profile(write_profile(tmp_path), environ={"EDGECASCADE_GROUPS": '["a", "b", "a"]'})
    many = "[" + ", ".join(f'"g{i}"' for i in range(65)) + "]"
    with pytest.raises(ConfigError, match="at most 64 items"):
        load_profile(write_profile(tmp_path), environ={"EDGECASCADE_GROUPS": many})


def test_edgecascade_config_naming_a_folder_or_fifo_says_so(tmp_path: Path) -> None:
    fifo = tmp_path / "profile.fifo"
    os.mkfifo(fifo)
    for named in (tmp_path, fifo):
        with pytest.raises(ConfigError, match="not a regular file") as info:
            profile_path(None, {"EDGECASCADE_CONFIG": str(named)})
        assert info.value.key == "EDGECASCADE_CONFIG"
    with pytest.raises(ConfigError, match="profile file not found"):
        profile_path(None, {"EDGECASCADE_CONFIG": str(tmp_path / "missing.toml")})
