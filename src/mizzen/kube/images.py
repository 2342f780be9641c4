"""Container images to local commands, for the Mizzen node (the kubelet's role).

Images cannot be pulled on a Mizzen node, so every container of a pod the
API server binds to it must become a local argv. :func:`local_argv` decides,
in this order:

1. A container with a ``command`` runs ``command + args``, after Kubernetes'
   ``$(VAR)`` expansion from the container's resolved env (:func:`expand`).
2. Mizzen's own images (any registry and tag), by their first arguments:

   * ``.../proxyv2:*`` with ``istio-iptables ...`` (the ``istio-init`` init
     container) -> ``mizzen capture --netns <pod netns> --istio-iptables --
     <the same flags>``, which installs the rules those flags describe;
   * ``.../proxyv2:*`` with ``proxy sidecar|router ...`` (``istio-proxy``,
     gateways) -> ``mizzen agent ...`` with options taken from the
     container's env (POD_NAME, POD_NAMESPACE, INSTANCE_IP, SERVICE_ACCOUNT,
     ISTIO_META_POD_PORTS, TRUST_DOMAIN, PROXY_CONFIG's discoveryAddress or
     CA_ADDR, ISTIO_KUBE_APP_PROBERS) and the pod's labels and annotations
     (Istio's agent reads them from the ``istio-podinfo`` volume). When the
     node gives the paths of the ``istiod-ca-cert`` and ``istio-token``
     volumes, ``--ca-root``/``--token-file`` turn the workload identity on.
     The other ``ISTIO_META_*`` values have no agent option: the agent derives
     its node metadata itself;
   * ``.../pilot:*`` with ``discovery ...`` -> ``mizzen discovery <the rest>``
     (that command is the control plane's Kubernetes mode; it does not exist
     yet, the argv is its contract).

3. The user's image map, ``{image: [entrypoint argv]}`` (:func:`load_image_map`
   reads the YAML): an exact key, or a key ending in ``*`` matching by
   prefix (the longest wins). The container's ``args`` follow the entrypoint,
   as Kubernetes puts ``args`` after an image's ENTRYPOINT.

Anything else is an :class:`ImageError` naming pod, container and image and
saying how to add an image map entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

__all__ = [
    "ImageError",
    "PodContext",
    "expand",
    "load_image_map",
    "local_argv",
]

CA_ROOT_VOLUME: Final = "istiod-ca-cert"
CA_ROOT_FILE: Final = "root-cert.pem"
TOKEN_VOLUME: Final = "istio-token"
# The proxy's own emptyDir (/etc/istio/proxy): bootstrap, logs and state.
PROXY_VOLUME: Final = "istio-envoy"
TOKEN_FILE: Final = "istio-token"


class ImageError(ValueError):
    """A container the node cannot run, or an image map it cannot read."""


@dataclass(frozen=True)
class PodContext:
    """What the node knows about the pod a container belongs to.

    ``netns`` is the pod's network namespace name (where ``mizzen capture``
    installs the rules). ``volume_paths`` maps a pod volume name to the host
    directory the node made for it. ``agent_args`` are node-specific extra
    ``mizzen agent`` options (``--mesh``, ``--workdir``, ``--dns-resolver``,
    ...), appended as they are.
    """

    name: str
    namespace: str
    ip: str = ""
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"
    node_name: str = ""
    host_ip: str = ""
    netns: str = ""
    volume_paths: Mapping[str, str] = field(default_factory=dict)
    agent_args: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# -- Kubernetes $(VAR) expansion ------------------------------------------------


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' expansion of env values, command and args: ``$(NAME)`` is
    replaced when NAME is defined and kept as written when not; ``$$`` is a
    literal ``$``; ``$`` before anything else, and an unclosed ``$(``, stay
    as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(" and (close := text.find(")", i + 2)) != -1:
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            # Not a reference (or an unclosed one): both characters stay.
            out.append(ch + nxt)
            i += 2
    return "".join(out)


# -- the image map ---------------------------------------------------------------


def load_image_map(text: str, file: str = "image map") -> dict[str, list[str]]:
    """``{image: [argv...]}`` from YAML text; raises ImageError naming the key."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ImageError(f"{file}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ImageError(f"{file}: must be a mapping of image -> argv list")
    out: dict[str, list[str]] = {}
    for image, argv in data.items():
        if not isinstance(image, str) or not image:
            raise ImageError(f"{file}: {image!r}: an image name must be a non-empty string")
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in argv)
        ):
            raise ImageError(f"{file}: {image}: must be a non-empty list of strings (the argv)")
        out[image] = [str(a) for a in argv]
    return out


