# syntax=docker/dockerfile:1
# The tandem node agent. It needs cgo and glibc: go-nvml dlopens the host
# driver's libnvidia-ml.so.1 (--nvml-library) at run time, so the binary is
# built against glibc and runs on a glibc base. Nothing of NVML is copied in.
# For amd64 and arm64 (Grace trays) at once, cross-compiling with Debian's
# cross gcc rather than emulating the build:
#   docker buildx build --platform linux/amd64,linux/arm64 -f build/nodeagent.Dockerfile \
#     -t ghcr.io/tandem-sched/tandem-agent:v0.1.0 .
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETARCH BUILDARCH
# The version stamp `make images` passes (the Makefile's VERSION, a Kubernetes
# semantic version with tandem's commit as build metadata); unset, the binary
# is not stamped.
ARG VERSION= GIT_COMMIT= BUILD_DATE=
RUN if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      case "$TARGETARCH" in arm64) pkg=gcc-aarch64-linux-gnu;; amd64) pkg=gcc-x86-64-linux-gnu;; *) echo "no cross compiler for $TARGETARCH"; exit 1;; esac; \
      apt-get update && apt-get install -y --no-install-recommends "$pkg" && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# go-nvml's headers mark many NVML calls deprecated (as in the Makefile).
ENV CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations"
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      case "$TARGETARCH" in arm64) export CC=aarch64-linux-gnu-gcc;; amd64) export CC=x86_64-linux-gnu-gcc;; esac; \
    fi; \
    GOOS=linux GOARCH=$TARGETARCH go build -ldflags="-s -w ${VERSION:+-X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitCommit=$GIT_COMMIT -X k8s.io/component-base/version.buildDate=$BUILD_DATE}" \
      -o /out/nodeagent ./cmd/nodeagent

# debian rather than distroless/base: the agent runs host tools.
#   lldpcli (lldpd)           the lldp leaf source (needs the host's lldpd socket)
#   smpquery (infiniband-diags) the infiniband leaf source (--enable-infiniband-probe)
#   modprobe (kmod)           --configure-gpudirect loads nvidia-peermem
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends kmod lldpd infiniband-diags \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/nodeagent /usr/local/bin/nodeagent
ENTRYPOINT ["/usr/local/bin/nodeagent"]
