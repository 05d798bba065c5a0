"""`edgecascade models tune`: pick escalation thresholds on the validation split."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecascade.shared.policy_kinds import POLICY_KINDS

DEFAULT_MODELS = Path("tests/fixtures/models")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="trade escalation rate against cascade accuracy and pick a threshold",
        description="Run the edge and cloud models on the digits validation split, sweep the threshold of "
        "each escalation policy (" + ", ".join(POLICY_KINDS) + "), print the trade-off, pick the threshold "
        "that meets the target with the fewest escalations, report its held-out figures, write it "
        "into a profile and save a PNG plot.",
        epilog="examples:\n  edgecascade models tune --max-escalation 0.10 --relative-accuracy 0.995\n"
        "  edgecascade models tune --max-escalation 0.05 --write-profile firmware-configs/raspberry-pi-4.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--edge-model", type=Path, default=DEFAULT_MODELS / "digits_edge_int8.tflite")
    p.add_argument("--cloud-model", type=Path, default=DEFAULT_MODELS / "digits_cloud.onnx")
    p.add_argument(
        "--max-escalation", type=float, default=None, help="target: escalate at most this fraction"
    )
    p.add_argument(
        "--relative-accuracy",
        type=float,
        default=None,
        help="target: cascade accuracy at least this fraction of cloud-only accuracy (e.g. 0.995)",
    )
    p.add_argument(
        "--policy",
        choices=[*POLICY_KINDS, "best"],
        default="best",
        help="policy to write into the profile (default: the one needing fewest escalations)",
    )
    p.add_argument("--write-profile", type=Path, help="profile TOML whose [cascade] policies line to set")
    p.add_argument("--plot", type=Path, default=Path("var/tune.png"), help="PNG plot (default: %(default)s)")
    p.set_defaults(func=_tune)


def _tune(args: argparse.Namespace) -> int:
    from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
    from edgecascade.edge.local_model import LocalModel
    from edgecascade.shared.backends import BackendOptions
    from edgecascade.shared.errors import ConfigError
    from edgecascade.tools.datasets import load_splits
    from edgecascade.tools.tune import KINDS, curve, evaluate, pick, plot, write_policy

    if args.max_escalation is None and args.relative_accuracy is None:
        args.max_escalation, args.relative_accuracy = 0.10, 0.995
    _, val, held = load_splits()
    edge = LocalModel.load(args.edge_model, BackendOptions())
    cloud = InProcessCloudClient(args.cloud_model)
    ev, eh = edge.probabilities(val.features), edge.probabilities(held.features)
    cv, ch = (
        cloud.probabilities(val.features).argmax(axis=1),
        cloud.probabilities(held.features).argmax(axis=1),
    )
    cloud_val, cloud_held = float((cv == val.labels).mean()), float((ch == held.labels).mean())
    edge_val = float((ev.argmax(axis=1) == val.labels).mean())
    print(f"validation: {len(val.labels)} digits   edge-only {edge_val:.2%}   cloud-only {cloud_val:.2%}")
    print(
        f"targets: escalation <= {args.max_escalation}   accuracy >= {args.relative_accuracy} x cloud-only\n"
    )
    print(
        f"{'policy':9s} {'threshold':>9s} {'val esc':>8s} {'val acc':>8s} {'held esc':>9s} {'held acc':>9s} {'held/cloud':>10s}"
    )
    curves, chosen = {}, {}
    for kind in KINDS:
        curves[kind] = curve(kind, ev, cv, val.labels)
        best = pick(
            curves[kind],
            max_escalation=args.max_escalation,
            min_relative_accuracy=args.relative_accuracy,
            cloud_accuracy=cloud_val,
        )
        if best is None:
            print(f"{kind:9s} no threshold meets the targets on validation")
            continue
        chosen[kind] = best
        h = evaluate(kind, best.threshold, eh, ch, held.labels)
        print(
            f"{kind:9s} {best.threshold:9.3f} {best.escalation_rate:8.1%} {best.accuracy:8.2%} "
            f"{h.escalation_rate:9.1%} {h.accuracy:9.2%} {h.accuracy / cloud_held:10.2%}"
        )
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(curves, chosen, cloud_val, edge_val, args.plot)
    print(f"\nplot: {args.plot}")
    if not chosen:
        raise ConfigError("no policy meets the targets; loosen --max-escalation or --relative-accuracy")
    kind = min(chosen, key=lambda k: chosen[k].escalation_rate) if args.policy == "best" else args.policy
    if kind not in chosen:
        raise ConfigError(f"policy {kind} meets no target; choose one of {sorted(chosen)}")
    if args.write_profile:
        write_policy(args.write_profile, kind, chosen[kind].threshold)
        print(f"wrote {kind} threshold {chosen[kind].threshold:.4f} into {args.write_profile}")
    else:
        print(f"chosen: {kind} threshold {chosen[kind].threshold:.4f} (use --write-profile to save it)")
    return 0