def _repository_name(image: str) -> str:
    """``docker.io/istio/proxyv2:1.24.0`` -> ``proxyv2``."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _user_entry(image: str, image_map: Mapping[str, Sequence[str]]) -> Sequence[str] | None:
    if image in image_map:
        return image_map[image]
    globs = [k for k in image_map if k.endswith("*") and image.startswith(k[:-1])]
    return image_map[max(globs, key=len)] if globs else None


# -- Mizzen's own images ---------------------------------------------------------


def _capture_argv(args: Sequence[str], pod: PodContext) -> list[str]:
    if not pod.netns:
        raise ImageError(f"pod {pod.key}: istio-iptables needs the pod's network namespace")
    return ["mizzen", "capture", "--netns", pod.netns, "--istio-iptables", "--", *args[1:]]


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{flag}="):
            return arg.partition("=")[2]
    return None


def _xds_address(env: Mapping[str, str], pod: PodContext, container: str) -> str:
    try:
        proxy_config = json.loads(env.get("PROXY_CONFIG") or "{}")
    except json.JSONDecodeError:
        raise ImageError(
            f"pod {pod.key}: container {container}: PROXY_CONFIG is not valid JSON"
        ) from None
    found = proxy_config.get("discoveryAddress") if isinstance(proxy_config, dict) else None
    address = found or env.get("CA_ADDR")
    if not address:
        raise ImageError(
            f"pod {pod.key}: container {container}: no discovery address "
            "(PROXY_CONFIG discoveryAddress or CA_ADDR)"
        )
    return str(address)


def _agent_argv(
    container: Mapping[str, Any], args: Sequence[str], env: Mapping[str, str], pod: PodContext
) -> list[str]:
    name = str(container.get("name", ""))
    xds = _xds_address(env, pod, name)
    argv = [
        *("mizzen", "agent", "--type", "router" if args[1] == "router" else "sidecar"),
        *("--xds-address", xds),
        *("--pod", env.get("POD_NAME") or pod.name),
        *("--namespace", env.get("POD_NAMESPACE") or pod.namespace),
        *("--ip", env.get("INSTANCE_IP") or pod.ip),
        *("--service-account", env.get("SERVICE_ACCOUNT") or pod.service_account),
        *("--labels", json.dumps(dict(pod.labels), sort_keys=True)),
        *("--annotations", json.dumps(dict(pod.annotations), sort_keys=True)),
    ]
    optional = {
        "--pod-ports": env.get("ISTIO_META_POD_PORTS"),
        "--trust-domain": env.get("TRUST_DOMAIN"),
        "--app-probes": env.get("ISTIO_KUBE_APP_PROBERS"),
        "--envoy-log-level": _flag_value(args, "--proxyLogLevel"),
        "--concurrency": _flag_value(args, "--concurrency"),
    }
    ca_address = env.get("CA_ADDR")
    if ca_address and ca_address != xds:
        optional["--ca-address"] = ca_address
    # In the pod's own volume, so it goes with the pod; the default is a
    # local mesh's directory.
    optional["--workdir"] = pod.volume_paths.get(PROXY_VOLUME)
    ca_dir = pod.volume_paths.get(CA_ROOT_VOLUME)
    token_dir = pod.volume_paths.get(TOKEN_VOLUME)
    if ca_dir and token_dir:
        optional["--ca-root"] = f"{ca_dir.rstrip('/')}/{CA_ROOT_FILE}"
        optional["--token-file"] = f"{token_dir.rstrip('/')}/{TOKEN_FILE}"
    for option, value in optional.items():
        if value:
            argv += [option, value]
    return [*argv, *pod.agent_args]


def _builtin(
    container: Mapping[str, Any], args: Sequence[str], env: Mapping[str, str], pod: PodContext
) -> list[str] | None:
    repository = _repository_name(str(container.get("image") or ""))
    if repository == "proxyv2" and args[:1] == ["istio-iptables"]:
        return _capture_argv(args, pod)
    if repository == "proxyv2" and args[:1] == ["proxy"] and args[1:2] in (["sidecar"], ["router"]):
        return _agent_argv(container, args, env, pod)
    if repository == "pilot" and args[:1] == ["discovery"]:
        return ["mizzen", "discovery", *args[1:]]
    return None


def _strings(container: Mapping[str, Any], key: str, pod: PodContext) -> list[str]:
    value = container.get(key) or []
    if not isinstance(value, list):
        raise ImageError(
            f"pod {pod.key}: container {container.get('name', '')}: {key} must be a list"
        )
    return [str(v) for v in value]


def local_argv(
    container: Mapping[str, Any],
    pod: PodContext,
    image_map: Mapping[str, Sequence[str]],
    env: Mapping[str, str],
) -> list[str]:
    """The local command that runs ``container`` of ``pod`` (rules above);
    ``env`` is the container's resolved environment (node/spec.py)."""
    command = [expand(a, env) for a in _strings(container, "command", pod)]
    args = [expand(a, env) for a in _strings(container, "args", pod)]
    if command:
        return [*command, *args]
    builtin = _builtin(container, args, env, pod)
    if builtin is not None:
        return builtin
    image = str(container.get("image") or "")
    entry = _user_entry(image, image_map) if image else None
    if entry is not None:
        return [*entry, *args]
    name = container.get("name", "")
    shown = repr(image) if image else "(none)"
    raise ImageError(
        f"pod {pod.key}: container {name}: image {shown} has no command and no image map "
        f"entry; images cannot be pulled here: give the container a `command`, or add "
        f'`"{image or "IMAGE"}": [/path/to/program, ...]` (a trailing * matches by prefix) '
        "to a file given to `mizzen cluster up --image-map FILE`"
    )
