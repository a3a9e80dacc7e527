#!/usr/bin/env bash
# Installs the cross C compiler the node agent (cgo) needs for the other
# architecture, from Debian: gcc-aarch64-linux-gnu on amd64 hosts,
# gcc-x86-64-linux-gnu on arm64 hosts. Does nothing when it is there
# already, or when apt-get is not (the agent's cross build is then skipped,
# see the Makefile's build-agents).
set -o errexit -o nounset -o pipefail

case "$(go env GOARCH)" in
amd64) cc=aarch64-linux-gnu-gcc pkg=gcc-aarch64-linux-gnu libc=libc6-dev-arm64-cross ;;
arm64) cc=x86_64-linux-gnu-gcc pkg=gcc-x86-64-linux-gnu libc=libc6-dev-amd64-cross ;;
*) echo "install-cross-cc: no cross compiler known for $(go env GOARCH)"; exit 0 ;;
esac
if command -v "$cc" >/dev/null 2>&1; then
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-cross-cc: $cc not found and no apt-get; install $pkg to build the node agent for the other architecture"
	exit 0
fi
sudo=
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" "$libc" >/dev/null
command -v "$cc"
