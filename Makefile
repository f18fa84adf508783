# berth: build, test and run the Kubernetes container runtime.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:/usr/local/bin:$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
BIN := $(CURDIR)/bin
GO_TEST_FLAGS ?= -count=1 -timeout 60m

.PHONY: all build deps deps-run deps-test test unit integration run lint critest critest-guard bench clean test-images registry-start registry-stop

all: build

# What berthd needs to build and run (Debian packages, crictl): make run.
deps-run:
	bash hack/install-deps.sh run

# That and the test toolchain (test images' packages, QEMU and a kernel for
# the VM tests, critest, staticcheck): make test. deps means everything.
deps-test:
	bash hack/install-deps.sh test

deps: deps-test

build:
	go build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...
	$(MAKE) --no-print-directory $(BIN)/berth-mon

# berth-mon: the C monitor an idle berth-shim becomes (docs/design.md, "The
# C monitor"); static, so that it needs nothing from the node at exec. It
# also links runtime/nsenter's C code: a shim starts it instead of itself to
# finish an exec from a plan (docs/design.md, "Exec without a Go runtime").
MON_SRC := $(wildcard cmd/berth-mon/*.c cmd/berth-mon/*.h) runtime/nsenter/nsenter.c runtime/nsenter/execplan.c runtime/nsenter/spawn.c runtime/nsenter/spawn.h runtime/nsenter/execplan.h
$(BIN)/berth-mon: $(MON_SRC)
	mkdir -p $(BIN)
	gcc -O2 -static -Wall -Wextra -Werror -o $@ $(filter %.c,$(MON_SRC))

# Unit tests, then end-to-end tests against real berthd daemons, then the
# critest suite less skip.txt and pending.txt (about two minutes), then the node
# e2e suite's CI subset with the real kubelet (node-e2e-ci: 18 specs, about 2
# minutes once e2e_node.test is cached), then the VM checks and critest in
# the cgroup v2 VMs (test-vm-ci-critest).
test: deps-test build lint unit integration critest-guard node-e2e-ci test-vm-ci-critest

unit:
	go test $(GO_TEST_FLAGS) $$(go list ./... | grep -v /test/)

integration: build test-images kubelet
	BERTH_BIN_DIR=$(BIN) BERTH_KUBELET=$(KUBELET) go test $(GO_TEST_FLAGS) ./test/...

# The upstream kubelet that test/integration/kubelet_test.go runs standalone
# against berthd: module test/kubelet (k8s.io/kubernetes from the Go module
# proxy) built into /var/cache/berth/kubelet/<hash of its inputs>/ (outside
# the checkout, so that CI's fresh clones reuse it; BERTH_CACHE_DIR moves
# it), again only when that module changes.
KUBELET = $(shell bash hack/build-kubelet.sh --print-path)
.PHONY: kubelet
kubelet:
	bash hack/build-kubelet.sh

# The tests again inside cgroup v2 VMs under QEMU (hack/vm): a small
# initramfs guest and a Debian guest with systemd as PID 1, one boot each.
# Knobs (packages, -test.run, variants, scripts): hack/vm/test.sh.
.PHONY: test-vm test-vm-ci test-vm-critest test-vm-critest-systemd test-vm-ci-critest
test-vm: build test-images
	bash hack/vm/test.sh

# The short test-vm (a few minutes): the VM checks of test/vm, the cgroup
# packages' tests and the integration tests matching TEST_VM_CI_RUN, in both
# variants; make test runs them with critest (test-vm-ci-critest). Add the
# tests that must pass on cgroup v2 and under systemd to it. The v2 ones: limits, cgroup namespace, devices,
# update, stats, stop, OOMKilled and removal through the CRI with one berthd
# (CgroupV2Resources), OOM kills in the shim and the runtime; and pods with
# user namespaces on the guests' older kernel (Debian 12's).
# RuntimeExecPlan, ExecSyncServedByMonitor: an exec spawned into a v2 cgroup
# (CLONE_INTO_CGROUP) by the Go shim and by berth-mon.
# PodSandboxResize: in-place pod resize on both drivers. CheckpointContainer:
# the CRIU round trip, which Debian 12's CRIU cannot do on a host kernel
# newer than the guests' 6.1 (the host test checks refusals).
TEST_VM_CI_RUN ?= CgroupVersion|SystemdCgroupDriver|CgroupV2Resources|RuntimeExecPlan|ExecSyncServedByMonitor|ShimContainerOOM|RuntimeOOMKill|RuntimeCgroupNamespace|UserNamespace|PodSandboxResize|CheckpointContainer
TEST_VM_CI_PKGS = ./test/vm ./runtime/cgroups ./sandbox ./test/integration:$(TEST_VM_CI_RUN)
test-vm-ci: build test-images
	BERTH_VM_PKGS="$(TEST_VM_CI_PKGS)" bash hack/vm/test.sh

# critest's guard run inside the cgroup v2 initramfs VM, berthd with the
# cgroupfs driver: the same 127 specs pass as on the host (critest about 8
# minutes under emulation).
VM_CRITEST_INITRAMFS = BERTH_VM_VARIANTS=initramfs BERTH_VM_ENV="BERTH_CRITEST BERTH_CRITEST_CGROUP_DRIVER" \
	BERTH_CRITEST=guard BERTH_CRITEST_CGROUP_DRIVER=cgroupfs BERTH_VM_TEST_TIMEOUT=45m
test-vm-critest: build test-images
	$(VM_CRITEST_INITRAMFS) BERTH_VM_PKGS=./test/critest bash hack/vm/test.sh

# critest's pod and container lifecycle (and idempotence), stats and OOM
# specs in the systemd VM, berthd with the systemd cgroup driver: 28 specs,
# critest about 2 minutes; the runner fails unless RuntimeConfig says
# systemd and the pods were systemd scopes (none a cgroupfs dir).
CRITEST_SYSTEMD_FOCUS = \[k8s\.io\] (PodSandbox runtime should support (basic|metrics) operations|Container runtime should support basic operations on container|Container OOM|Idempotence)
VM_CRITEST_SYSTEMD = BERTH_VM_VARIANTS=systemd BERTH_VM_ENV="BERTH_CRITEST BERTH_CRITEST_CGROUP_DRIVER BERTH_CRITEST_FOCUS" \
	BERTH_CRITEST=guard BERTH_CRITEST_CGROUP_DRIVER=systemd BERTH_CRITEST_FOCUS='$(CRITEST_SYSTEMD_FOCUS)' BERTH_VM_TEST_TIMEOUT=45m
test-vm-critest-systemd: build test-images
	$(VM_CRITEST_SYSTEMD) BERTH_VM_PKGS=./test/critest bash hack/vm/test.sh

# make test's VM part: test-vm-ci and the two critest runs above, one boot
# per variant, one after the other; both run even when the first fails.
# About 14 minutes (initramfs 10, systemd 4.5). Both variants at once took
# 13: QEMU's TCG already keeps about 1.3 of the 2 cores busy per VM.
test-vm-ci-critest: build test-images
	rc=0; \
	$(VM_CRITEST_INITRAMFS) BERTH_VM_PKGS="$(TEST_VM_CI_PKGS) ./test/critest" bash hack/vm/test.sh || rc=1; \
	$(VM_CRITEST_SYSTEMD) BERTH_VM_PKGS="$(TEST_VM_CI_PKGS) ./test/critest" bash hack/vm/test.sh || rc=1; \
	exit $$rc

# Kubernetes' node e2e suite (e2e_node.test of test/e2enode's k8s.io/kubernetes)
# with the real kubelet against a berthd of its own: hack/node-e2e.sh. The
# default set is [NodeConformance] less [Flaky]|[Slow]|[Serial] and
# test/e2enode/skip.txt; NODE_E2E_FOCUS / NODE_E2E_SKIP pick others (e.g.
# NODE_E2E_FOCUS='\[Serial\]' NODE_E2E_SKIP= NODE_E2E_PROCS=1). The suite,
# agnhost and ginkgo are built once per module change into
# /var/cache/berth/node-e2e (a cold build takes most of an hour on 2 busy
# cores). JUnit, JSON report, logs and summary.txt in _output/node-e2e/.
.PHONY: node-e2e node-e2e-ci
node-e2e: build kubelet
	BERTH_BIN_DIR=$(BIN) BERTH_KUBELET=$(KUBELET) bash hack/node-e2e.sh

# A subset of the default set (about 2 minutes once built; part of make
# test): one or two
# specs of each area, see NODE_E2E_CI_FOCUS in hack/node-e2e-ci.sh.
node-e2e-ci: build kubelet
	BERTH_BIN_DIR=$(BIN) BERTH_KUBELET=$(KUBELET) bash hack/node-e2e-ci.sh

# Runs berthd in the foreground with the default configuration.
run: deps-run build
	bash hack/setup-default.sh
	$(BIN)/berthd $(BERTHD_FLAGS)

# Test images (critest's, the benchmark image, berth's fixtures), built once
# from Debian's busybox into _output/testimages/<hash of inputs>/.
test-images:
	go run ./hack/testimages build

# A local registry with the test images in the background, and the
# hosts.toml dir for berthd --registry-config-dir (see hack/registry.sh).
registry-start:
	bash hack/registry.sh start

registry-stop:
	bash hack/registry.sh stop

lint:
	bash hack/check-gofmt.sh
	bash hack/check-layers.sh
	bash hack/check-file-length.sh
	go vet ./...
	staticcheck ./...

# The whole critest suite against a berthd on temp dirs with its own registry
# and CNI network, skipping only test/critest/skip.txt: the real count.
# Output, JSON report, berthd log and summary in _output/critest/.
critest: deps-test build test-images
	cd test/critest && BERTH_BIN_DIR=$(BIN) BERTH_CRITEST=full go test -count=1 -timeout 90m -v -run '^TestCritest$$' .

# The same, also skipping test/critest/pending.txt (what does not pass yet):
# a regression guard that must stay green.
critest-guard: build test-images
	cd test/critest && BERTH_BIN_DIR=$(BIN) BERTH_CRITEST=guard go test -count=1 -timeout 45m -v -run '^TestCritest$$' .

# CRI benchmarks against a berthd on temp dirs, or BENCH_ENDPOINT=unix://...
bench: build
	bash hack/bench.sh $(BENCH_ARGS)

clean:
	rm -rf $(BIN)

# Resets the node after make run: removes berthd's state and root dirs, the
# berth0 bridge and its iptables rules, and the CNI config setup-default.sh
# wrote; refuses while any pod exists (README, "Reset a node").
.PHONY: clean-node
clean-node:
	bash hack/clean-node.sh

# Install on a node (README, "Install on a node"): berthd, berth-shim and berth-mon in
# $(BINDIR), berth.service in $(UNITDIR), /etc/berth/config.toml (berthd
# config default) only when there is none, and the default CNI network
# /etc/cni/net.d/99-berth.conflist only when that dir holds no config.
# DESTDIR stages it. make deb: the same as a Debian package, built with
# dpkg-deb into _output/deb/ (hack/install/build-deb.sh). make uninstall
# removes the binaries and the unit, never the config or the pods' data.
# The systemd VM of make test (test-vm-ci-critest) installs the package and
# restarts, stops, kills and upgrades berth.service under a running pod
# (test/vm TestInstalledService), then runs the real kubelet with a static
# pod on it (about a minute): hack/vm/test.sh builds the .deb for it and
# finds (or builds) the kubelet with hack/build-kubelet.sh whenever test/vm
# runs in that variant (no extra boot).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
.PHONY: install uninstall deb
install: build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" BINDIR="$(BINDIR)" UNITDIR="$(UNITDIR)" BIN="$(BIN)" \
		bash hack/install/install.sh

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/berthd $(DESTDIR)$(BINDIR)/berth-shim $(DESTDIR)$(BINDIR)/berth-mon $(DESTDIR)$(UNITDIR)/berth.service \
		$(DESTDIR)$(PREFIX)/share/berth/99-berth.conflist
	-rmdir $(DESTDIR)$(PREFIX)/share/berth 2>/dev/null

deb: build
	BIN="$(BIN)" bash hack/install/build-deb.sh
