"""The webhooks' AdmissionReview handling (mizzen.kube.admission), with
reviews shaped as kube-apiserver sends them."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
import yaml

from mizzen.api.parse import parse_text
from mizzen.kube.admission import AdmissionError, review_injection, review_validation
from mizzen.kube.inject import InjectOptions, inject_pod, json_patch

OPTIONS = InjectOptions()
ENABLED = {"istio-injection": "enabled"}
UID = "705ab4f5-6393-11e8-b7cc-42010a800002"


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    group: str = "",
    version: str = "v1",
    kind: str = "Pod",
    resource: str = "pods",
    namespace: str = "shop",
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": obj,
            "oldObject": old,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def replicaset_pod() -> dict[str, Any]:
    """A pod as the ReplicaSet controller creates it: generateName, no namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "reviews-v1-5b9f7c-",
            "labels": {"app": "reviews", "version": "v1", "pod-template-hash": "5b9f7c"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "reviews-v1-5b9f7c",
                    "uid": "d9607e19-f88f-11e6-a518-42010a800195",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceAccountName": "bookinfo-reviews",
            "containers": [
                {
                    "name": "reviews",
                    "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.3",
                    "ports": [{"containerPort": 9080, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": 9080}},
                }
            ],
        },
    }


def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


# -- injection -----------------------------------------------------------------------


def test_pod_create_gets_the_sidecar_patch() -> None:
    pod = replicaset_pod()
    answer = review_injection(review(pod), ENABLED, OPTIONS)
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == UID and response["allowed"] is True
    injected = inject_pod(pod, ENABLED, OPTIONS, namespace="shop")
    assert decoded_patch(response) == json_patch(pod, injected)
    proxy = injected["spec"]["containers"][-1]
    values = {e["name"]: e.get("value") for e in proxy["env"]}
    # The workload is the Deployment behind the ReplicaSet, in the request's namespace.
    assert values["ISTIO_META_WORKLOAD_NAME"] == "reviews-v1"
    assert values["ISTIO_META_OWNER"] == (
        "kubernetes://apis/apps/v1/namespaces/shop/deployments/reviews-v1"
    )


@pytest.mark.parametrize(
    ("ns_labels", "change"),
    [
        ({}, {}),  # namespace not enabled
        (ENABLED, {"labels": {"sidecar.istio.io/inject": "false"}}),
        (ENABLED, {"annotations": {"sidecar.istio.io/status": "{}"}}),  # already injected
    ],
)
def test_pods_without_injection_are_allowed_unchanged(
    ns_labels: dict[str, str], change: dict[str, Any]
) -> None:
    pod = replicaset_pod()
    for key, value in change.items():
        pod["metadata"].setdefault(key, {}).update(value)
    response = review_injection(review(pod), ns_labels, OPTIONS)["response"]
    assert response == {"uid": UID, "allowed": True}


def test_other_operations_and_kinds_pass_through() -> None:
    pod = replicaset_pod()
    assert review_injection(review(pod, operation="UPDATE"), ENABLED, OPTIONS)["response"] == {
        "uid": UID,
        "allowed": True,
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    answer = review_injection(
        review(service, kind="Service", resource="services"), ENABLED, OPTIONS
    )
    assert answer["response"] == {"uid": UID, "allowed": True}


def test_uninjectable_pod_is_denied_with_the_reason() -> None:
    pod = replicaset_pod()
    pod["metadata"]["annotations"] = {"traffic.sidecar.istio.io/excludeOutboundPorts": "80,http"}
    response = review_injection(review(pod), ENABLED, OPTIONS)["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["message"] == (
        "injection failed: annotation traffic.sidecar.istio.io/excludeOutboundPorts: "
        "invalid item 'http': not a port number"
    )


def test_v1beta1_reviews_are_answered_in_v1beta1() -> None:
    request = review(replicaset_pod())
    request["apiVersion"] = "admission.k8s.io/v1beta1"
    assert review_injection(request, {}, OPTIONS)["apiVersion"] == "admission.k8s.io/v1beta1"


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
        {"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview", "request": {"uid": "x"}},
        {"apiVersion": "v1", "kind": "Pod"},
    ],
)
def test_malformed_reviews_raise(body: Any) -> None:
    with pytest.raises(AdmissionError):
        review_injection(body, {}, OPTIONS)
    with pytest.raises(AdmissionError):
        review_validation(body)


# -- validation --------------------------------------------------------------------

BAD_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -10
"""

WARNED_PA = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa, namespace: shop}
spec:
  selector: {}
  mtls: {mode: STRICT}
"""


def istio_review(text: str, operation: str = "CREATE") -> dict[str, Any]:
    obj = yaml.safe_load(text)
    group, version = obj["apiVersion"].split("/")
    resource = obj["kind"].lower() + "s"
    return review(
        obj, operation=operation, group=group, version=version, kind=obj["kind"], resource=resource
    )


def cli_lines(text: str, file: str) -> tuple[list[str], list[str]]:
    """What `mizzen apply -f <file>` prints after `error: ` and `warning: `."""
    result = parse_text(text, file)
    return [str(e) for e in result.errors], [str(w) for w in result.warnings]


def test_invalid_resource_is_denied_with_the_cli_message() -> None:
    response = review_validation(istio_review(BAD_VS))["response"]
    errors, _ = cli_lines(BAD_VS, "reviews")
    assert errors, "the VirtualService must be invalid for this test"
    assert response["uid"] == UID
    assert response["allowed"] is False
    assert response["status"] == {"code": 400, "message": "\n".join(errors)}
    assert response["status"]["message"].startswith("reviews:0: VirtualService shop/reviews: ")


def test_update_is_validated_too_and_delete_is_allowed() -> None:
    assert review_validation(istio_review(BAD_VS, "UPDATE"))["response"]["allowed"] is False
    delete = istio_review(BAD_VS, "DELETE")
    delete["request"]["oldObject"] = delete["request"]["object"]
    delete["request"]["object"] = None
    assert review_validation(delete)["response"] == {"uid": UID, "allowed": True}


def test_valid_resource_is_allowed_with_the_cli_warnings() -> None:
    response = review_validation(istio_review(WARNED_PA))["response"]
    _, warnings = cli_lines(WARNED_PA, "pa")
    assert warnings
    assert response == {"uid": UID, "allowed": True, "warnings": warnings}


def test_namespace_comes_from_the_request_when_the_object_has_none() -> None:
    request = istio_review(BAD_VS)
    del request["request"]["object"]["metadata"]["namespace"]
    message = review_validation(request)["response"]["status"]["message"]
    assert message.startswith("reviews:0: VirtualService shop/reviews: ")


def test_unsupported_istio_kind_is_allowed_with_a_warning() -> None:
    telemetry = {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "istio-system"},
        "spec": {"accessLogging": [{"providers": [{"name": "envoy"}]}]},
    }
    answer = review_validation(
        review(telemetry, group="telemetry.istio.io", kind="Telemetry", resource="telemetries")
    )
    response = answer["response"]
    assert response["allowed"] is True
    assert len(response["warnings"]) == 1 and "not supported yet" in response["warnings"][0]


def test_non_istio_objects_are_not_judged() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    answer = review_validation(review(copy.deepcopy(deployment), group="apps", kind="Deployment"))
    assert answer["response"] == {"uid": UID, "allowed": True}
