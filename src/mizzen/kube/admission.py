"""AdmissionReview in, AdmissionReview out: Mizzen's two webhooks, pure.

The HTTP server (an edge elsewhere) decodes the JSON body, calls one of the
functions here and encodes the result; nothing here does IO.

* :func:`review_injection` (the mutating webhook, istiod's ``/inject``):
  a pod CREATE gets a base64 RFC 6902 JSON patch adding the sidecar
  (``mizzen.kube.inject``); anything else is allowed untouched. A pod that
  cannot be injected (a malformed capture annotation, say) is denied with
  the reason, as Istio's injector does.
* :func:`review_validation` (the validating webhook, istiod's ``/validate``):
  an Istio resource on CREATE or UPDATE goes through the very parser and
  validators ``mizzen apply`` uses (``mizzen.api.parse.parse_document``).
  When it is invalid the denial's ``status.message`` is exactly what
  ``mizzen apply`` prints after ``error:`` for the same object, one line per
  problem, with the *file* part being the object's name (what ``mizzen
  apply -f <name>`` would say for a one-document file of that name)::

      reviews:0: VirtualService default/reviews: spec.http[0].route[0].weight: ...

  ``status.code`` is 400: istiod leaves the code unset and the API server
  turns an unset (or < 400) code of a denial into 400, so kubectl shows the
  same either way. Warnings (deprecated forms, parts Mizzen does not
  enforce) go to ``response.warnings``, which kubectl prints as
  ``Warning: ...``. Other groups than ``*.istio.io``, DELETE and CONNECT
  are allowed without a look.

A review that is not an AdmissionReview with a ``request.uid`` cannot be
answered (there is no uid to echo): :class:`AdmissionError`, which the HTTP
edge should turn into a 400.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Final

from mizzen.api.parse import parse_document
from mizzen.api.resources import Source
from mizzen.kube.inject import InjectError, InjectOptions, inject_pod, json_patch, needs_injection

__all__ = [
    "API_VERSIONS",
    "AdmissionError",
    "review_injection",
    "review_validation",
    "validation_source",
]

API_VERSIONS: Final = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
_WRITES: Final = frozenset({"CREATE", "UPDATE"})


class AdmissionError(ValueError):
    """The body is not an AdmissionReview request this webhook can answer."""


def _request(review: Any) -> Mapping[str, Any]:
    if not isinstance(review, Mapping) or review.get("kind") != "AdmissionReview":
        raise AdmissionError("expected an AdmissionReview object")
    if review.get("apiVersion") not in API_VERSIONS:
        raise AdmissionError(
            f"unsupported AdmissionReview apiVersion {review.get('apiVersion')!r}; "
            f"use {API_VERSIONS[0]}"
        )
    request = review.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("uid"), str):
        raise AdmissionError("AdmissionReview has no request.uid")
    return request


def _answer(review: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    # The API server wants the response in the apiVersion it asked with.
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}


def _allow(uid: str, warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = warnings
    return response


def _deny(uid: str, message: str, warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "uid": uid,
        "allowed": False,
        "status": {"code": 400, "message": message},
    }
    if warnings:
        response["warnings"] = warnings
    return response


def _is_pod(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    resource = request.get("resource")
    if isinstance(resource, Mapping) and resource.get("resource") == "pods":
        return not request.get("subResource")
    return isinstance(kind, Mapping) and kind.get("kind") == "Pod" and not kind.get("group")


def review_injection(
    review: Mapping[str, Any], namespace_labels: Mapping[str, str], options: InjectOptions
) -> dict[str, Any]:
    """The mutating webhook's answer; ``namespace_labels`` are those of the
    request's namespace (the caller looks them up). Raises AdmissionError."""
    request = _request(review)
    uid = request["uid"]
    pod = request.get("object")
    if request.get("operation") != "CREATE" or not _is_pod(request):
        return _answer(review, _allow(uid))
    if not isinstance(pod, Mapping):
        return _answer(review, _deny(uid, "request.object: expected a Pod object"))
    namespace = str(request.get("namespace") or "") or None
    if not needs_injection(pod, namespace_labels, options, namespace):
        return _answer(review, _allow(uid))
    try:
        injected = inject_pod(pod, namespace_labels, options, namespace=namespace)
    except InjectError as exc:
        return _answer(review, _deny(uid, f"injection failed: {exc}"))
    patch = json.dumps(json_patch(pod, injected), separators=(",", ":"))
    response = _allow(uid)
    response["patchType"] = "JSONPatch"
    response["patch"] = base64.b64encode(patch.encode()).decode("ascii")
    return _answer(review, response)


def validation_source(obj: Mapping[str, Any]) -> Source:
    """The ``file:doc`` part of a validation message: the object's name as
    the file, document 0 (see the module docstring)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name") or meta.get("generateName") or "<unnamed>"
    return Source(str(name), 0)


def _istio_group(obj: Mapping[str, Any]) -> bool:
    api_version = obj.get("apiVersion")
    if not isinstance(api_version, str):
        return True  # let the parser say what is wrong
    group = api_version.rpartition("/")[0]
    return group == "istio.io" or group.endswith(".istio.io")


def review_validation(review: Mapping[str, Any]) -> dict[str, Any]:
    """The validating webhook's answer. Raises AdmissionError."""
    request = _request(review)
    uid = request["uid"]
    if request.get("operation") not in _WRITES:
        return _answer(review, _allow(uid))
    obj = request.get("object")
    if not isinstance(obj, Mapping):
        return _answer(review, _deny(uid, "request.object: expected a Kubernetes object"))
    if not _istio_group(obj):
        return _answer(review, _allow(uid))
    body = dict(obj)
    meta = body.get("metadata")
    if isinstance(meta, Mapping) and not meta.get("namespace") and request.get("namespace"):
        # The API server names the namespace in the request; the object may not.
        body["metadata"] = {**meta, "namespace": request["namespace"]}
    result = parse_document(body, validation_source(obj))
    warnings = [str(w) for w in result.warnings] + [str(s) for s in result.skipped]
    if result.errors:
        message = "\n".join(str(e) for e in result.errors)
        return _answer(review, _deny(uid, message, warnings))
    return _answer(review, _allow(uid, warnings))
