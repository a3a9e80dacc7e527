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
# The node agent needs cgo (go-nvml), so building it for the other
# architecture needs a cross C compiler: Debian's gcc-aarch64-linux-gnu and
# gcc-x86-64-linux-gnu. Without one, `make build` says so and skips that
# architecture; AGENT_ARCHS_REQUIRED=1 makes it an error instead.
HOST_ARCH := $(shell $(GO) env GOARCH)
AGENT_ARCHS ?= amd64 arm64
CROSS_CC_arm64 ?= aarch64-linux-gnu-gcc
CROSS_CC_amd64 ?= x86_64-linux-gnu-gcc
AGENT_ARCHS_REQUIRED ?=

# Version stamping. kube-scheduler parses gitVersion as a semantic version
# and compares it with the Kubernetes version its feature gates emulate, so
# both binaries carry the k8s.io/kubernetes version go.mod builds against,
# with tandem's commit as build metadata: v1.34.10+tandem.076452e.
KUBE_VERSION := $(shell $(GO) list -m -f '{{.Version}}' k8s.io/kubernetes)
GIT_DESCRIBE := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
GIT_TREE_STATE := $(if $(findstring -dirty,$(GIT_DESCRIBE)),dirty,clean)
VERSION ?= $(KUBE_VERSION)+tandem.$(GIT_DESCRIBE)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VERSION_PKG := k8s.io/component-base/version
LDFLAGS := -X $(VERSION_PKG).gitVersion=$(VERSION) -X $(VERSION_PKG).gitCommit=$(GIT_COMMIT) \
	-X $(VERSION_PKG).gitTreeState=$(GIT_TREE_STATE) -X $(VERSION_PKG).buildDate=$(BUILD_DATE)
# The images (hack/images.sh): both architectures, with docker buildx.
IMAGE_REPO ?= ghcr.io/tandem-sched
IMAGE_TAG ?= $(subst +,-,$(VERSION))
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
IMAGES_OPTIONAL ?=
DOCKER ?= docker
PUSH ?=

UNIT_PKGS = $$($(GO) list ./... | grep -v /test/integration)

.PHONY: help build build-agents images version ldflags generate verify test test-unit test-integration fuzz demo bench bench-micro bench-gang clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: build-agents ## Build the binaries into bin/, and the node agent for amd64 and arm64 into bin/linux-<arch>/.
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

version: ## Print the version the binaries are stamped with.
	@echo $(VERSION)

ldflags: ## Print the -ldflags that stamp the version (for builds outside make).
	@echo "$(LDFLAGS)"

build-agents: ## The node agent for each of AGENT_ARCHS (bin/linux-<arch>/nodeagent); another architecture needs its cross C compiler.
	@set -e; for arch in $(AGENT_ARCHS); do \
		if [ "$$arch" = "$(HOST_ARCH)" ]; then \
			echo "nodeagent linux/$$arch"; \
			CGO_ENABLED=1 GOOS=linux GOARCH=$$arch $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/linux-$$arch/nodeagent ./cmd/nodeagent; \
			continue; \
		fi; \
		case $$arch in arm64) cc="$(CROSS_CC_arm64)";; amd64) cc="$(CROSS_CC_amd64)";; *) echo "build-agents: no cross compiler known for $$arch"; exit 1;; esac; \
		if command -v "$$cc" >/dev/null 2>&1; then \
			echo "nodeagent linux/$$arch (CC=$$cc)"; \
			CGO_ENABLED=1 GOOS=linux GOARCH=$$arch CC="$$cc" $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/linux-$$arch/nodeagent ./cmd/nodeagent; \
		elif [ -n "$(AGENT_ARCHS_REQUIRED)" ]; then \
			echo "build-agents: $$cc not found: cannot build the node agent for linux/$$arch (Debian: apt-get install gcc-$$( [ $$arch = arm64 ] && echo aarch64 || echo x86-64 )-linux-gnu)"; exit 1; \
		else \
			echo "build-agents: skipping linux/$$arch: $$cc not found (Debian: apt-get install gcc-$$( [ $$arch = arm64 ] && echo aarch64 || echo x86-64 )-linux-gnu)"; \
		fi; \
	done

images: ## Both images for IMAGE_PLATFORMS with docker buildx (PUSH=1 pushes); without an engine it fails unless IMAGES_OPTIONAL=1.
	VERSION='$(VERSION)' GIT_COMMIT='$(GIT_COMMIT)' BUILD_DATE='$(BUILD_DATE)' IMAGE_REPO='$(IMAGE_REPO)' IMAGE_TAG='$(IMAGE_TAG)' \
		IMAGE_PLATFORMS='$(IMAGE_PLATFORMS)' IMAGES_OPTIONAL='$(IMAGES_OPTIONAL)' PUSH='$(PUSH)' DOCKER='$(DOCKER)' hack/images.sh

generate: ## Regenerate deepcopy, conversions, defaults, clients and CRDs.
	hack/update-codegen.sh

verify: ## gofmt, go vet, go.mod tidy, and generated code current.
	hack/verify.sh

test-unit: ## Unit tests.
	GO=$(GO) hack/gotest.sh -count=1 -timeout $(UNIT_TIMEOUT) $(UNIT_PKGS)

test-integration: ## Integration tests on an in-process kube-apiserver and etcd.
	GO=$(GO) hack/gotest.sh -count=1 -timeout $(INTEGRATION_TIMEOUT) ./test/integration/...

test: test-unit test-integration ## Unit and integration tests.

fuzz: ## Every native fuzz target, FUZZTIME (default 30s) each; CI runs them for 2s.
	FUZZTIME=$(FUZZTIME) GO=$(GO) hack/fuzz.sh

demo: ## Run the demo on an embedded fake GPU cluster.
	$(GO) run ./cmd/demo

bench: bench-micro ## Go micro-benchmarks, then the placement benchmark on 100 nodes (docs/benchmark.md).
	$(GO) run ./cmd/bench --nodes 100 --json $(BIN)/bench.json

bench-micro: ## Go micro-benchmarks only (BENCH=regexp to select).
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem $(UNIT_PKGS)

bench-gang: ## Gang's PreFilter and queue sort (pkg/plugins/gang) against scheduler-plugins' Coscheduling (test/gangbench, its own module on kube-scheduler 1.34).
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./pkg/plugins/gang
	cd test/gangbench && $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem

clean: ## Remove built binaries.
	rm -rf $(BIN)
