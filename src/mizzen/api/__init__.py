"""Typed Kubernetes and Istio resources, and their parsing and validation.

Public entry points: ``load_paths`` (files and folders) and ``parse_text``
(one file's content), both returning a ``LoadResult`` of resources,
``ConfigError``s, ``ConfigWarning``s and ``Skipped`` documents. Nothing here
raises on bad input.
"""

from mizzen.api.errors import ConfigError, ConfigWarning, LoadResult, Skipped
from mizzen.api.load import load_paths
from mizzen.api.parse import parse_text

__all__ = ["ConfigError", "ConfigWarning", "LoadResult", "Skipped", "load_paths", "parse_text"]
