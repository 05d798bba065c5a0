"""Hostile environment variables and flags of every command, through the real CLI: each ends in
one `error: ...` line naming the variable or flag (or argparse's usage error), never a
traceback, a hang, a screenful of echoed input or a secret's value; nothing is written first.

Bytes that are not UTF-8 reach a variable or an argument as the OS gives them (os.environb,
bytes in argv). A NUL cannot: execve ends every string at the first one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgecascade.cli import build_parser

REPO = Path(__file__).parent.parent.parent
MODEL = REPO / "tests" / "fixtures" / "models" / "digits_edge_int8.onnx"
SECRET = "S3cretZZ"
NO_BROKER = "127.0.0.1:1"  # refuses at once: nothing here may reach a real broker
LONG = "a" * 5000  # longer than any file name (ENAMETOOLONG)
Env = dict[bytes, bytes]


def run(
    *args: str | bytes, env: Env | None = None, cwd: Path = REPO, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m edgecascade ARGS` with the test's environment less every EDGECASCADE_*
    variable, plus `env` (bytes, so a value may be any bytes)."""
    base = {k: v for k, v in os.environb.items() if not k.startswith(b"EDGECASCADE_")}
    result = subprocess.run(
        [sys.executable, "-m", "edgecascade", *args],
        env={**base, **(env or {})},
        capture_output=True,
        cwd=cwd,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", "backslashreplace"),
        result.stderr.decode("utf-8", "backslashreplace"),
    )


