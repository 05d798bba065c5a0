"""Hold the escalation rate at a target while the input distribution drifts.

A static threshold tuned offline escalates far more (or less) than planned once inputs get
harder (blur, noise, a new camera). `AdaptiveThresholdPolicy` wraps one score-based policy
(max_prob, margin, entropy) and, every few requests, moves its threshold to the quantile of
the recent uncertainty scores that escalates `target_rate` of them, clamped to the profile's
bounds. Ties at the cut (quantized int8 outputs repeat values) are broken at random in the
proportion that makes the rate exact. When `max_per_minute` would be exceeded at the current
request rate, the effective target is lowered to fit the cap."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from edgecascade.edge.policies.base import EASY, Decision, EscalationPolicy
from edgecascade.edge.policies.combine import AllOf, AnyOf
from edgecascade.edge.policies.confidence import EntropyPolicy, MarginPolicy, MaxProbabilityPolicy
from edgecascade.edge.policies.registry import POLICIES

ScorePolicy = MaxProbabilityPolicy | MarginPolicy | EntropyPolicy

#: Below this many scores the threshold stays at the base policy's configured value.
WARMUP = 20


class AdaptiveThresholdPolicy(EscalationPolicy):
    """Decides like `base`, but with a threshold set online from the last `window` scores.

    `decide()` is thread-safe (one short lock). `stats()` gives the current threshold and
    the achieved rate over the window, for telemetry and metrics."""

    def __init__(
        self,
        base: ScorePolicy,
        *,
        target_rate: float,
        min_threshold: float = 0.0,
        max_threshold: float = 1.0,
        window: int = 200,
        max_per_minute: int | None = None,
        update_every: int = 10,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < target_rate < 1.0:
            raise ValueError(f"target_rate must be within (0, 1), got {target_rate}")
        if min_threshold > max_threshold:
            raise ValueError(f"min_threshold {min_threshold} > max_threshold {max_threshold}")
        if isinstance(base, MaxProbabilityPolicy) and base.per_class:
            raise ValueError("an adaptive max_prob policy sets one threshold; per_class is not supported")
        self.base = base
        self.target_rate = target_rate
        self.min_threshold = min_threshold
        self.max_threshold = max_threshold
        self.window = window
        self.max_per_minute = max_per_minute
        self.update_every = update_every
        self._clock = clock
        self._rng = random.Random(seed)
        self._kind, self._op = _KIND[type(base)]
        self._lock = threading.Lock()
        self._scores = np.zeros(window)
        self._hard = np.zeros(window, dtype=bool)
        self._filled = 0
        self._pos = 0
        self._minutes: deque[list[float]] = deque()  # [second, requests] over the last minute
        self.threshold = base.threshold
        self.effective_target = target_rate
        self._cut = self._to_score(base.threshold)
        self._tie_hard = 0.0
        self.requests = 0
        self.escalated = 0

    # -- threshold <-> score ("higher score = harder" for every kind) ----------------------------
    def _to_score(self, threshold: float) -> float:
        return threshold if self._kind == "entropy" else 1.0 - threshold

    def _from_score(self, cut: float) -> float:
        return cut if self._kind == "entropy" else 1.0 - cut

    def decide(self, probs: np.ndarray) -> Decision:
        score = float(self.base.scores(probs[None, :])[0])
        with self._lock:
            cut, tie_hard = self._cut, self._tie_hard
            hard = score > cut or (score == cut and tie_hard > 0.0 and self._rng.random() < tie_hard)
            self._scores[self._pos] = score
            self._hard[self._pos] = hard
            self._pos = (self._pos + 1) % self.window
            self._filled = min(self._filled + 1, self.window)
            self.requests += 1
            self.escalated += hard
            self._count_request()
            if self._filled >= WARMUP and self.requests % self.update_every == 0:
                self._update()
            threshold = self.threshold
        if not hard:
            return EASY
        value = self._from_score(score)
        return Decision(True, f"{self._kind} {value:.3f} {self._op} {threshold:.3f} (adaptive)")

    def _count_request(self) -> None:
        now = self._clock()
        second = math.floor(now)
        while self._minutes and self._minutes[0][0] <= now - 60.0:
            self._minutes.popleft()
        if self._minutes and self._minutes[-1][0] == second:
            self._minutes[-1][1] += 1
        else:
            self._minutes.append([second, 1])

    def _update(self) -> None:
        """Move the cut to the (1 - target) quantile of the window's scores. Caller holds the lock."""
        target = self.target_rate
        if self.max_per_minute is not None:
            per_minute = sum(count for _, count in self._minutes)
            if per_minute * target > self.max_per_minute:
                target = self.max_per_minute / per_minute
        self.effective_target = target
        scores = np.sort(self._scores[: self._filled])
        n = len(scores)
        cut = float(scores[min(int(n * (1.0 - target)), n - 1)])
        threshold = self._from_score(cut)
        if not self.min_threshold <= threshold <= self.max_threshold:
            # A bound binds: the policy's own semantics apply (strict), no tie-breaking.
            self.threshold = min(max(threshold, self.min_threshold), self.max_threshold)
            self._cut = self._to_score(self.threshold)
            self._tie_hard = 0.0
            return
        above = float(np.count_nonzero(scores > cut)) / n
        at = float(np.count_nonzero(scores == cut)) / n
        self.threshold = threshold
        self._cut = cut
        self._tie_hard = min(max((target - above) / at, 0.0), 1.0) if at else 0.0

    def stats(self) -> dict[str, float]:
        """Flat figures for a metrics record: threshold now, targets and the achieved rate
        over the window (and since start)."""
        with self._lock:
            filled = self._filled
            achieved = float(self._hard[:filled].mean()) if filled else 0.0
            return {
                "adaptive_threshold": round(self.threshold, 6),
                "adaptive_target_rate": self.target_rate,
                "adaptive_effective_target": round(self.effective_target, 6),
                "adaptive_achieved_rate": round(achieved, 6),
                "adaptive_window_fill": float(filled),
                "adaptive_requests": float(self.requests),
                "adaptive_escalated": float(self.escalated),
            }

    def scores(self, probs: np.ndarray) -> np.ndarray:
        return self.base.scores(probs)


_KIND: dict[type, tuple[str, str]] = {
    cls: (kind, ">" if cls is EntropyPolicy else "<") for kind, cls in POLICIES.items()
}


def find_adaptive(policy: EscalationPolicy) -> AdaptiveThresholdPolicy | None:
    """The adaptive controller inside a (possibly combined) policy, or None: for telemetry."""
    if isinstance(policy, AdaptiveThresholdPolicy):
        return policy
    if isinstance(policy, AnyOf | AllOf):
        for inner in policy.policies:
            found = find_adaptive(inner)
            if found is not None:
                return found
    return None
