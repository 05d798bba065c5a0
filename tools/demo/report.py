"""The demo's closing report (printed and returned as a dict) and its one-page PNG dashboard."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecascade.tools.demo.traffic import DetectionSample, Recorder, Sample


@dataclass
class Outage:
    what: str
    start: float
    end: float | None


def _agent_summary(samples: list[Sample]) -> dict[str, Any]:
    lat = np.array([s.latency_ms for s in samples if not np.isnan(s.latency_ms)])
    edge_lat = np.array([s.latency_ms for s in samples if s.source == "edge" and not np.isnan(s.latency_ms)])
    cloud_lat = np.array(
        [s.latency_ms for s in samples if s.source == "cloud" and not np.isnan(s.latency_ms)]
    )
    versions = [s.model_version for s in samples if s.model_version != "?"]

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 2) if a.size else None

    return {
        "answers": len(samples),
        "accuracy": round(float(np.mean([s.correct for s in samples])), 4) if samples else None,
        "escalation_rate": round(float(np.mean([s.escalated for s in samples])), 4) if samples else None,
        "degraded": sum(s.degraded for s in samples),
        "sources": dict(Counter(s.source for s in samples)),
        "latency_ms": {
            "p50": pct(lat, 50),
            "p99": pct(lat, 99),
            "edge_p50": pct(edge_lat, 50),
            "edge_p99": pct(edge_lat, 99),
            "cloud_p50": pct(cloud_lat, 50),
            "cloud_p99": pct(cloud_lat, 99),
        },
        "model_before": versions[0] if versions else None,
        "model_after": versions[-1] if versions else None,
    }


def _detection_summary(events: list[DetectionSample], counters: dict[str, float]) -> dict[str, Any]:
    """The camera detector's events (per object: new, update, end) and its frames' escalations."""
    seen = [e for e in events if e.type != "end"]
    judged = [e for e in seen if e.correct is not None]
    frames, escalated = counters.get("frames"), counters.get("frames_escalated")
    return {
        "events": len(events),
        "by_type": dict(Counter(e.type for e in events)),
        "objects": len({e.object_id for e in events if e.type == "new"}),
        "answered_by": dict(Counter(e.answered_by for e in seen)),
        "escalated_events": sum(e.escalated for e in seen),
        "degraded_events": sum(e.degraded for e in seen),
        "precision_iou50": round(float(np.mean([e.correct for e in judged])), 4) if judged else None,
        "frames": frames,
        "frames_answered_by_cloud": escalated,
        "frame_escalation_rate": round(escalated / frames, 4) if frames and escalated is not None else None,
    }


def report(
    rec: Recorder,
    outages: list[Outage],
    telemetry: dict[str, dict[str, int]],
    work: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    agents = sorted({s.agent for s in rec.samples})
    per_agent = {a: _agent_summary([s for s in rec.samples if s.agent == a]) for a in agents}
    cloud_back = next((o.end for o in outages if o.what == "cloud" and o.end), None)
    late = [v for v in rec.verdicts if cloud_back is not None and v[0] >= cloud_back]
    totals = {
        k: sum(t[k] for t in telemetry.values())
        for k in ("produced", "delivered", "buffered", "dropped", "lost")
    }
    detection = _detection_summary(rec.detections, rec.camera_counters)
    summary = {
        "agents": per_agent,
        "camera_detections": detection,
        "errors": rec.errors,
        "late_verdicts": len(rec.verdicts),
        "late_verdicts_after_cloud_restored": len(late),
        "telemetry": totals,
        "telemetry_per_device": telemetry,
        "outages": [o.__dict__ for o in outages],
    }
    print()
    print(
        f"{'agent':14s} {'answers':>7s} {'accuracy':>8s} {'escal.':>6s} {'degr.':>5s} {'p50 ms':>7s} {'p99 ms':>7s}  "
        f"{'model before -> after':22s} sources"
    )
    for a, m in per_agent.items():
        lat = m["latency_ms"]
        print(
            f"{a:14s} {m['answers']:7d} {m['accuracy']:8.2%} {m['escalation_rate']:6.1%} {m['degraded']:5d} "
            f"{_fmt(lat['p50']):>7s} {_fmt(lat['p99']):>7s}  {str(m['model_before']) + ' -> ' + str(m['model_after']):22s} "
            f"{m['sources']}"
        )
    if detection["events"]:
        rate = detection["frame_escalation_rate"]
        print(
            f"\ncamera detector (demo-jetson): {detection['events']} events {detection['by_type']} for "
            f"{detection['objects']} objects; seen by {detection['answered_by']}; "
            f"precision {_pct(detection['precision_iou50'])} (IoU 0.5, right digit)"
        )
        print(
            f"  frames {_fmt0(detection['frames'])}, answered by the cloud detector "
            f"{_fmt0(detection['frames_answered_by_cloud'])} ({_pct(rate)} escalated); "
            f"degraded events {detection['degraded_events']}"
        )
    print(f"\nlate verdicts delivered: {len(rec.verdicts)} ({len(late)} after the cloud came back)")
    print(
        f"telemetry: produced {totals['produced']}, delivered {totals['delivered']}, still buffered on devices "
        f"{totals['buffered']}, dropped by bounds {totals['dropped']}, lost {totals['lost']}"
    )
    if rec.errors:
        print(f"request errors seen by the applications: {rec.errors}")
    dashboard(rec, outages, agents, work / "dashboard.png")
    return summary


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _fmt0(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def dashboard(rec: Recorder, outages: list[Outage], agents: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    (ax_lat, ax_esc), (ax_ver, ax_src) = axes
    colours = {a: c for a, c in zip(agents, ["tab:blue", "tab:orange", "tab:green", "tab:red"], strict=False)}
    for a in agents:
        ss = [s for s in rec.samples if s.agent == a]
        t = np.array([s.t for s in ss])
        lat = np.array([s.latency_ms for s in ss])
        if np.isfinite(lat).any():
            ax_lat.scatter(t, lat, s=3, color=colours[a], label=a)
        esc = np.array([float(s.escalated) for s in ss])
        if len(esc) >= 20:
            k = 40
            rolling = np.convolve(esc, np.ones(k) / k, mode="valid")
            ax_esc.plot(t[k - 1 :], rolling * 100, color=colours[a], label=a)
        vt = [(s.t, s.model_version) for s in ss if s.model_version != "?"]
        if vt:
            ax_ver.step([x for x, _ in vt], [v for _, v in vt], where="post", color=colours[a], label=a)
    for ax in (ax_lat, ax_esc, ax_ver):
        for o in outages:
            end = o.end if o.end is not None else rec.now()
            ax.axvspan(o.start, end, alpha=0.15, color="red" if o.what == "cloud" else "purple")
            ax.text(o.start, 1.0, f"{o.what} down", transform=ax.get_xaxis_transform(), fontsize=7, va="top")
        ax.set_xlabel("seconds")
    vts = [v[0] for v in rec.verdicts]
    if vts:
        ax_esc.scatter(vts, [1] * len(vts), marker="|", color="black", label="late verdicts")
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("latency (ms, application side)")
    ax_lat.set_title("Latency per request")
    ax_esc.set_ylabel("escalated (%, rolling 40)")
    ax_esc.set_title("Escalation rate")
    ax_ver.set_ylabel("edge model version")
    ax_ver.set_title("Model version (signed update over MQTT)")
    # The camera detector's objects (new and update events) stand beside the HTTP agents' answers.
    seen = [e for e in rec.detections if e.type != "end"]
    bars = agents + (["demo-jetson\n(detections)"] if seen else [])
    srcs = sorted({s.source for s in rec.samples} | {e.answered_by for e in seen})
    bottom = np.zeros(len(bars))
    for src in srcs:
        counts = [sum(1 for s in rec.samples if s.agent == a and s.source == src) for a in agents]
        if seen:
            counts.append(sum(1 for e in seen if e.answered_by == src))
        ax_src.bar(bars, counts, bottom=bottom, label=src)
        bottom += np.array(counts)
    ax_src.set_title("Answers per source (camera: detected objects)")
    for ax in axes.flat:
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(
        "edgecascade demo: 3 agents (one a camera detector), a model update, a cloud outage and a broker outage"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
