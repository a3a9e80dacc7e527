#!/usr/bin/env bash
# Regenerates every generated file: deepcopy, defaults and conversions for the
# API packages, the NodeTopology clientset, listers and informers, and the CRD.
# The code generators are pinned by go.mod (`go tool`); controller-gen by the
# version below.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODULE=github.com/tandem-sched/tandem
HEADER=hack/boilerplate.go.txt
CONTROLLER_GEN_VERSION=v0.23.0

go tool deepcopy-gen --go-header-file "$HEADER" --output-file zz_generated.deepcopy.go \
	./apis/topology/v1alpha1 ./apis/config ./apis/config/v1
go tool defaulter-gen --go-header-file "$HEADER" --output-file zz_generated.defaults.go \
	./apis/config/v1
go tool conversion-gen --go-header-file "$HEADER" --output-file zz_generated.conversion.go \
	--extra-peer-dirs k8s.io/apimachinery/pkg/apis/meta/v1,k8s.io/apimachinery/pkg/conversion,k8s.io/apimachinery/pkg/runtime \
	./apis/config/v1

rm -rf pkg/generated
go tool client-gen --go-header-file "$HEADER" --clientset-name versioned \
	--input-base "$MODULE/apis" --input topology/v1alpha1 \
	--output-pkg "$MODULE/pkg/generated/clientset" --output-dir pkg/generated/clientset
go tool lister-gen --go-header-file "$HEADER" \
	--output-pkg "$MODULE/pkg/generated/listers" --output-dir pkg/generated/listers \
	./apis/topology/v1alpha1
go tool informer-gen --go-header-file "$HEADER" \
	--versioned-clientset-package "$MODULE/pkg/generated/clientset/versioned" \
	--listers-package "$MODULE/pkg/generated/listers" \
	--output-pkg "$MODULE/pkg/generated/informers" --output-dir pkg/generated/informers \
	./apis/topology/v1alpha1

go run "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION" \
	crd:crdVersions=v1 paths=./apis/topology/... output:crd:dir=manifests/crds

# The PodGroup CRD (scheduling.x-k8s.io) that Gang and PDAffinity read, at the
# scheduler-plugins version go.mod pins.
podgroup_crd="$(go list -m -f '{{.Dir}}' sigs.k8s.io/scheduler-plugins)/config/crd/bases/scheduling.x-k8s.io_podgroups.yaml"
install -m 0644 "$podgroup_crd" manifests/crds/scheduling.x-k8s.io_podgroups.yaml

# The Helm chart templates both CRDs from copies in its own tree (a chart
# cannot read files outside it).
install -m 0644 manifests/crds/tandem.dev_nodetopologies.yaml manifests/crds/scheduling.x-k8s.io_podgroups.yaml charts/tandem/files/crds/
