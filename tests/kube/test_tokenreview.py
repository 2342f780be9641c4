"""What a TokenReview answer proves (mizzen.kube.tokenreview); answers
shaped as kube-apiserver gives them for a pod's projected token."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from mizzen.ca.service import Refused
from mizzen.ca.tokens import PodClaims
from mizzen.kube.tokenreview import claims_from_review, review_body


def answer(**changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "authenticated": True,
        "audiences": ["istio-ca"],
        "user": {
            "username": "system:serviceaccount:shop:reviews",
            "uid": "sa-uid",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:shop"],
            "extra": {
                "authentication.kubernetes.io/pod-name": ["reviews-7d9f-abcde"],
                "authentication.kubernetes.io/pod-uid": ["pod-uid-1"],
            },
        },
    }
    status.update(changes)
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}


def test_the_request_asks_for_the_istio_ca_audience() -> None:
    assert review_body("t")["spec"] == {"token": "t", "audiences": ["istio-ca"]}


def test_a_pod_bound_token_names_the_pod() -> None:
    assert claims_from_review(answer()) == PodClaims(
        "shop", "reviews-7d9f-abcde", "pod-uid-1", "reviews"
    )


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"authenticated": False, "error": "token expired"}, "UNAUTHENTICATED", "token expired"),
        ({"audiences": ["https://kubernetes.default.svc"]}, "UNAUTHENTICATED", "audience"),
        ({"user": {"username": "alice"}}, "PERMISSION_DENIED", "not a service account"),
        (
            {"user": {"username": "system:serviceaccount:shop:reviews", "extra": {}}},
            "PERMISSION_DENIED",
            "not bound to a pod",
        ),
    ],
)
def test_anything_else_is_refused(changes: dict[str, Any], code: str, words: str) -> None:
    with pytest.raises(Refused) as caught:
        claims_from_review(answer(**changes))
    assert caught.value.status == getattr(grpc.StatusCode, code)
    assert words in caught.value.reason
