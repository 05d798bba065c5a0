"""`edgecascade fleet keygen|push|status|rollback|promote`: signed model updates for a fleet."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from edgecascade.shared import cli_values

DEFAULT_KEY = Path("var/fleet/signing.key")


def _common(p: argparse.ArgumentParser) -> None:
    """The flags every fleet command takes, derived from FleetAccess (cloud/fleet/access.py)."""
    from edgecascade.cloud.cli_settings import add_flags
    from edgecascade.cloud.fleet.access import ENV_SECTION, FleetAccess

    add_flags(p, FleetAccess, section=ENV_SECTION)


def _examples(text: str) -> dict[str, Any]:
    return {"epilog": "example:\n  " + text, "formatter_class": argparse.RawDescriptionHelpFormatter}


def add_parsers(sub: Any) -> None:
    for add in (_add_keygen, _add_push, _add_status, _add_rollback, _add_promote):
        add(sub)


def _add_keygen(sub: Any) -> None:
    p = sub.add_parser(
        "keygen",
        help="make the fleet's Ed25519 signing key",
        description="Write a new signing key (kept here, mode 0600) and print the public key for device profiles.",
        **_examples("edgecascade fleet keygen --key var/fleet/signing.key"),
    )
    p.add_argument("--key", type=cli_values.path, default=DEFAULT_KEY, help="where to write the private key")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    p.set_defaults(func=keygen)


def _add_push(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="sign and publish a model to devices",
        description="Sign a model manifest, publish the artifact in chunks and the manifest (retained), "
        "and follow each device until it is active, failed or rolled back. The push supersedes "
        "older manifests of the levels its target covers.",
        **_examples(
            "edgecascade fleet push model.onnx --name digits-edge --version 1.1.0 --target group:store-12 --canary 10 \\\n"
            "    --golden golden/ --health-max-escalation-rate-increase 0.1 --health-max-disagreement-increase 0.1\n"
            "  edgecascade fleet push model.onnx --version 1.2.0 --target all --route http --golden case.npz \\\n"
            "    --base-url https://cloud.example:8000 --artifacts-dir /srv/edgecascade/artifacts\n"
            "  edgecascade fleet push digits.ectable --kind table --version t2 --target all"
        ),
    )
    _common(p)
    p.add_argument(
        "model", type=Path, help="artifact (.tflite/.onnx with its .card.json beside it, or a .ectable table)"
    )
    p.add_argument(
        "--kind",
        choices=["model", "table"],
        default="model",
        help="what to push: a model, or a lookup table (built by `edgecascade models build-table`)",
    )
    p.add_argument("--name", help="model name (default: from the card)")
    p.add_argument(
        "--for-model",
        metavar="NAME",
        help="with --kind table: the device model ([[models]] name) whose table it is "
        "(default: each device's first model with lookups)",
    )
    p.add_argument("--version", help="model version (default: from the card)")
    p.add_argument("--target", required=True, help="device:ID, group:G or all")
    p.add_argument(
        "--canary", type=cli_values.percent, metavar="PERCENT", help="send to this share of the target first"
    )
    p.add_argument("--delta-from", type=Path, metavar="BASE", help="base artifact: also send a bsdiff delta")
    p.add_argument("--profiles", default="", help="comma-separated compatible profiles (default: any)")
    p.add_argument("--min-agent", help="oldest agent version that may run it (default: this version)")
    _golden_flags(p)
    _delivery_flags(p)
    p.add_argument("--timeout", type=cli_values.seconds, default=300.0, help="seconds to follow devices")
    _health_flags(p)
    p.set_defaults(func=push)


def _golden_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("golden cases (checked on the device before the model may serve)")
    group.add_argument(
        "--golden",
        type=Path,
        metavar="FILE.npz|DIR",
        help="inputs for the candidate: a .npz with one array per input name, or a folder of such "
        "files (.npy for a one-input model), one case per file; the expected outputs are the "
        "candidate's own, computed here. Without it devices only load-test the candidate",
    )
    group.add_argument(
        "--golden-tolerance",
        type=cli_values.finite(0.0),
        default=0.02,
        metavar="ABS",
        help="largest absolute difference allowed per output element on the device (default 0.02)",
    )


def _delivery_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--route", choices=["mqtt", "http"], default="mqtt", help="delivery route")
    p.add_argument("--base-url", help="cloud URL devices download from on the http route (/artifacts/...)")
    p.add_argument(
        "--artifacts-dir",
        type=Path,
        help="http route: the folder the cloud serves /artifacts from; the files are written there",
    )
    p.add_argument(
        "--chunk-kb",
        type=_chunk_kb,
        default=256,
        help="artifact chunk size in KiB, 1 to 4096 (the shipped broker's max_packet_size is 4 MiB)",
    )


def _add_status(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="table of devices and their models: version, state, health, last seen",
        description="Read the devices' retained status messages and print one row per device and "
        "model it serves (read-only: needs no signing key).",
        **_examples("edgecascade fleet status --broker 127.0.0.1:1883"),
    )
    _common(p)
    p.add_argument(
        "--wait", type=cli_values.seconds, default=1.0, help="seconds to collect retained statuses"
    )
    p.set_defaults(func=status)


def _add_rollback(sub: Any) -> None:
    p = sub.add_parser(
        "rollback",
        help="send a target back to the previous pushed version",
        description="Re-sign the previous version pushed to TARGET as a new push; devices swap back instantly.",
        **_examples("edgecascade fleet rollback --name digits-edge --target group:store-12"),
    )
    _common(p)
    p.add_argument("--name", required=True, help="model name (table name with --kind table)")
    p.add_argument("--kind", choices=["model", "table"], default="model", help="roll back a model or a table")
    p.add_argument(
        "--for-model",
        metavar="NAME",
        help="with --kind table: the device model whose table it is (as pushed; default: none named)",
    )
    p.add_argument("--target", required=True, help="device:ID, group:G or all")
    p.add_argument("--timeout", type=cli_values.seconds, default=120.0, help="seconds to follow devices")
    p.add_argument(
        "--artifacts-dir", type=Path, help="http route: the folder the cloud serves /artifacts from"
    )
    p.set_defaults(func=rollback)


def _add_promote(sub: Any) -> None:
    p = sub.add_parser(
        "promote",
        help="widen the waiting canary to its whole target",
        description="Publish the canary's manifest to its whole target (canaries never widen on their own).",
        **_examples("edgecascade fleet promote"),
    )
    _common(p)
    p.add_argument("--push-id", help="which canary (default: the latest)")
    p.add_argument("--timeout", type=cli_values.seconds, default=300.0, help="seconds to follow devices")
    p.set_defaults(func=promote)


def _health_flags(p: argparse.ArgumentParser) -> None:
    """One flag per HealthLimits field, derived from the model so the two never drift apart."""
    from edgecascade.shared.manifest import HealthLimits

    group = p.add_argument_group("ML health limits (roll back automatically in the watch window)")
    for name, field in HealthLimits.model_fields.items():
        # NaN or infinity would be signed into the manifest; HealthLimits checks each range.
        kind = cli_values.whole(1, 10**9) if field.annotation is int else cli_values.finite()
        group.add_argument(
            "--health-" + name.replace("_", "-"), dest="health_" + name, type=kind, help=field.description
        )


def _health_limits(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from edgecascade.shared.errors import ConfigError
    from edgecascade.shared.manifest import HealthLimits

    given = {
        name: getattr(args, "health_" + name)
        for name in HealthLimits.model_fields
        if getattr(args, "health_" + name, None) is not None
    }
    if not given:
        return None
    try:
        return HealthLimits(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(first["msg"], key="--health-" + str(first["loc"][0]).replace("_", "-")) from None


def _chunk_kb(text: str) -> int:
    """--chunk-kb: a chunk travels as one MQTT message, which brokers bound (the shipped
    mosquitto.conf at 4 MiB; a device takes at most api.max_body_mb + 1 MiB)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of KiB: {text[:40]!r}") from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"{value} KiB; give 1 to 4096")
    return value


def keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgecascade.shared.errors import ConfigError
    from edgecascade.shared.manifest import key_id, public_key_b64, save_private_key

    if args.key.is_dir():
        raise ConfigError("is a folder; give the key's file name", file=str(args.key), key="--key")
    if args.key.exists() and not args.force:
        raise ConfigError("a signing key exists already; pass --force to replace it", file=str(args.key))
    key = Ed25519PrivateKey.generate()
    try:
        save_private_key(key, args.key)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"cannot write {args.key}: a part of its folder is a file", key="--key") from None
    except OSError as exc:
        where = exc.filename or args.key
        raise ConfigError(f"cannot write {where}: {exc.strerror or exc}", key="--key") from None
    print(f"signing key written to {args.key} (keep it here; key id {key_id(key.public_key())})")
    print("put this in each device profile:\n\n[updates]\nenabled = true")
    print(f'public_key = "{public_key_b64(key.public_key())}"')
    return 0


def push(args: argparse.Namespace) -> int:
    from edgecascade.cloud.fleet.manifest_builder import build_manifest
    from edgecascade.cloud.fleet.session import connect_manager, follow
    from edgecascade.shared.errors import UpdateError

    if args.route == "http" and not (args.base_url and args.artifacts_dir):
        raise UpdateError(
            "--route http needs --base-url (devices fetch from it) and --artifacts-dir (written here)"
        )
    if args.kind == "table":
        return _push_table(args)
    if args.golden is None:
        print("no --golden given: devices only load-test the candidate before it serves")
    manager = connect_manager(args)  # the signing key and the broker first: fail before any work
    try:
        manifest, payloads = build_manifest(
            args.model, name=args.name, golden=args.golden, tolerance=args.golden_tolerance, **_delivery(args)
        )
        limits = _health_limits(args)
        if limits is not None:
            manifest = manifest.model_copy(update={"health": limits})
        signed, devices = manager.push(manifest, payloads, canary_percent=args.canary)
        print(f"pushed {signed.name} {signed.version} (push {signed.push_id}) to {signed.target}")
        if args.canary is not None:
            print(
                f"canary: {len(devices)} device(s); widen with `edgecascade fleet promote --push-id {signed.push_id}`"
            )
        return follow(manager, signed.push_id, devices, args.timeout, model=signed.name)
    finally:
        manager.connection.stop()


