"""`edgecascade models tune`: calibrate a classifier and pick escalation thresholds on a
validation split: the demo digits splits, or a user's labelled folder (`--data DIR`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecascade.shared import cli_values
from edgecascade.shared.policy_kinds import POLICY_KINDS

if TYPE_CHECKING:
    import numpy as np

    from edgecascade.edge.local_model import LocalModel
    from edgecascade.tools.tune import Split

DEFAULT_MODELS = Path("tests/fixtures/models")
DEFAULT_EDGE = DEFAULT_MODELS / "digits_edge_int8.tflite"
DEFAULT_CLOUD = DEFAULT_MODELS / "digits_cloud.onnx"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="calibrate a classifier, trade escalation rate against cascade accuracy, pick a threshold",
        description="Run the edge (and cloud) classifier on a validation split: the demo digits split, or "
        "with --data a labelled folder DIR/<label>/* of images (.png, .jpg) or .npy arrays, prepared by the "
        "model card's input pipeline and split (seeded, stratified) into validation and held-out parts. "
        "Fit a temperature on the validation split (minimum NLL) and report NLL and expected calibration "
        "error (15 bins) before and after; sweep the threshold of each escalation policy ("
        + ", ".join(POLICY_KINDS)
        + ") on the calibrated probabilities, pick the one that meets the target with the fewest "
        "escalations and report its held-out figures. --write-profile writes the threshold into a "
        "profile and the temperature into the model's card (`calibration`), which the agent applies.",
        epilog="examples:\n  edgecascade models tune --max-escalation 0.10 --relative-accuracy 0.995\n"
        "  edgecascade models tune model.onnx --data photos/ --max-escalation 0.05 --write-profile device.toml\n"
        "  edgecascade models tune model.onnx --data photos/ --cloud-model big.onnx --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        type=cli_values.path,
        nargs="?",
        help=f"the edge classifier (.tflite/.onnx with its card beside it; default: {DEFAULT_EDGE})",
    )
    # The older spelling of MODEL.
    p.add_argument("--edge-model", type=cli_values.path, help=argparse.SUPPRESS)
    p.add_argument(
        "--data",
        type=cli_values.path,
        help="labelled folder DIR/<label>/*.{png,jpg,jpeg,npy}, labels as in the card (default: demo digits)",
    )
    p.add_argument(
        "--cloud-model",
        type=cli_values.path,
        help=f"the cloud classifier (default: {DEFAULT_CLOUD} for the digits; with --data none, "
        "and escalated cases count as answered correctly)",
    )
    p.add_argument(
        "--val-fraction",
        type=cli_values.finite(0.01, 0.99),  # both parts must hold cases of each label
        default=0.5,
        help="--data: fraction of each label for validation, the rest is held out (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=cli_values.whole(0, 2**32 - 1),  # numpy's seeds
        default=0,
        help="--data: seed of the split (default: %(default)s)",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="keep the card's temperature (or none) instead of fitting one",
    )
    p.add_argument(
        "--max-escalation",
        type=cli_values.finite(0.0, 1.0),  # NaN read as "no policy meets the targets"
        default=None,
        help="target: escalate at most this fraction",
    )
    p.add_argument(
        "--relative-accuracy",
        type=cli_values.finite(0.0, 1.0),
        default=None,
        help="target: cascade accuracy at least this fraction of cloud-only accuracy (e.g. 0.995)",
    )
    p.add_argument(
        "--policy",
        choices=[*POLICY_KINDS, "best"],
        default="best",
        help="policy to write into the profile (default: the one needing fewest escalations)",
    )
    p.add_argument(
        "--write-profile",
        type=cli_values.path,
        help="profile TOML whose [cascade] policies line to set; the temperature goes into the model's card",
    )
    p.add_argument(
        "--plot", type=cli_values.path, default=Path("var/tune.png"), help="PNG plot (default: %(default)s)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=_tune)


def _tune(args: argparse.Namespace) -> int:
    from edgecascade.shared.errors import ConfigError
    from edgecascade.tools.tune import plot, tune, write_calibration, write_policy

    if args.max_escalation is None and args.relative_accuracy is None:
        args.max_escalation, args.relative_accuracy = 0.10, 0.995
    model_path: Path = args.model or args.edge_model or DEFAULT_EDGE
    loaded = _splits(args, model_path)
    result = tune(
        loaded.val,
        loaded.held,
        temperature=loaded.card_temperature if args.no_calibration else None,
        max_escalation=args.max_escalation,
        min_relative_accuracy=args.relative_accuracy,
    )
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(result.curves, result.chosen, result.cloud_accuracy, result.edge_accuracy, args.plot)
    kind = None
    if result.chosen:
        kind = (
            min(result.chosen, key=lambda k: result.chosen[k].escalation_rate)
            if args.policy == "best"
            else args.policy
        )
    written: dict[str, str] = {}
    if kind in result.chosen and args.write_profile:
        assert kind is not None
        write_policy(args.write_profile, kind, result.chosen[kind].threshold)
        written["profile"] = str(args.write_profile)
        if not args.no_calibration:
            fitted_on = f"{loaded.source}, validation split of {result.validation.examples}"
            written["card"] = str(write_calibration(model_path, result.temperature, fitted_on))
            _warn_if_not_served(args.write_profile, model_path)
    report: dict[str, Any] = {
        "model": str(model_path),
        "data": loaded.source,
        "cloud": loaded.cloud,
        "targets": {"max_escalation": args.max_escalation, "relative_accuracy": args.relative_accuracy},
        **result.as_dict(),
        "temperature_fitted": not args.no_calibration,
        "chosen": None
        if kind not in result.chosen
        else {"policy": kind, "threshold": result.chosen[kind].threshold},
        "plot": str(args.plot),
        "written": written,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    if not result.chosen:
        raise ConfigError("no policy meets the targets; loosen --max-escalation or --relative-accuracy")
    if kind not in result.chosen:
        raise ConfigError(f"policy {kind} meets no target; choose one of {sorted(result.chosen)}")
    return 0


def _warn_if_not_served(profile_path: Path, model_path: Path) -> None:
    """The temperature goes into MODEL's card; say so when the profile serves another file
    (another backend's artifact, an installed update), whose card it does not reach."""
    import sys

    from edgecascade.edge.agent import model_files
    from edgecascade.edge.config import load_profile
    from edgecascade.shared.errors import EdgecascadeError

    try:
        served = [path.resolve() for path, _ in model_files(load_profile(profile_path))]
    except EdgecascadeError:  # a partial profile: nothing to compare against
        return
    if model_path.resolve() not in served:
        print(
            f"warning: {profile_path} serves {', '.join(map(str, served))}, not {model_path}; "
            "the temperature is only in the card of the model tuned",
            file=sys.stderr,
        )


@dataclass
class _Loaded:
    val: Split
    held: Split
    source: str  # what the data is, for the report and the card's `fitted_on`
    cloud: str
    card_temperature: float  # the card's temperature now (1 if none), for --no-calibration


def _splits(args: argparse.Namespace, model_path: Path) -> _Loaded:
    """The validation and held-out splits: edge logits, cloud predictions, labels."""
    import numpy as np

    from edgecascade.edge.local_model import LocalModel
    from edgecascade.edge.model_check import check_in_child
    from edgecascade.shared.backends import BackendOptions
    from edgecascade.shared.errors import InputError
    from edgecascade.tools.labelled_folder import read_folder, split
    from edgecascade.tools.tune import Split

    # A crafted model that crashes the runtime natively does so in a child process, reported.
    cloud_file = args.cloud_model or (DEFAULT_CLOUD if args.data is None else None)
    check_in_child([(p, None) for p in (model_path, cloud_file) if p is not None])
    edge = LocalModel.load(model_path, BackendOptions())
    try:
        if edge.card.task != "classification":
            raise InputError(f"{model_path}: models tune takes a classifier; its card says {edge.card.task}")
        t = edge.card.calibration.temperature if edge.card.calibration else 1.0
        if args.data is None:
            from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
            from edgecascade.tools.datasets import DATASET_NAME, load_splits

            _, val, held = load_splits()
            cloud_path = args.cloud_model or DEFAULT_CLOUD
            cloud = InProcessCloudClient(cloud_path)
            try:
                splits = [
                    Split(edge.logits(s.features), cloud.probabilities(s.features).argmax(axis=1), s.labels)
                    for s in (val, held)
                ]
            finally:
                cloud.close()
            return _Loaded(splits[0], splits[1], f"{DATASET_NAME}, demo split", str(cloud_path), t)
        examples = read_folder(args.data, edge)
        val_ex, held_ex = split(examples, args.val_fraction, args.seed)
        if args.cloud_model is None:
            cloud_pred = examples.labels  # no cloud model: the cloud is taken to be always right
            cloud_name = "none (escalated cases counted as correct)"
        else:
            big = LocalModel.load(args.cloud_model, BackendOptions())
            try:
                if big.card.labels != edge.card.labels:
                    raise InputError(
                        f"cloud model {args.cloud_model} has labels {big.card.labels}; "
                        f"the edge model's are {edge.card.labels}"
                    )
                inputs = read_folder(args.data, big).inputs
                cloud_pred = _batched(big, big.probabilities, inputs).argmax(axis=1)
            finally:
                big.close()
            cloud_name = str(args.cloud_model)
        logits = _batched(edge, edge.logits, examples.inputs)
        index = {f: i for i, f in enumerate(examples.files)}
        parts = []
        for part in (val_ex, held_ex):
            rows = np.array([index[f] for f in part.files])
            parts.append(Split(logits[rows], cloud_pred[rows], part.labels))
        source = f"{args.data} ({len(examples.labels)} examples, seed {args.seed}, val {args.val_fraction})"
        return _Loaded(parts[0], parts[1], source, cloud_name, t)
    finally:
        edge.close()


def _batched(model: LocalModel, fn: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray) -> np.ndarray:
    """`fn` over `inputs` in batches of 256, or one by one for a model whose batch is fixed at 1."""
    import numpy as np

    spec = next(s for s in model.backend.signature.inputs if s.name == model.input_name)
    size = 1 if spec.shape and spec.shape[0] == 1 else 256
    return np.concatenate([fn(inputs[i : i + size]) for i in range(0, len(inputs), size)])


def _print_table(r: dict[str, Any]) -> None:
    v, h = r["calibration"]["validation"], r["calibration"]["held_out"]
    print(f"model: {r['model']}   data: {r['data']}   cloud: {r['cloud']}")
    how = "fitted on validation, minimum NLL" if r["temperature_fitted"] else "the card's, --no-calibration"
    print(f"\ncalibration: temperature {r['temperature']:.4f} ({how})")
    print(f"{'split':10s} {'examples':>8s} {'accuracy':>9s} {'NLL before':>10s} {'after':>7s} {'ECE before':>10s} {'after':>7s}")  # fmt: skip
    for name, f in (("validation", v), ("held-out", h)):
        print(
            f"{name:10s} {f['examples']:8d} {f['accuracy']:9.2%} {f['nll_before']:10.4f} {f['nll_after']:7.4f} "
            f"{f['ece_before']:10.2%} {f['ece_after']:7.2%}"
        )
    val = r["validation"]
    print(
        f"\nvalidation: {v['examples']} examples   edge-only {val['edge_accuracy']:.2%}   "
        f"cloud-only {val['cloud_accuracy']:.2%}"
    )
    t = r["targets"]
    targets = [f"escalation <= {t['max_escalation']}"] if t["max_escalation"] is not None else []
    if t["relative_accuracy"] is not None:
        targets.append(f"accuracy >= {t['relative_accuracy']} x cloud-only")
    print("targets: " + "   ".join(targets) + "\n")
    print(f"{'policy':9s} {'threshold':>9s} {'val esc':>8s} {'val acc':>8s} {'held esc':>9s} {'held acc':>9s} {'held/cloud':>10s}")  # fmt: skip
    cloud_held = r["held_out"]["cloud_accuracy"]
    for kind, p in r["policies"].items():
        if p is None:
            print(f"{kind:9s} no threshold meets the targets on validation")
            continue
        pv, ph = p["validation"], p["held_out"]
        print(
            f"{kind:9s} {p['threshold']:9.3f} {pv['escalation_rate']:8.1%} {pv['accuracy']:8.2%} "
            f"{ph['escalation_rate']:9.1%} {ph['accuracy']:9.2%} {ph['accuracy'] / cloud_held:10.2%}"
        )
    print(f"\nplot: {r['plot']}")
    chosen, written = r["chosen"], r["written"]
    if chosen is None:
        return
    what = f"{chosen['policy']} threshold {chosen['threshold']:.4f}"
    if "profile" in written:
        print(f"wrote {what} into {written['profile']}")
        if "card" in written:
            print(f"wrote temperature {r['temperature']:.4f} into {written['card']}")
    else:
        print(f"chosen: {what}, temperature {r['temperature']:.4f} (use --write-profile to save them)")
