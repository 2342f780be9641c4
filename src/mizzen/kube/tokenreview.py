"""Who sent a certificate request, as the API server says: the pod's
projected service-account token checked by a TokenReview.

The token must be for the ``istio-ca`` audience (the injected
``istio-token`` volume asks for it) and bound to a pod, so the review names
the pod and its uid; the certificate service then checks that this pod is
alive with that uid. A token of a deleted pod, of another audience, or not
bound to a pod gets no certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from mizzen.ca.service import Refused
from mizzen.ca.tokens import PodClaims
from mizzen.kube.client import KubeClient, KubeError

AUDIENCE = "istio-ca"
PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
_SA_PREFIX = "system:serviceaccount:"
_POD_NAME = "authentication.kubernetes.io/pod-name"
_POD_UID = "authentication.kubernetes.io/pod-uid"


def review_body(token: str, audience: str = AUDIENCE) -> dict[str, Any]:
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": [audience]},
    }


def claims_from_review(review: Mapping[str, Any], audience: str = AUDIENCE) -> PodClaims:
    """The pod a reviewed token belongs to; raises ``Refused``."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        reason = status.get("error") or "the API server did not authenticate it"
        raise Refused(grpc.StatusCode.UNAUTHENTICATED, f"bad service-account token: {reason}")
    if audience not in (status.get("audiences") or []):
        raise Refused(
            grpc.StatusCode.UNAUTHENTICATED,
            f"the service-account token is not for the {audience!r} audience",
        )
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    namespace, _, account = username.removeprefix(_SA_PREFIX).partition(":")
    if not username.startswith(_SA_PREFIX) or not namespace or not account:
        raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"{username!r} is not a service account")
    extra = user.get("extra") or {}
    pod = (extra.get(_POD_NAME) or [""])[0]
    uid = (extra.get(_POD_UID) or [""])[0]
    if not pod or not uid:
        raise Refused(
            grpc.StatusCode.PERMISSION_DENIED,
            "the service-account token is not bound to a pod (use the projected istio-token)",
        )
    return PodClaims(namespace, pod, uid, account)


class TokenReviewer:
    """The certificate service's ``authenticate`` on Kubernetes."""

    def __init__(self, kube: KubeClient, audience: str = AUDIENCE) -> None:
        self.kube = kube
        self.audience = audience

    async def __call__(self, token: str) -> PodClaims:
        try:
            review = await self.kube.create(PATH, review_body(token, self.audience))
        except KubeError as exc:
            raise Refused(
                grpc.StatusCode.UNAVAILABLE, f"cannot review the token: {exc.message}"
            ) from None
        return claims_from_review(review, self.audience)
