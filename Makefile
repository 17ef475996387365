# sockreap — see README.md.
GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/sockreap/sockreap/internal/cli.Version=$(VERSION)
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
TESTFLAGS ?=

.PHONY: all build test test-kernels bench demo deps install uninstall lint fuzz clean

all: build

build:
	$(GOBUILD) -o bin/sockreap-hook ./hook
	@if [ -d shim ]; then $(GOBUILD) -o bin/sockreap-shim ./shim; fi

# Installs the packages the tests need (root on Debian/Ubuntu), then runs
# every test, integration tests against the real kernel and runtimes included.
test: deps build
	$(GO) test -count=1 -timeout 80m $(TESTFLAGS) ./...

deps:
	@scripts/deps.sh

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/sockdiag

bench: deps build
	$(GO) run ./test/bench

demo: deps build
	@scripts/demo.sh

test-kernels: deps build
	$(GO) run ./test/kernels

install: build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 bin/sockreap-hook $(DESTDIR)$(BINDIR)/sockreap-hook
	@if [ -f bin/sockreap-shim ]; then install -m 0755 bin/sockreap-shim $(DESTDIR)$(BINDIR)/sockreap-shim; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sockreap-hook $(DESTDIR)$(BINDIR)/sockreap-shim

clean:
	rm -rf bin