def _delivery(args: argparse.Namespace) -> dict[str, Any]:
    """What a model push and a table push both tell their manifest builder."""
    return {
        "fleet": args.fleet,
        "target": args.target,
        "version": args.version,
        "route": args.route,
        "base_url": args.base_url,
        "chunk_size": args.chunk_kb * 1024,
        "delta_base": args.delta_from,
        "profiles": [p for p in args.profiles.split(",") if p],
        **({"min_agent_version": args.min_agent} if args.min_agent else {}),
    }


def _push_table(args: argparse.Namespace) -> int:
    from edgecascade.cloud.fleet.session import connect_manager, follow
    from edgecascade.cloud.fleet.table_manifest_builder import build_table_manifest

    manager = connect_manager(args)
    try:
        manifest, payloads = build_table_manifest(args.model, model=args.for_model, **_delivery(args))
        signed, devices = manager.push(manifest, payloads, canary_percent=args.canary)
        print(f"pushed table {signed.name} {signed.version} (push {signed.push_id}) to {signed.target}")
        return follow(manager, signed.push_id, devices, args.timeout, kind="table")
    finally:
        manager.connection.stop()


def promote(args: argparse.Namespace) -> int:
    from edgecascade.cloud.fleet.session import connect_manager, follow

    manager = connect_manager(args)
    try:
        record, devices = manager.promote(args.push_id)
        print(f"promoted {record.name} {record.version} to {record.target}")
        model = record.name if record.kind == "model" else None
        return follow(manager, record.push_id, devices, args.timeout, kind=record.kind, model=model)
    finally:
        manager.connection.stop()


def rollback(args: argparse.Namespace) -> int:
    from edgecascade.cloud.fleet.session import connect_manager, follow

    manager = connect_manager(args)
    try:
        signed, devices = manager.rollback(args.name, args.target, args.kind, model=args.for_model)
        print(
            f"rolling {args.target} back from {signed.rollback_of} to {signed.version} (push {signed.push_id})"
        )
        model = args.name if args.kind == "model" else None
        return follow(manager, signed.push_id, devices, args.timeout, kind=args.kind, model=model)
    finally:
        manager.connection.stop()


def status(args: argparse.Namespace) -> int:
    """Read-only: a status board on its own connection, no signing key, no state folder."""
    import sys

    from edgecascade.cloud.fleet.session import fleet_connection, start_or_raise
    from edgecascade.cloud.fleet.status_board import StatusBoard, format_table
    from edgecascade.shared.mqtt import Topics

    connection = fleet_connection(args)
    board = StatusBoard(connection, Topics(args.fleet))
    board.attach()
    start_or_raise(connection, args)
    try:
        board.wait_settled(0.5)
        time.sleep(args.wait)
        print(format_table(board.model_statuses(), board.presence, board.table_statuses()))
        # On stderr: what was ignored or not kept, so the table on stdout stays one row per status.
        for line in board.warnings():
            print(f"warning: {line}", file=sys.stderr)
        return 0
    finally:
        connection.stop()
