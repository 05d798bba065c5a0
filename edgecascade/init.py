"""`edgecascade init`: a ready device folder from the profiles and demo model in the package.

Writes DIR/<profile>.toml (data directory and model path made absolute, optionally a device
id and a cloud URL), the demo model with its model card in DIR/models, sample digit images in
DIR/samples, and the systemd unit with an environment file pointing at that profile; checks
the written profile with the same loader the agent uses and prints the next steps."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from edgecascade import bundled
from edgecascade.shared import cli_values
from edgecascade.shared.errors import ConfigError

UNIT = "edgecascade-agent.service"
ENV_FILE = "edgecascade.env"


def register(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  edgecascade init --dir ~/edgecascade\n"
        "  sudo edgecascade init --profile raspberry-pi-4 --dir /etc/edgecascade "
        "--data-dir /var/lib/edgecascade --device-id rpi4-0042"
    )
    parser.add_argument(
        "--profile",
        default="raspberry-pi-4",
        help="bundled device profile: " + ", ".join(bundled.profile_names()) + " (default: %(default)s)",
    )
    parser.add_argument(
        "--dir",
        type=cli_values.path,
        default=Path("."),
        help="folder to write into (default: the current one)",
    )
    parser.add_argument(
        "--data-dir", type=cli_values.path, help="the agent's writable data folder (default: DIR/data)"
    )
    parser.add_argument("--device-id", help="this device's id (default: the profile's)")
    parser.add_argument(
        "--cloud-url",
        help="V2 inference server for hard cases; an empty string makes an offline-only device "
        "(default: the profile's)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite files that already exist")
    parser.set_defaults(func=_init)


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string for any path or URL.
    return json.dumps(value)


def _set_key(text: str, section: str | None, key: str, value: str | None) -> str:
    """Set `key` in `[section]` (None: the top level) of a TOML text, keeping comments and
    layout; a value of None comments the key out. Adds the key when it is missing."""
    lines = text.splitlines()
    current: str | None = None
    insert_at: int | None = 0 if section is None else None
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for i, line in enumerate(lines):
        header = re.match(r"^\s*\[+([^\]]+)\]+", line)
        if header:
            current = header.group(1).strip()
            if current == section:
                insert_at = i + 1
            continue
        if current == section and pattern.match(line):
            lines[i] = f"# {line.strip()}" if value is None else f"{key} = {value}"
            return "\n".join(lines) + "\n"
    if value is not None:
        if insert_at is None:
            lines += ["", f"[{section}]"]
            insert_at = len(lines)
        lines.insert(insert_at, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def render_profile(
    text: str, *, models_dir: Path, data_dir: Path, device_id: str | None, cloud_url: str | None
) -> str:
    """A bundled profile's text with every path made absolute for this install."""
    text = text.replace(bundled.PROFILE_MODELS_PREFIX, f"{models_dir.as_posix()}/")
    text = _set_key(text, None, "data_dir", _toml_string(str(data_dir)))
    if device_id is not None:
        text = _set_key(text, None, "device_id", _toml_string(device_id))
    if cloud_url is not None:
        text = _set_key(text, "cloud", "url", _toml_string(cloud_url) if cloud_url else None)
    return text


def render_env(text: str, *, profile: Path, data_dir: Path, device_id: str | None) -> str:
    text = re.sub(r"(?m)^EDGECASCADE_CONFIG=.*$", f"EDGECASCADE_CONFIG={profile}", text)
    text = re.sub(r"(?m)^EDGECASCADE_DATA_DIR=.*$", f"EDGECASCADE_DATA_DIR={data_dir}", text)
    if device_id is not None:
        text = re.sub(r"(?m)^EDGECASCADE_DEVICE_ID=.*$", f"EDGECASCADE_DEVICE_ID={device_id}", text)
    return text


