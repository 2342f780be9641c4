"""Istio-compatible transparent capture: pod annotations -> iptables nat rules.

`rules` is pure (config, rendering); `iptables` applies them in a pod netns.
"""

from mizzen.capture.iptables import CaptureError, install, uninstall
from mizzen.capture.rules import (
    AnnotationError,
    CaptureConfig,
    Rule,
    build_rules,
    render,
    render_commands,
    render_uninstall,
)

__all__ = [
    "AnnotationError",
    "CaptureConfig",
    "CaptureError",
    "Rule",
    "build_rules",
    "install",
    "render",
    "render_commands",
    "render_uninstall",
    "uninstall",
]
