"""`edgecascade agent ...`: the device side of the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    p = sub.add_parser(
        "predict",
        help="predict once for each input file with a device profile",
        description="Load the profile's model (and cloud, if configured), predict each INPUT and print "
        "the label, confidence, source, model name/version and latency.",
        epilog="INPUT may be an image (.png, .jpg, ...), a .npy array (a raw uint8 image or encoded "
        "features) or a .json list of numbers.\n\nexample:\n  edgecascade agent predict "
        "--config firmware-configs/x86-store-pc.toml digit.png --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_flag(p)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="input files")
    p.add_argument("--json", action="store_true", help="print one JSON object per input (for machines)")
    p.set_defaults(func=_predict)

    r = sub.add_parser(
        "run",
        help="run the device daemon (local V2 HTTP API, MQTT requests, camera, telemetry, updates)",
        description="Run the long-lived device agent with a profile: it serves the local Open Inference "
        "Protocol API (and /metrics), answers MQTT requests, runs the camera source, buffers and "
        "forwards telemetry and applies model updates, as the profile enables them. SIGTERM/SIGINT "
        "stops it gracefully (in-flight requests finish, telemetry is flushed); a second signal forces it.",
        epilog="examples:\n  edgecascade agent run --config firmware-configs/raspberry-pi-4.toml\n"
        "  EDGECASCADE_API__PORT=9000 edgecascade --log-json agent run -c firmware-configs/x86-store-pc.toml\n\n"
        "Every profile key can be overridden from the environment: EDGECASCADE_<SECTION>__<KEY> "
        "(see `edgecascade agent config --markdown`). EDGECASCADE_CONFIG names the profile when "
        "--config is absent.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_flag(r)
    r.set_defaults(func=_run)
    _register_config_command(sub)


def _add_profile_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="PROFILE",
        help="device profile (TOML); default: the file named by EDGECASCADE_CONFIG",
    )


def _profile(args: argparse.Namespace) -> Any:
    """The profile of --config, or of EDGECASCADE_CONFIG when the flag is absent."""
    from edgecascade.edge.config import load_profile
    from edgecascade.edge.config.loader import profile_path

    return load_profile(profile_path(args.config))


def _register_config_command(sub: Any) -> None:
    c = sub.add_parser(
        "config",
        help="check a profile and print it, or print the reference of every profile key",
        description="With a profile (--config or EDGECASCADE_CONFIG): validate it with the environment "
        "overrides applied, check the files it names, and print the result as JSON (secrets masked). "
        "--schema prints the profile's JSON schema, --markdown the reference of every key.",
        epilog="examples:\n  edgecascade agent config -c firmware-configs/raspberry-pi-4.toml\n"
        "  edgecascade agent config --schema > profile.schema.json\n"
        "  edgecascade agent config --markdown > docs/profile-reference.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_profile_flag(c)
    shown = c.add_mutually_exclusive_group()
    shown.add_argument("--schema", action="store_true", help="print the JSON schema of a profile")
    shown.add_argument("--markdown", action="store_true", help="print the reference of every key (Markdown)")
    c.set_defaults(func=_config)


def _config(args: argparse.Namespace) -> int:
    if args.schema or args.markdown:
        from edgecascade.edge.config.reference import json_schema, markdown

        sys.stdout.write(json_schema() if args.schema else markdown())
        return 0
    profile = _profile(args)
    print(profile.model_dump_json(indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from edgecascade.edge.agent import Agent
    from edgecascade.logs import print_error
    from edgecascade.shared.errors import InputError

    agent = Agent.from_profile(_profile(args))
    failures = 0
    try:
        for path in args.inputs:
            try:
                answer = agent.predict_file(path)
            except InputError as exc:
                failures += 1
                print_error(str(exc))
                continue
            if args.json:
                row = answer.to_dict()
                row.pop("probabilities")
                print(json.dumps({"input": str(path), **row}))
            else:
                m = answer.edge_model
                print(
                    f"{path}: {answer.label} (confidence {answer.confidence:.3f}, source {answer.source}, "
                    f"model {m.name if m else '-'} {m.version if m else ''}, {answer.latency_ms:.2f} ms"
                    + (f", degraded: {answer.reason}" if answer.degraded else "")
                    + ")"
                )
    finally:
        agent.close()
    return 1 if failures else 0


def _run(args: argparse.Namespace) -> int:
    from edgecascade.edge.daemon.daemon import Daemon
    from edgecascade.logs import configure_logging

    profile = _profile(args)
    if profile.daemon.log_json and not args.log_json:
        configure_logging(args.log_level, json_lines=True, capture_native=True)
    return Daemon(profile).run()
