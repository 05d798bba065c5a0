"""`edgecascade agent ...`: the device side of the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecascade.shared import cli_values

if TYPE_CHECKING:
    import numpy as np

    from edgecascade.edge.agent import Agent
    from edgecascade.edge.answer import Answer
    from edgecascade.edge.config.profile import DeviceProfile


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    _register_predict_command(sub)
    _register_run_command(sub)
    _register_config_command(sub)


def _register_predict_command(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict once for each input file, with a device profile or straight from model files",
        description="Load the profile's model (and cloud, if configured), or the --model files with "
        "their cards, predict each INPUT and print the answer with its provenance: for a classifier "
        "the label, confidence, source, model name/version and latency; for any other model every "
        "output by name.",
        epilog="INPUT may be an image (.png, .jpg, ...) for a model with an image input, a .npy array "
        "(for a model's only input; a raw uint8 image or encoded features) , a .npz with one array per "
        "input name, or (with --config) a .json list of numbers.\n\nexamples:\n  edgecascade agent predict "
        "--config firmware-configs/x86-store-pc.toml digit.png --json\n"
        "  edgecascade models import segmenter.onnx --task tensor\n"
        "  edgecascade agent predict --model segmenter.onnx frame.npz --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_source(p)
    p.add_argument(
        "--name",
        type=cli_values.name,
        metavar="MODEL",
        help="model to ask, when several are served (default: the first)",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="input files")
    p.add_argument("--json", action="store_true", help="print one JSON object per input (for machines)")
    p.set_defaults(func=_predict)


def _register_run_command(sub: Any) -> None:
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
    _model_source(r)
    r.add_argument(
        "--port",
        type=cli_values.port,
        default=None,
        help="with --model: local API port (default 8080; 0 = any free port)",
    )
    r.add_argument(
        "--host",
        type=cli_values.name,  # "" would listen on every interface
        default="127.0.0.1",
        help="with --model: local API address (default: %(default)s)",
    )
    r.set_defaults(func=_run)


def _add_profile_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=cli_values.path,
        metavar="PROFILE",
        help="device profile (TOML); default: the file named by EDGECASCADE_CONFIG",
    )


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


def _model_source(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        "-c",
        type=cli_values.path,
        metavar="PROFILE",
        help="device profile (TOML); default: the file named by EDGECASCADE_CONFIG",
    )
    source.add_argument(
        "--model",
        "-m",
        type=cli_values.path,
        action="append",
        metavar="PATH",
        help="model file with its card beside it (`edgecascade models import`); repeat for several; "
        "no profile needed",
    )


def _profile(args: argparse.Namespace) -> DeviceProfile:
    """The --model files on embedded defaults, else the profile of --config or EDGECASCADE_CONFIG."""
    if getattr(args, "model", None):
        from edgecascade.edge.config.embedded import embedded_profile

        port = getattr(args, "port", None)
        return embedded_profile(
            args.model, port=8080 if port is None else port, host=getattr(args, "host", "127.0.0.1")
        )
    from edgecascade.edge.config import load_profile
    from edgecascade.edge.config.loader import CONFIG_ENV, profile_path
    from edgecascade.shared.config_errors import shorten
    from edgecascade.shared.errors import ConfigError

    try:
        path = profile_path(args.config)
    except OSError as exc:  # EDGECASCADE_CONFIG names a path the file system cannot look up
        named = shorten(os.environ.get(CONFIG_ENV, ""), 200)
        raise ConfigError(f"cannot use the profile {named}: {exc.strerror}", key=CONFIG_ENV) from None
    return load_profile(path)


def _one_blas_thread() -> None:
    """numpy's OpenBLAS starts a thread per core at import, and they spin there: ~45 ms of CPU
    at every start on the 2-core test machine, for BLAS the agent does not use (its numpy work
    is small element-wise arrays; the model runtimes own the cores, runtime.threads). Set before
    numpy is imported; a value already in the environment is kept."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _no_pydantic_plugins() -> None:
    """pydantic looks for plugins in every installed distribution's entry points when it builds
    its first class (~1.4% of the instructions to READY=1 with this repository's dev packages);
    the agent uses none. Set before pydantic builds a class; a value already set is kept."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _pause_collector() -> Callable[[], None]:
    """Start-up (imports, ~60 config and protocol classes, the model) makes ~300k objects that
    live as long as the daemon; Python's cyclic collector would walk them again and again
    while they are made: ~45 ms of a ~350 ms start on the 2-core test machine. So it is off
    until READY=1; the returned function then collects once and freezes what is left (the
    collector never walks it again, which also shortens its later pauses) and turns it on."""
    import gc

    gc.disable()

    def back() -> None:
        gc.collect()
        gc.freeze()
        gc.enable()

    return back


def _predict(args: argparse.Namespace) -> int:
    _one_blas_thread()
    _no_pydantic_plugins()
    from edgecascade.edge.agent import Agent
    from edgecascade.shared.errors import InputError, ProtocolError
    from edgecascade.shared.logs import print_error

    profile = _profile(args)
    _check_models(profile)
    agent = Agent.from_profile(profile)
    failures = 0
    try:
        served = agent.get(args.name)
        legacy = not args.model and served.slot.current.card.features is not None
        for path in args.inputs:
            try:
                if legacy:
                    _print_answer(path, agent.predict_file(path), args.json)
                else:
                    _print_reply(agent, served.name, path, args.json)
            except (InputError, ProtocolError) as exc:
                failures += 1
                print_error(str(exc))
    finally:
        agent.close()
    return 1 if failures else 0


def _check_models(profile: DeviceProfile) -> None:
    """Load each model first in a child process, as `agent run` does: a crafted file that
    crashes its native interpreter is an error line, not this process dying of SIGSEGV. A pass
    is remembered in the data folder, so an unchanged model is checked once."""
    from edgecascade.edge.agent import model_files
    from edgecascade.edge.local_model import backend_options
    from edgecascade.edge.model_check import check_in_child

    check_in_child(model_files(profile), options=backend_options(profile), cache_dir=profile.data_dir)


def _print_answer(path: Path, answer: Answer, as_json: bool) -> None:
    if as_json:
        row = answer.to_dict()
        row.pop("probabilities")
        print(json.dumps({"input": str(path), **row}))
        return
    m = answer.edge_model
    print(
        f"{path}: {answer.label} (confidence {answer.confidence:.3f}, source {answer.source}, "
        f"model {m.name if m else '-'} {m.version if m else ''}, {answer.latency_ms:.2f} ms"
        + (f", degraded: {answer.reason}" if answer.degraded else "")
        + ")"
    )


def _print_reply(agent: Agent, name: str, path: Path, as_json: bool) -> None:
    from edgecascade.edge.predict_inputs import read_request_inputs
    from edgecascade.edge.tasks import TaskRequest

    served = agent.get(name)
    inputs = read_request_inputs(
        path, served.slot.current.card, int(agent.profile.api.max_body_mb * (1 << 20))
    )
    reply = agent.infer(name, TaskRequest(inputs, request_id=path.name, session_id=path.name))
    outputs = {n: _plain(a) for n, a in reply.outputs.items()}
    if as_json:
        print(
            json.dumps(
                {"input": str(path), "model": name, "outputs": outputs, "provenance": reply.provenance}
            )
        )
        return
    print(f"{path}: model {name} {reply.model_version}")
    for n, a in reply.outputs.items():
        print(f"  {n} {a.dtype} {list(a.shape)}: {_short(outputs[n])}")
    for record in reply.provenance:
        print(
            f"  provenance: source {record['source']}, reason {record['reason']}, {record['latency_ms']} ms"
        )


def _plain(arr: np.ndarray) -> object:
    if arr.dtype == object:
        return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
    return arr.tolist()


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _run(args: argparse.Namespace) -> int:
    _one_blas_thread()
    _no_pydantic_plugins()
    collector_back = _pause_collector()
    from edgecascade.edge.daemon.daemon import Daemon
    from edgecascade.shared.logs import configure_logging

    profile = _profile(args)
    if profile.daemon.log_json and not args.log_json:
        configure_logging(args.log_level, json_lines=True, capture_native=True)
    return Daemon(profile, on_ready=collector_back).run()
