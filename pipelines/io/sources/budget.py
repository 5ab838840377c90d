"""How much load a pull may put on one server: queries at once, samples per second, samples
in total (``source.prometheus.budget``), and what the pull cost (from ``stats=all``).

The rate limit is a token bucket in samples: before a request the pull takes the samples it
expects the request to read (from the stats of the query's earlier requests), sleeping until
the bucket has them; after the answer the difference to what the server reports is settled.
A request is never refused for being larger than the bucket: it waits until the bucket is
full. The total is checked before each request: past it the pull stops, the windows already
committed stay, and the next run goes on from there.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from ...config import PrometheusSource
from .promapi import PrometheusError, RangeAnswer

__all__ = ["Budget", "BudgetExceeded", "Cost", "resolve_budget"]

#: low_impact: one query at a time, 2M samples/s, requests of at most a tenth of query.max-samples
LOW_IMPACT = {"max_concurrency": 1, "samples_per_s": 2_000_000.0, "samples_budget_pct": 10.0}


class BudgetExceeded(PrometheusError):
    """The pull would read more samples than ``budget.total_samples``."""


@dataclass
class Budget:
    """The effective budget of one server (see :func:`resolve_budget`)."""

    max_concurrency: int
    samples_per_s: float | None
    total_samples: int | None
    samples_budget_pct: float
    preset: str = "normal"
    _tokens: float = field(default=0.0, repr=False)
    _last: float = field(default_factory=time.monotonic, repr=False)
    _spent: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._tokens = self.samples_per_s or 0.0
        self.slots = threading.BoundedSemaphore(self.max_concurrency)

    def describe(self) -> str:
        rate = f"{self.samples_per_s:,.0f} samples/s" if self.samples_per_s else "no samples/s limit"
        total = f"at most {self.total_samples:,} samples" if self.total_samples else "no total limit"
        return (f"{self.preset}: {self.max_concurrency} quer{'y' if self.max_concurrency == 1 else 'ies'} at once, {rate}, "
                f"{total}, requests up to {self.samples_budget_pct:g}% of query.max-samples")

    def take(self, expected: float, what: str) -> None:
        """Before a request expected to read ``expected`` samples: wait for the rate limit;
        stop (:class:`BudgetExceeded`) when the total would be passed."""
        with self._lock:
            if self.total_samples and self._spent + expected > self.total_samples:
                raise BudgetExceeded(
                    f"{what}: the pull has read {self._spent:,} samples and the next request would pass "
                    f"source.prometheus.budget.total_samples ({self.total_samples:,}); the windows pulled so far are "
                    "stored: run again to go on, or raise the budget")
        if not self.samples_per_s:
            return
        want = min(expected, self.samples_per_s)  # a request larger than a second's worth waits for a full bucket
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.samples_per_s, self._tokens + (now - self._last) * self.samples_per_s)
                self._last = now
                if self._tokens >= want:
                    self._tokens -= expected
                    return
                wait = (want - self._tokens) / self.samples_per_s
            time.sleep(min(wait, 5.0))

    def settle(self, expected: float, actual: int | None) -> None:
        """After the answer: count what the server read, and correct the bucket."""
        with self._lock:
            self._spent += actual or 0
            if self.samples_per_s and actual is not None:
                self._tokens -= actual - expected

    @property
    def spent(self) -> int:
        return self._spent


def resolve_budget(src: PrometheusSource) -> Budget:
    """``source.prometheus.budget`` with the preset's values where a field is not set."""
    b = src.budget
    low = b.preset == "low_impact"
    return Budget(max_concurrency=b.max_concurrency or (LOW_IMPACT["max_concurrency"] if low else src.max_concurrency),
                  samples_per_s=b.samples_per_s or (LOW_IMPACT["samples_per_s"] if low else None),
                  total_samples=b.total_samples,
                  samples_budget_pct=min(src.samples_budget_pct, LOW_IMPACT["samples_budget_pct"]) if low
                  else src.samples_budget_pct, preset=b.preset)


@dataclass
class Cost:
    """What a set of requests cost the server (sums of their ``stats``)."""

    requests: int = 0
    samples: int = 0
    peak_samples: int = 0
    server_s: float = 0.0
    points: int = 0

    def add(self, ans: RangeAnswer) -> None:
        self.requests += 1
        self.samples += ans.total_samples or 0
        self.peak_samples = max(self.peak_samples, ans.peak_samples or 0)
        self.server_s += ans.eval_s or 0.0
        self.points += sum(len(r.get("values") or ()) for r in ans.result)

    def merge(self, other: "Cost") -> None:
        self.requests += other.requests
        self.samples += other.samples
        self.peak_samples = max(self.peak_samples, other.peak_samples)
        self.server_s += other.server_s
        self.points += other.points

    def as_dict(self) -> dict:
        return {"requests": self.requests, "samples": self.samples, "peak_samples": self.peak_samples,
                "server_s": round(self.server_s, 3), "points": self.points}
