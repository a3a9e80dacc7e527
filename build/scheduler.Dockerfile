# syntax=docker/dockerfile:1
# The tandem scheduler: a static binary on distroless, running as nonroot.
#   docker build -f build/scheduler.Dockerfile -t ghcr.io/tandem-sched/tandem-scheduler:v0.1.0 .
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# The version stamp `make images` passes (the Makefile's VERSION, a Kubernetes
# semantic version with tandem's commit as build metadata); unset, the binary
# is not stamped.
ARG VERSION= GIT_COMMIT= BUILD_DATE=
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# No cgo: the scheduler links nothing from C, so it runs on distroless/static.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -ldflags="-s -w ${VERSION:+-X k8s.io/component-base/version.gitVersion=$VERSION -X k8s.io/component-base/version.gitCommit=$GIT_COMMIT -X k8s.io/component-base/version.buildDate=$BUILD_DATE}" \
      -o /out/scheduler ./cmd/scheduler

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/scheduler /scheduler
# UID 65532, as the Deployment's securityContext expects.
USER 65532:65532
ENTRYPOINT ["/scheduler"]
