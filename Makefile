# berth: build, test and run the Kubernetes container runtime.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:/usr/local/bin:$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
BIN := $(CURDIR)/bin
GO_TEST_FLAGS ?= -count=1 -timeout 60m

.PHONY: all build deps test unit integration run lint critest bench clean

all: build

deps:
	bash hack/install-deps.sh

build:
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# Unit tests, then end-to-end tests against real berthd daemons.
test: deps build lint unit integration

unit:
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v /test/)

integration: build
	BERTH_BIN_DIR=$(BIN) go test $(GO_TEST_FLAGS) ./test/...

# Runs berthd in the foreground with the default configuration.
run: deps build
	bash hack/setup-default.sh
	$(BIN)/berthd $(BERTHD_FLAGS)

lint:
	go vet ./...
	staticcheck ./...

critest:
	@echo "critest: not yet (see the conformance issue)"

# CRI benchmarks against a berthd on temp dirs, or BENCH_ENDPOINT=unix://...
bench: build
	bash hack/bench.sh $(BENCH_ARGS)

clean:
	rm -rf $(BIN)
