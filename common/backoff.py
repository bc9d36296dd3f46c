"""How long to wait before trying again: the one doubling rule every retry in the system follows
(broker reconnects, publish attempts, job and webhook retry delays)."""

from dataclasses import dataclass, field


def delay(attempt: int, base: float, cap: float | None = None) -> float:
    """The wait after failed attempt `attempt` (1, 2, 3, ...): base, 2×base, 4×base, ..., at most `cap`."""
    value = base * 2.0 ** (attempt - 1)
    return value if cap is None else min(value, cap)


@dataclass
class Backoff:
    """Consecutive failures wait longer and longer; a success (`reset`) starts again from `base`."""

    base: float = 0.5
    cap: float = 30.0
    failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        self.failures += 1
        return delay(self.failures, self.base, self.cap)

    def reset(self) -> None:
        self.failures = 0
