# syntax=docker/dockerfile:1
#
# One image for the operator, for the sidecar it injects into every Chute, for the weights download
# Job and for the simulated model server:
#   operator:  chute-operator run            (ENTRYPOINT + default CMD)
#   sidecar:   chute-operator sidecar ...    (the Deployment the operator renders sets this command)
#   weights:   python -m chute_weights ...   (the download Job the operator renders, docs/weights.md)
#   modelsim:  chute-operator modelsim ...   (a Chute's command, for tests without a GPU)
#
# Base image: pinned by version here. For a reproducible release build, pin it by digest too:
#   docker buildx imagetools inspect python:3.11.7-slim-bookworm   # or: crane digest / skopeo inspect
#   docker build --build-arg PYTHON_IMAGE=python:3.11.7-slim-bookworm@sha256:<digest> -t chute-operator:0.1.0 .
# (replace <digest> with the index digest that command prints; keep the version tag beside it so
# the pin stays readable). Both stages must use the same base: the virtualenv copied from the
# builder links to the base's interpreter. Any Debian-based image with python3 (3.11+) and
# python3-venv works: the local cluster builds this file with buildah on a Debian base of its own
# (`chute-operator dev build`, see docs/deployment.md).
#
# Behind a TLS-inspecting proxy, give the RUN steps the machine's CA bundle without putting it in a
# layer, e.g. `buildah bud -v /etc/ssl/certs:/etc/ssl/certs:ro ...` or, with BuildKit,
# `RUN --mount=type=secret`; pip on a Debian base reads /etc/ssl/certs/ca-certificates.crt.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so this layer is reused while only the source
# changes: the build requirements, the runtime dependencies and the `fast` and `weights` extras.
COPY pyproject.toml ./
RUN python3 -m venv /opt/venv \
 && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"] + p["project"]["optional-dependencies"]["fast"] + p["project"]["optional-dependencies"]["weights"]))' > requirements.txt \
 && /opt/venv/bin/pip install --requirement requirements.txt
# Then the project itself, offline: nothing but its own code is installed here (its LICENSE goes
# into the package's metadata, so the image carries it).
COPY LICENSE README* ./
COPY operator/ ./operator/
RUN /opt/venv/bin/pip install --no-index --no-deps --no-build-isolation . \
 && /opt/venv/bin/chute-operator --help >/dev/null \
 && /opt/venv/bin/pip check

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="chute-operator" \
      org.opencontainers.image.description="Kubernetes operator for Chutes (chutes.ai/v1alpha1), its sidecar and a simulated model server" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Non-root, numeric (so runAsNonRoot can verify it without a passwd entry): the "nonroot" uid.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["chute-operator"]
CMD ["run"]
# Last, so a code change rebuilds only this layer of the final image (the files stay root-owned).
COPY --from=builder /opt/venv /opt/venv
