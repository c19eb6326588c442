# syntax=docker/dockerfile:1
#
# One image for the operator, for the sidecar it injects into every Chute, and for the simulated
# model server:
#   operator:  chute-operator run            (ENTRYPOINT + default CMD)
#   sidecar:   chute-operator sidecar ...    (the Deployment the operator renders sets this command)
#   modelsim:  chute-operator modelsim ...   (a Chute's command, for tests without a GPU)
#
# Base image: pinned by version here. For a reproducible release build, pin it by digest too:
#   docker buildx imagetools inspect python:3.11.7-slim-bookworm   # or: crane digest / skopeo inspect
#   docker build --build-arg PYTHON_IMAGE=python:3.11.7-slim-bookworm@sha256:<digest> -t chute-operator:0.1.0 .
# (replace <digest> with the index digest that command prints; keep the version tag beside it so
# the pin stays readable). Both stages must use the same base: the virtualenv copied from the
# builder links to the base's interpreter.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies first (cached while only the source changes): wheels of the project and all of
# its dependencies, then an offline install of exactly those wheels into the venv.
COPY pyproject.toml README* ./
COPY operator/ ./operator/
RUN /opt/venv/bin/pip wheel --wheel-dir /wheels ".[fast]" \
 && /opt/venv/bin/pip install --no-index --find-links /wheels "chute-operator[fast]" \
 && /opt/venv/bin/chute-operator --help >/dev/null

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="chute-operator" \
      org.opencontainers.image.description="Kubernetes operator for Chutes (chutes.ai/v1alpha1) and its sidecar" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=builder /opt/venv /opt/venv
# Non-root, numeric (so runAsNonRoot can verify it without a passwd entry): the "nonroot" uid.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["chute-operator"]
CMD ["run"]
