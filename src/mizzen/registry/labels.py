"""Label selectors as Kubernetes Services and Istio workload selectors use
them: equality on every key (``matchLabels``), nothing more."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["selector_matches"]


def selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """True when every ``key: value`` of ``selector`` is in ``labels``.

    A missing or empty selector selects nothing: Kubernetes manages no
    endpoints for a Service without a selector, and an empty workload
    selector on a ServiceEntry would otherwise capture a whole namespace by
    accident.
    """
    if not selector:
        return False
    return all(labels.get(key) == value for key, value in selector.items())
