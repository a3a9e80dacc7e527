#!/usr/bin/env bash
# Runs `go test "$@"`, keeping its whole output in $TEST_LOG_DIR (default
# bin/test-logs) and, when it fails, repeating the failing tests' own lines at
# the end: the integration tests' apiserver logs otherwise push the failure out
# of a CI log's tail.
set -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
dir=${TEST_LOG_DIR:-bin/test-logs}
mkdir -p "$dir"
log="$dir/$(date -u +%Y%m%dT%H%M%SZ)-$$.log"

"$GO" test "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
	echo
	echo "==== go test failed (exit $rc); whole output in $log; the failures:"
	# A failing test's own lines (t.Errorf, t.Fatalf), its --- FAIL line, a
	# panic or a timeout, and the package verdicts.
	grep -E -e '^[[:space:]]*--- FAIL' -e '^[[:space:]]+[A-Za-z0-9_]+_test\.go:[0-9]+:' \
		-e '^panic:' -e 'test timed out' -e '^FAIL' -e '^ok ' "$log" | tail -n 200
fi
exit "$rc"
