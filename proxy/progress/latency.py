"""Recent job durations per model, for estimating progress where a backend gives no signal."""

from __future__ import annotations


class LatencyBook:
    """An exponentially weighted mean of successful durations, per model."""

    def __init__(self, default_seconds: float = 20.0, weight: float = 0.3) -> None:
        self.default_seconds = default_seconds
        self.weight = weight
        self._mean: dict[str, float] = {}

    def record(self, model: str, seconds: float) -> None:
        previous = self._mean.get(model)
        self._mean[model] = seconds if previous is None else (
            previous + self.weight * (seconds - previous))

    def expected(self, model: str, fallback: float | None = None) -> float:
        return self._mean.get(model, fallback if fallback is not None else self.default_seconds)
