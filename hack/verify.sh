#!/usr/bin/env bash
# Fails when the tree is not formatted, vetted, tidy, when a generated file
# is not what the generators make from the sources today, or when Helm lints
# charts/tandem with an error or warning.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "--- gofmt"
unformatted=$(gofmt -l $(git ls-files --cached --others --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt'ed:"; echo "$unformatted"; exit 1
fi

echo "--- go vet"
go vet ./...

echo "--- go.mod tidy"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp go.mod go.sum "$tmp/"
go mod tidy
if ! diff -u "$tmp/go.mod" go.mod || ! diff -u "$tmp/go.sum" go.sum; then
	cp "$tmp/go.mod" "$tmp/go.sum" .
	echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1
fi

echo "--- generated code"
# Generate into a copy of the tree and compare, so that uncommitted work in
# progress is neither needed nor disturbed.
mkdir "$tmp/tree"
git ls-files --cached --others --exclude-standard -z | xargs -0 cp --parents -t "$tmp/tree"
(cd "$tmp/tree" && hack/update-codegen.sh)
status=0
for dir in apis pkg/generated manifests/crds charts/tandem/files/crds; do
	diff -ru --exclude='*.go~' "$dir" "$tmp/tree/$dir" || status=1
done
if [ "$status" != 0 ]; then
	echo "generated files are stale: run make generate"; exit 1
fi
echo "--- helm lint"
# Helm's lint through its SDK (strict: warnings fail too), with the default
# values and with every optional part on.
go run ./hack/helmlint charts/tandem charts/tandem/ci/all-on-values.yaml

echo "verify: ok"
