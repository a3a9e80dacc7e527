#!/usr/bin/env bash
# Runs every native Go fuzz target in the tree (func Fuzz* in *_fuzz_test.go)
# for FUZZTIME each (default 30s), one after another; `make test-unit` runs
# their seed corpora as ordinary tests. A finding is written under the
# package's testdata/fuzz/ and fails the run.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS=: read -r file name; do
	pkg="./$(dirname "$file")"
	if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
		echo "ok   $pkg $name: $(grep -E '^fuzz: elapsed' "$log" | tail -n 1)"
	else
		echo "FAIL $pkg $name"; tail -n 30 "$log"; status=1
	fi
done < <(grep -rhoE --include='*_fuzz_test.go' '^func Fuzz[A-Za-z0-9_]+' --with-filename . | sed 's|^\./||; s|:func |:|' | sort)
exit $status
