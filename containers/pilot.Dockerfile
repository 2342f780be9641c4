# Mizzen's control plane image, docker.io/mizzen/pilot:0.1.0: what the istiod
# pods of `mizzen install` run. Build from the repository root:
#
#   docker build -f containers/pilot.Dockerfile -t docker.io/mizzen/pilot:0.1.0 .
#
# Never built or tested on the project's machines (they have no container
# engine). The Mizzen node runs the same command without an image: its image
# map turns `<hub>/pilot:<tag>` with args `discovery ...` into
# `mizzen discovery ...` (src/mizzen/kube/images.py).

FROM python:3.12-slim-bookworm AS build
# A virtualenv in its own prefix, copied whole into the final stage, so that
# pip, the build backend and the sources stay behind.
RUN python -m venv /opt/mizzen
# README.md: pyproject.toml names it as the package's readme.
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/mizzen/bin/pip install --no-cache-dir /src

FROM python:3.12-slim-bookworm
COPY --from=build /opt/mizzen /opt/mizzen
ENV PATH=/opt/mizzen/bin:$PATH \
    PYTHONUNBUFFERED=1
# Numeric, because the Deployment says runAsNonRoot without a runAsUser: the
# kubelet can only check a numeric image user. 1337 is istiod's uid too.
USER 1337:1337
# The Deployment's args start with `discovery` (Istio's pilot-discovery
# flags), so the entrypoint is `mizzen` and the command defaults to
# `discovery`: `mizzen discovery --monitoringAddr=:15014 --domain cluster.local`.
ENTRYPOINT ["mizzen"]
CMD ["discovery"]