def _check_flags(args: argparse.Namespace) -> None:
    """ConfigError for a flag init cannot write: the profile and edgecascade.env are UTF-8 text,
    one setting a line (a newline in --data-dir would add a line, a setting, to the env file)."""
    for flag, value in (
        ("--dir", args.dir),
        ("--data-dir", args.data_dir),
        ("--device-id", args.device_id),
        ("--cloud-url", args.cloud_url),
    ):
        text = "" if value is None else str(value)
        problem = cli_values.text_problem(text)
        if problem is None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            problem = "must not contain control characters (newline, ...): it is written into the profile"
        if problem is not None:
            raise ConfigError(problem, key=flag)
    if args.device_id is not None:
        from edgecascade.shared.topic_segments import check_segment

        try:
            check_segment(args.device_id, reserved=True)  # before any file is written
        except ValueError as exc:
            raise ConfigError(str(exc), key="--device-id") from None


def _exists(path: Path, flag: str) -> bool:
    try:
        return path.exists()
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise ConfigError(f"cannot use {cli_values.quoted(str(path))}: {exc.strerror}", key=flag) from None


def _init(args: argparse.Namespace) -> int:
    _check_flags(args)
    source = bundled.profile_path(args.profile)
    target_dir = args.dir.expanduser().resolve()
    data_dir = (args.data_dir.expanduser() if args.data_dir else target_dir / "data").resolve()
    models_dir = target_dir / "models"
    profile = target_dir / f"{args.profile}.toml"

    # Everything is rendered and checked before the first file is written.
    profile_text = render_profile(
        source.read_text(),
        models_dir=models_dir,
        data_dir=data_dir,
        device_id=args.device_id,
        cloud_url=args.cloud_url,
    )
    env_text = render_env(
        (bundled.systemd_dir() / ENV_FILE).read_text(),
        profile=profile,
        data_dir=data_dir,
        device_id=args.device_id,
    )
    files: dict[Path, bytes] = {profile: profile_text.encode(), target_dir / ENV_FILE: env_text.encode()}
    files[target_dir / UNIT] = (bundled.systemd_dir() / UNIT).read_bytes()
    for artifact in bundled.demo_model_files():
        files[models_dir / artifact.name] = artifact.read_bytes()
    for image in bundled.sample_images():
        files[target_dir / "samples" / image.name] = image.read_bytes()
    if not args.force:
        existing = [str(p) for p in files if _exists(p, "--dir")]
        if existing:
            more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
            raise ConfigError(
                f"already holds {', '.join(existing[:3])}{more}; pass --force to overwrite",
                file=str(target_dir),
            )

    for flag, folder in (("--dir", target_dir), ("--data-dir", data_dir)):
        if _exists(folder, flag) and not folder.is_dir():
            raise ConfigError(f"{folder} exists and is not a folder", key=flag)
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # A --dir that is a file, under a read-only or missing mount, or not ours to write.
        where = exc.filename or target_dir
        raise ConfigError(f"cannot write {where}: {exc.strerror or exc}", key="--dir") from None

    from edgecascade.edge.config import load_profile

    loaded = load_profile(profile, environ={})
    sample = target_dir / "samples" / "digit_3.png"
    print(
        f"wrote {profile} (device {loaded.device_id}, model {loaded.model.path}, "
        f"data {loaded.data_dir}), the demo model in {models_dir}, samples in {sample.parent}, "
        f"and {target_dir / UNIT} with {target_dir / ENV_FILE}\n"
        "\nnext steps:\n"
        f"  edgecascade agent predict --config {profile} {sample}\n"
        f"  edgecascade agent run --config {profile}        # local V2 API on 127.0.0.1:8080\n"
        "  curl -s localhost:8080/v2/health/ready -o /dev/null -w '%{http_code}\\n'\n"
        f"  edit {profile}: device_id, [cloud] url and token, [mqtt] broker, your own model\n"
        "  as a service: see the comments in "
        f"{target_dir / UNIT} (install it to /etc/systemd/system/)",
        file=sys.stdout,
    )
    return 0
