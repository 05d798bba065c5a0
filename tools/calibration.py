"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one
scalar T fitted on a validation split by minimizing the negative log-likelihood of
softmax(logits / T). Accuracy is unchanged (argmax is), confidence moves towards how often
the model is right, which is what an escalation threshold on confidence assumes.

Figures: NLL (mean nats) and top-label Expected Calibration Error over 15 equal-width bins."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from edgecascade.edge.local_model import softmax

ECE_BINS = 15
#: T is searched over [1/100, 100]; the NLL is convex in 1/T, so a golden-section search on
#: log T (unimodal there too) finds its minimum.
T_RANGE = (0.01, 100.0)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / T), in nats."""
    logp = _log_softmax(logits / temperature)
    return float(-logp[np.arange(len(labels)), labels].mean())


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label Expected Calibration Error: the example-weighted mean over equal-width
    confidence bins (lo, hi] of |accuracy - mean confidence|."""
    confidence = probs.max(axis=1).astype(np.float64)
    correct = probs.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / len(labels))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 100) -> float:
    """The T in T_RANGE minimizing nll(logits, labels, T), by golden-section search on log T."""
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    for _ in range(iterations):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, math.exp(b))
    return math.exp((lo + hi) / 2.0)


@dataclass(frozen=True)
class Figures:
    """One split's calibration figures before (T = 1) and after temperature T."""

    examples: int
    accuracy: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def figures(logits: np.ndarray, labels: np.ndarray, temperature: float) -> Figures:
    before, after = softmax(logits), softmax(logits / np.float32(temperature))
    return Figures(
        examples=len(labels),
        accuracy=float((before.argmax(axis=1) == labels).mean()),
        nll_before=nll(logits, labels),
        nll_after=nll(logits, labels, temperature),
        ece_before=ece(before, labels),
        ece_after=ece(after, labels),
    )
