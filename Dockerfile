# syntax=docker/dockerfile:1
# The tierserve image that `tierserve kube manifests` and the Helm chart name
# (ghcr.io/tierserve/tierserve:<version>): the extender, the pod controllers, the custom
# metrics API, the gateway and the emulator are all `tierserve <command>`.
#
#   docker build -t ghcr.io/tierserve/tierserve:0.1.0 .
#
# Installed from this source tree at the exact versions the test gate passed with
# (scripts/constraints.txt); runs as the non-root user 65532, as the manifests'
# securityContext expects (runAsNonRoot, runAsUser: 65532, read-only root filesystem).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/constraints.txt scripts/constraints.txt
COPY tierserve tierserve
# tierserve and every dependency as wheels, pinned: a floating dependency is an image that
# changes the day a release ships
RUN pip wheel --wheel-dir /wheels -c scripts/constraints.txt .

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels tierserve \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nonroot
# numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd
USER 65532:65532
ENTRYPOINT ["tierserve"]
CMD ["--help"]
