#!/usr/bin/env bash
# Builds the scheduler and node agent images for IMAGE_PLATFORMS with docker
# buildx, stamped with VERSION, GIT_COMMIT and BUILD_DATE (the Makefile's).
# Without an engine that runs buildx it says so and fails, unless
# IMAGES_OPTIONAL=1. PUSH=1 pushes the images.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DOCKER=${DOCKER:-docker}
: "${VERSION:?}" "${GIT_COMMIT:=}" "${BUILD_DATE:=}"
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/tandem-sched}
IMAGE_TAG=${IMAGE_TAG:-${VERSION//+/-}}
IMAGE_PLATFORMS=${IMAGE_PLATFORMS:-linux/amd64,linux/arm64}

if ! command -v "$DOCKER" >/dev/null 2>&1 || ! "$DOCKER" buildx version >/dev/null 2>&1 || ! "$DOCKER" info >/dev/null 2>&1; then
	echo "images: no container engine with docker buildx here ($DOCKER); cannot build $IMAGE_REPO/tandem-scheduler and $IMAGE_REPO/tandem-agent:$IMAGE_TAG for $IMAGE_PLATFORMS" >&2
	if [ -n "${IMAGES_OPTIONAL:-}" ]; then
		echo "images: skipped (IMAGES_OPTIONAL=1)" >&2
		exit 0
	fi
	exit 1
fi

push=()
if [ -n "${PUSH:-}" ]; then push=(--push); fi
for pair in scheduler:tandem-scheduler nodeagent:tandem-agent; do
	file=${pair%%:*} name=${pair#*:}
	"$DOCKER" buildx build --platform "$IMAGE_PLATFORMS" -f "build/$file.Dockerfile" \
		--build-arg VERSION="$VERSION" --build-arg GIT_COMMIT="$GIT_COMMIT" --build-arg BUILD_DATE="$BUILD_DATE" \
		-t "$IMAGE_REPO/$name:$IMAGE_TAG" "${push[@]}" .
done
