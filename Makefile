# tandem: a secondary Kubernetes scheduler and node agent for disaggregated
# LLM inference. `make help` lists the targets.

GO ?= go
# go-nvml's headers mark many NVML calls deprecated; the warnings say nothing
# about tandem.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
# Integration tests start a real kube-apiserver: allow for a cold build.
UNIT_TIMEOUT ?= 20m
INTEGRATION_TIMEOUT ?= 30m
BENCH ?= .
# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 30s
BIN := bin

UNIT_PKGS = $$($(GO) list ./... | grep -v /test/integration)

.PHONY: help build generate verify test test-unit test-integration fuzz demo bench bench-micro bench-gang clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## Build the binaries into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

generate: ## Regenerate deepcopy, conversions, defaults, clients and CRDs.
	hack/update-codegen.sh

verify: ## gofmt, go vet, go.mod tidy, and generated code current.
	hack/verify.sh

test-unit: ## Unit tests.
	$(GO) test -count=1 -timeout $(UNIT_TIMEOUT) $(UNIT_PKGS)

test-integration: ## Integration tests on an in-process kube-apiserver and etcd.
	$(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) ./test/integration/...

test: test-unit test-integration ## Unit and integration tests.

fuzz: ## Every native fuzz target, FUZZTIME (default 30s) each; CI runs them for 2s.
	FUZZTIME=$(FUZZTIME) GO=$(GO) hack/fuzz.sh

demo: ## Run the demo on an embedded fake GPU cluster.
	$(GO) run ./cmd/demo

bench: bench-micro ## Go micro-benchmarks, then the placement benchmark on 100 nodes (docs/benchmark.md).
	$(GO) run ./cmd/bench --nodes 100 --json $(BIN)/bench.json

bench-micro: ## Go micro-benchmarks only (BENCH=regexp to select).
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem $(UNIT_PKGS)

bench-gang: ## Gang's PreFilter and queue sort against scheduler-plugins' Coscheduling (test/gangbench, a module of its own).
	cd test/gangbench && $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem

clean: ## Remove built binaries.
	rm -rf $(BIN)
