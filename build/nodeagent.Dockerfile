# syntax=docker/dockerfile:1
# The tandem node agent. It needs cgo and glibc: go-nvml dlopens the host
# driver's libnvidia-ml.so.1 (--nvml-library) at run time, so the binary is
# built against glibc and runs on a glibc base. Nothing of NVML is copied in.
#   docker build -f build/nodeagent.Dockerfile -t ghcr.io/tandem-sched/tandem-agent:v0.1.0 .
FROM golang:1.24-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# go-nvml's headers mark many NVML calls deprecated (as in the Makefile).
ENV CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations"
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags='-s -w' -o /out/nodeagent ./cmd/nodeagent

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
