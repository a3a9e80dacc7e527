#!/usr/bin/env bash
# Installs what the tests need beyond Go: Chromium, for the test that opens
# `kubectl tandem --output html` in a headless browser. Does nothing when
# /usr/bin/chromium is already there. Debian or Ubuntu, as root (or with sudo).
set -o errexit -o nounset -o pipefail

if [ -x /usr/bin/chromium ]; then
	echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-test-deps: /usr/bin/chromium is missing and apt-get is not available; install Chromium by hand" >&2
	exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
	sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y chromium
/usr/bin/chromium --version
