# sockreap — see README.md.
GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/sockreap/sockreap/internal/cli.Version=$(VERSION)
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
TESTFLAGS ?=

.PHONY: all build image test test-kernels bench demo deps install uninstall lint fuzz clean

all: build

build:
	$(GOBUILD) -o bin/sockreap-hook ./hook
	$(GOBUILD) -o bin/sockreap-shim ./shim
	$(GOBUILD) -o bin/sockreap-nri ./nri

# Installs the packages the tests need (root on Debian/Ubuntu), then runs
# every test, integration tests against the real kernel and runtimes included.
# The libraries run under the race detector. The suites under test/ start
# real daemons and containers and time how soon namespaces are freed, so
# they run one package at a time: another suite's namespace churn would
# slow the kernel's namespace cleanup they measure.
# A container image without a container engine (no docker build, no
# registry): bin/sockreap-image.tar, for `ctr -n k8s.io images import` or
# `docker load`; deploy/kubernetes runs it.
IMAGE ?= sockreap/sockreap:local
image: build
	$(GO) run ./scripts/image -o bin/sockreap-image.tar -tag $(IMAGE) bin/sockreap-hook bin/sockreap-shim bin/sockreap-nri

test: deps build
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m $(TESTFLAGS) ./internal/... ./hook/... ./shim/...
	$(GO) test -p 1 -count=1 -timeout 60m $(TESTFLAGS) ./test/...

deps:
	@scripts/deps.sh
	@scripts/cri-deps.sh

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/sockdiag

# Drain speed against ss -K and no drainer, the hooks' added latency on
# runc run+delete cycles, then crictl stopp of pods on containerd 2.2 with
# and without draining, the safety check and drain on a node-like host
# (busynode: up to 3,000 background processes, 30,000 threads) and the
# hooks' latency again under that load, each both for a namespace runc
# makes (createRuntime pins) and for one config.json names (poststop
# alone, -named-netns); see docs/bench.md. The CRI bench puts itself into
# a container image, so it is built static.
bench: deps build
	$(GO) run ./test/bench
	$(GO) run ./test/bench/hooklatency -hook bin/sockreap-hook -steps
	$(GO) run ./test/bench/hooklatency -hook bin/sockreap-hook -steps -named-netns
	CGO_ENABLED=0 $(GO) run ./test/bench/cri -hook bin/sockreap-hook -shim bin/sockreap-shim -nri bin/sockreap-nri
	$(GO) run ./test/bench/nri -nri bin/sockreap-nri
	$(GO) run ./test/bench/busynode -hook bin/sockreap-hook
	$(GO) run ./test/bench/hooklatency -hook bin/sockreap-hook -load 3000
	$(GO) run ./test/bench/hooklatency -hook bin/sockreap-hook -load 3000 -named-netns

demo: deps build
	@scripts/demo.sh

test-kernels: deps build
	$(GO) run ./test/kernels

# install: the binaries, the systemd units (gc's and its timer, the NRI
# plugin's, not enabled; deploy/systemd) and
# the hooks.d files (deploy/hooks.d) with their paths pointed at BINDIR.
# Engines are configured separately: sockreap-hook configure docker|containerd|crio|hooksd.
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
HOOKSDIR   ?= /etc/containers/oci/hooks.d
UNITS      := $(wildcard deploy/systemd/*.service deploy/systemd/*.timer)
HOOKFILES  := $(wildcard deploy/hooks.d/*.json)

install: build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 bin/sockreap-hook $(DESTDIR)$(BINDIR)/sockreap-hook
	install -m 0755 bin/sockreap-shim $(DESTDIR)$(BINDIR)/sockreap-shim
	install -m 0755 bin/sockreap-nri $(DESTDIR)$(BINDIR)/sockreap-nri
	install -d $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(HOOKSDIR)
	@set -e; for f in $(UNITS); do \
		sed 's|/usr/local/bin/|$(BINDIR)/|g' $$f > $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$f); \
		chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$f); echo "installed $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$f)"; done
	@set -e; for f in $(HOOKFILES); do \
		sed 's|/usr/local/bin/|$(BINDIR)/|g' $$f > $(DESTDIR)$(HOOKSDIR)/$$(basename $$f); \
		chmod 0644 $(DESTDIR)$(HOOKSDIR)/$$(basename $$f); echo "installed $(DESTDIR)$(HOOKSDIR)/$$(basename $$f)"; done
	@echo "next: systemctl daemon-reload && systemctl enable --now $(notdir $(filter %.timer,$(UNITS)))"
	@echo "      then configure your engine: $(BINDIR)/sockreap-hook configure docker|containerd|crio (see README.md)"
	@echo "      or, on a Kubernetes node with NRI: systemctl enable --now sockreap-nri (docs/kubernetes.md)"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sockreap-hook $(DESTDIR)$(BINDIR)/sockreap-shim $(DESTDIR)$(BINDIR)/sockreap-nri
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDDIR)/,$(notdir $(UNITS)))
	rm -f $(addprefix $(DESTDIR)$(HOOKSDIR)/,$(notdir $(HOOKFILES)))
	@echo "engine configurations still name sockreap; take it out with (each keeps a .sockreap-bak.* backup):"
	@echo "  sockreap-hook configure docker --remove --reload"
	@echo "  sockreap-hook configure containerd --remove && systemctl restart containerd"
	@echo "  sockreap-hook configure crio --remove && systemctl restart crio"
	@echo "  sockreap-hook configure hooksd --remove"
	@echo "(the installed sockreap-hook is gone now: run them as ./bin/sockreap-hook from this tree)"

clean:
	rm -rf bin