def assert_refused(result: subprocess.CompletedProcess[str], names: str, expected: str) -> None:
    """Exit 1 (or argparse's 2) with an `error:` line that names `names` and says `expected`;
    no traceback, no secret, and no echo of a 5,000-character input."""
    assert result.returncode in (1, 2), result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert SECRET not in result.stderr + result.stdout
    assert len(result.stderr) < 2000, result.stderr[:2000]
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert errors and names in result.stderr and expected in result.stderr, result.stderr


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An offline profile of the demo model (the real `edgecascade init`)."""
    folder = tmp_path_factory.mktemp("device")
    init = run("init", "--dir", str(folder), "--cloud-url", "")
    assert init.returncode == 0, init.stderr
    return folder / "raspberry-pi-4.toml"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        # Python's recursive JSON decoder: RecursionError, a traceback, before.
        ("EDGECASCADE_GROUPS", b"[" * 100_000, "nested deeper than 32 levels; expected a JSON list"),
        ("EDGECASCADE_CASCADE__POLICIES", b"[" * 2000 + b"]" * 2000, "nested deeper than 32 levels"),
        # Not UTF-8: `agent config` failed serialising it, a traceback.
        ("EDGECASCADE_MQTT__HOST", b"broker\xff", "not valid UTF-8 text (byte 6 is 0xff)"),
        ("EDGECASCADE_DATA_DIR", b"/var/\xfe", "not valid UTF-8 text (byte 5 is 0xfe)"),
        # Secrets: taken before (and sent as they were); now refused without their value or bytes.
        (
            "EDGECASCADE_MQTT__PASSWORD",
            SECRET.encode() + b"\xff",
            "EDGECASCADE_MQTT__PASSWORD: not valid UTF-8 text\n",
        ),
        # A newline in a token became an HTTP header, quoted whole in requests' traceback.
        ("EDGECASCADE_CLOUD__TOKEN", SECRET.encode() + b"\nX-Injected: 1", "holds a control character"),
        ("EDGECASCADE_CLOUD__TOKEN", SECRET.encode() + b"\r", "holds a control character"),
        # A validator quoting a 100 KiB value whole: 100 KiB of stderr.
        ("EDGECASCADE_MODEL__BACKEND", b"x" * 100_000, "unknown backend 'xxxxxxxxxx"),
    ],
    ids=[
        "deep",
        "deep-closed",
        "host-bytes",
        "path-bytes",
        "password-bytes",
        "token-newline",
        "token-cr",
        "huge",
    ],
)
def test_profile_variables(profile: Path, variable: str, value: bytes, expected: str) -> None:
    result = run("agent", "config", "-c", str(profile), env={variable.encode(): value})
    assert_refused(result, variable, expected)
    if "PASSWORD" in variable:
        assert "0xff" not in result.stderr  # not even a secret's byte


def test_profile_names_and_files_from_the_environment(profile: Path) -> None:
    # An unknown variable with a 100 KiB name: warned about, shortly, and the command goes on.
    result = run("agent", "config", "-c", str(profile), env={b"EDGECASCADE_" + b"A" * 100_000: b"1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "is not a setting of `edgecascade agent`; ignored" in result.stderr
    assert len(result.stderr) < 2000
    # A profile or certificate name too long to look up: OSError (ENAMETOOLONG) tracebacks.
    assert_refused(
        run("agent", "config", env={b"EDGECASCADE_CONFIG": LONG.encode()}),
        "EDGECASCADE_CONFIG",
        "cannot use the profile aaaa",
    )
    env = {b"EDGECASCADE_MQTT__ENABLED": b"true", b"EDGECASCADE_MQTT__TLS_CA": LONG.encode()}
    assert_refused(
        run("agent", "config", "-c", str(profile), env=env),
        "EDGECASCADE_MQTT__TLS_CA",
        "file cannot be checked (File name too long)",
    )


def test_tls_files_that_are_not_pem(tmp_path: Path, profile: Path) -> None:
    # ssl.SSLError from paho's tls_set, a traceback, for the agent and for every fleet command.
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    expected = f"MQTT TLS files unusable (CA {not_pem}; expected PEM)"
    env = {b"EDGECASCADE_FLEET__TLS_CA": os.fsencode(not_pem)}
    assert_refused(run("fleet", "status", "--broker", NO_BROKER, env=env, cwd=tmp_path), "error", expected)
    env = {
        b"EDGECASCADE_API__PORT": b"0",
        b"EDGECASCADE_MQTT__ENABLED": b"true",
        b"EDGECASCADE_MQTT__PORT": b"1",
        b"EDGECASCADE_MQTT__TLS_CA": os.fsencode(not_pem),
    }
    assert_refused(run("agent", "run", "-c", str(profile), env=env, timeout=20), "error", expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["run", "--model", str(MODEL), "--port", "-1"],
            "argument --port: '-1' is out of range; give 0 to 65535",
        ),
        (["run", "--model", str(MODEL), "--port", str(10**30)], "argument --port: '1000000000000000000"),
        (["run", "--model", str(MODEL), "--host", ""], "argument --host: empty"),  # every interface
        (["predict", "--model", "", "x.png"], "argument --model/-m: empty path"),
        (["predict", "--model", str(MODEL), "--name", "", "x.png"], "argument --name: empty"),
    ],
    ids=["port-negative", "port-huge", "host-empty", "model-empty", "name-empty"],
)
def test_agent_flags(args: list[str], expected: str) -> None:
    # Before: pydantic tracebacks, an agent listening on every interface (a hang here), a
    # traceback from Path("").with_name, and `--name ""` taken as "the first model".
    assert_refused(run("agent", *args, timeout=15), expected.split(":")[0], expected)


def test_cloud_serve_settings(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    # An empty path was the current folder: `--repository ""` scanned it, `--artifacts-dir ""`
    # would have served it.
    for flag in ("--repository", "--artifacts-dir"):
        args = {"--repository": str(repo), flag: ""}
        result = run("cloud", "serve", *[x for kv in args.items() for x in kv], cwd=tmp_path)
        assert_refused(result, flag, "empty path")
    serve = ("cloud", "serve", "--repository", str(repo))
    env = {b"EDGECASCADE_SERVE__TOKENS": b"store-12=" + SECRET.encode() + b"\xff"}
    assert_refused(run(*serve, env=env), "EDGECASCADE_SERVE__TOKENS", "not valid UTF-8 text")
    env = {b"EDGECASCADE_SERVE__TOKENS_FILE": LONG.encode()}
    assert_refused(
        run(*serve, env=env), "EDGECASCADE_SERVE__TOKENS_FILE", "path of 5000 bytes; a path is at most 4095"
    )
    # The same for a flag: ENAMETOOLONG from the repository scan, a traceback.
    assert_refused(run("cloud", "serve", "--repository", LONG), "--repository", "path of 5000 bytes")
    # Taken, then an OverflowError in each worker: gRPC's options are C ints.
    result = run(*serve, "--grpc-port", "0", "--grpc-max-message-bytes", str(10**30))
    assert_refused(result, "--grpc-max-message-bytes", "less than or equal to 2147483647")
    assert_refused(run(*serve, b"--host", b"\xffhost"), "--host", "not valid UTF-8 text (byte 0 is 0xff)")


@pytest.mark.parametrize(
    ("store", "variable", "value", "expected"),
    [
        ("", "--store", b"", "empty path"),  # Path("").with_name: a traceback
        (LONG, "--store", b"", "cannot use aaaa"),  # ENAMETOOLONG: a traceback
        ("db.sqlite3", "EDGECASCADE_INGEST__STATS_EVERY", b"1e10", "less than or equal to 86400"),
        ("db.sqlite3", "EDGECASCADE_INGEST__GROUP", b"a/b", "must not contain a '/'"),
        ("db.sqlite3", "EDGECASCADE_INGEST__USERNAME", b"\xfe", "not valid UTF-8 text (byte 0 is 0xfe)"),
        ("db.sqlite3", "EDGECASCADE_INGEST__PASSWORD", SECRET.encode() + b"\n", "holds a control character"),
    ],
    ids=["store-empty", "store-long", "stats-overflow", "group-slash", "user-bytes", "password-newline"],
)
def test_cloud_ingest_settings(
    tmp_path: Path, store: str, variable: str, value: bytes, expected: str
) -> None:
    # Before: tracebacks (threading's wait overflowing at 1e10 s, paho encoding the user), or an
    # ingester that ran on (a hang here) with `$share/a/b/...` or an unusable password.
    env = {variable.encode(): value} if variable.startswith("EDGECASCADE_") else {}
    result = run(
        "cloud", "ingest", "--store", store, "--broker", NO_BROKER, env=env, cwd=tmp_path, timeout=15
    )
    assert_refused(result, variable, expected)


def test_cloud_ingest_never_moves_a_folder_aside(tmp_path: Path) -> None:
    # The SQLite opener sets a folder where its database should be aside as damage: a user's
    # folder given by mistake was renamed *.corrupt-<time> and the ingester ran on.
    folder = tmp_path / "telemetry"
    (folder / "keep").mkdir(parents=True)
    result = run("cloud", "ingest", "--store", str(folder), "--broker", NO_BROKER, cwd=tmp_path, timeout=15)
    assert_refused(result, "--store", "is a folder; give the database file's name")
    assert (folder / "keep").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["telemetry"]
    result = run("fleet", "telemetry", "--store", str(folder), cwd=tmp_path)
    assert_refused(result, "--store", "is a folder")
    assert (folder / "keep").is_dir()


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        # time.sleep(nan), sleep(-1), sleep(1e10): tracebacks once the broker answered.
        (["status", "--wait", "nan"], {}, "argument --wait: 'nan' is not a finite number"),
        (["status", "--wait", "-1"], {}, "argument --wait: '-1' is out of range; give 0 to 604800"),
        (["status", "--wait", "1e10"], {}, "argument --wait: '1e10' is out of range"),
        # A NaN timeout followed the devices for ever; a NaN canary crashed math.ceil.
        (["push", str(MODEL), "--target", "all", "--timeout", "nan"], {}, "argument --timeout: 'nan'"),
        (["push", str(MODEL), "--target", "all", "--canary", "nan"], {}, "argument --canary: 'nan'"),
        (
            ["push", str(MODEL), "--target", "all", "--canary", "0"],
            {},
            "argument --canary: '0' percent is out of range; give more than 0",
        ),
        # Infinity was signed into the manifest as a health limit.
        (
            ["push", str(MODEL), "--target", "all", "--health-max-latency-ratio", "inf"],
            {},
            "argument --health-max-latency-ratio: 'inf' is not a finite number",
        ),
        (["telemetry", "--store", "t.db", "--dead-letters", "--limit", "-1"], {}, "argument --limit"),
        (["telemetry", "--store", "t.db", "--dead-letters", "--limit", str(10**30)], {}, "argument --limit"),
        # paho's traceback (UnicodeEncodeError; struct.error past 65,535 bytes in its thread).
        (
            ["status"],
            {b"EDGECASCADE_FLEET__USERNAME": b"\xff"},
            "EDGECASCADE_FLEET__USERNAME: not valid UTF-8",
        ),
        (["status"], {b"EDGECASCADE_FLEET__USERNAME": b"u" * 70_000}, "at most 65535 bytes (an MQTT string)"),
        (["status"], {b"EDGECASCADE_FLEET__PASSWORD": SECRET.encode() * 9000}, "at most 65535 bytes"),
    ],
    ids=[
        "wait-nan",
        "wait-negative",
        "wait-overflow",
        "timeout-nan",
        "canary-nan",
        "canary-zero",
        "health-inf",
        "limit-negative",
        "limit-huge",
        "user-bytes",
        "user-huge",
        "password-huge",
    ],
)
def test_fleet_flags(tmp_path: Path, args: list[str], env: Env, expected: str) -> None:
    broker = ["--broker", NO_BROKER] if args[0] != "telemetry" else []
    result = run("fleet", *args, *broker, env=env, cwd=tmp_path)
    assert_refused(result, expected.split(":")[0], expected)
    assert not (tmp_path / "var").exists()  # refused before the state folder was made


def test_fleet_signing_key_and_state_folder(tmp_path: Path) -> None:
    fifo = tmp_path / "key.pipe"
    os.mkfifo(fifo)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(_encrypted_key())
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("x")
    push = ("fleet", "push", str(MODEL), "--target", "all", "--broker", NO_BROKER)
    for args, expected in [
        # Read whole: a FIFO blocked for ever (a hang here); /dev/zero grew until killed.
        (["--key", str(fifo)], f"{fifo}: not a regular file (a device, pipe or socket)"),
        (["--key", str(tmp_path)], f"{tmp_path}: is a folder"),  # IsADirectoryError: a traceback
        (["--key", str(encrypted)], "encrypted with a passphrase"),  # TypeError: a traceback
        # FleetManager's mkdir under a file: NotADirectoryError, a traceback.
        (
            ["--key", str(encrypted), "--state-dir", str(not_a_folder)],
            f"--state-dir: not a folder: {not_a_folder}",
        ),
    ]:
        assert_refused(run(*push, *args, cwd=tmp_path, timeout=15), "error", expected)
    # keygen looked the name up: ENAMETOOLONG, a traceback.
    assert_refused(run("fleet", "keygen", "--key", LONG, cwd=tmp_path), "--key", "path of 5000 bytes")


def _encrypted_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    encryption = serialization.BestAvailableEncryption(b"passphrase")
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # A newline in --data-dir added a line, a setting, to edgecascade.env (exit 0); one in
        # --device-id was refused only after every file was written.
        (
            ["--data-dir", "/tmp/d\nEDGECASCADE_CLOUD__URL=http://elsewhere"],
            "--data-dir: must not contain control",
        ),
        (
            ["--device-id", "pi\nEDGECASCADE_CLOUD__TOKEN=x"],
            "--device-id: must not contain control characters",
        ),
        (["--device-id", "models"], "--device-id: 'models' is a topic word"),
        (
            ["--cloud-url", "http://cloud\udcff"],
            "--cloud-url: not valid UTF-8 text",
        ),  # a TOML error, files written
        (
            ["--data-dir", "/tmp/" + LONG],
            "argument --data-dir: path of 5005 bytes",
        ),  # ENAMETOOLONG: a traceback
        (["--profile", LONG], "--profile: no bundled profile 'aaaa"),  # the same
    ],
    ids=[
        "data-dir-newline",
        "device-id-newline",
        "device-id-reserved",
        "url-bytes",
        "data-dir-long",
        "profile-long",
    ],
)
def test_init_checks_every_flag_before_writing(tmp_path: Path, args: list[str], expected: str) -> None:
    target = tmp_path / "device"
    argv = [os.fsencode(a) for a in ("init", "--dir", str(target), *args)]
    result = run(*argv, cwd=tmp_path)
    assert_refused(result, expected.split(":")[0], expected)
    assert not target.exists()


@pytest.mark.parametrize(
    "argv",
    [
        # The demo started a broker, a cloud and three agents, then crashed in its report (NaN)
        # or divided by zero in each traffic thread (rate 0).
        ["demo", "--seconds", "nan"],
        ["demo", "--rate", "0"],
        ["demo", "--rate", "-5"],
        # "no policy meets the targets" for a NaN target; numpy refused a negative seed.
        ["models", "tune", "--max-escalation", "nan"],
        ["models", "tune", "--relative-accuracy", "inf"],
        ["models", "tune", "--val-fraction", "1.5"],
        ["models", "tune", "--seed", "-1"],
        # Names past the file system's limit: OSError (ENAMETOOLONG) tracebacks; "" was the
        # current folder (a model named "" failed in Path.with_name, a traceback).
        ["models", "tune", "--data", LONG],
        [
            "models",
            "build-table",
            "--dataset",
            "digits-heldout",
            "--version",
            "1",
            "--out",
            "t",
            "--cloud-model",
            "",
        ],
        [
            "models",
            "build-table",
            "--cloud-model",
            "m.onnx",
            "--version",
            "1",
            "--out",
            "t",
            "--folder",
            LONG,
        ],
        ["models", "quantize", "m.onnx", "--calibration", LONG],
        ["cloud", "export", "--out", "x", "--storage-uri", "s3://b/t", "--repository", LONG],
    ],
    ids=lambda a: "-".join(x[:12] for x in a[1:]) if isinstance(a, list) else str(a),
)
def test_long_running_commands_refuse_their_numbers_at_parse_time(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Parsed in this process: with the bug these commands would start their work.
    with pytest.raises(SystemExit) as exited:
        build_parser(argv).parse_args(argv)
    assert exited.value.code == 2
    assert f"argument {argv[-2]}: " in capsys.readouterr().err
