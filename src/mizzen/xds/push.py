"""Push bookkeeping without IO: debounce windows and the push awaiting ACKs.

The server owns the clock and the timer; these classes only decide. A
debounce window opens at the first ``push()`` and closes ``window`` seconds
later (not "after ``window`` s of quiet"): a steady trickle of config events
then still produces a push at least every ``window`` seconds instead of being
postponed forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Push:
    """A flushed push: the version it produced and when it was first asked for."""

    version: str
    requested_at: float  # monotonic seconds of the first push() merged into it
    reason: str
    changed_proxies: int  # proxies whose output changed (0: nothing was sent)


@dataclass
class _Window:
    opened_at: float
    reasons: list[str] = field(default_factory=list)


class Debouncer:
    """Merges push requests that arrive within one window."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._open: _Window | None = None

    @property
    def pending(self) -> bool:
        return self._open is not None

    def request(self, reason: str, now: float) -> float | None:
        """Record a push request; return when to flush if a new window opened."""
        if self._open is None:
            self._open = _Window(now, [reason])
            return now + self.window
        self._open.reasons.append(reason)
        return None

    def take(self) -> tuple[float, str] | None:
        """Close the window: (first request time, merged reason), or None."""
        w, self._open = self._open, None
        if w is None:
            return None
        # Keep first-seen order and drop duplicates: "registry, config" rather
        # than a reason repeated once per endpoint event.
        reasons = [r for r in dict.fromkeys(w.reasons) if r]
        return w.opened_at, ", ".join(reasons)
