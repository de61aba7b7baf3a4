# The two commands a fresh machine needs: `make run` and `make test`.
GO       ?= go
BIN      := bin/relay
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: run test build lint bench bench-compare bench-floor fuzz clean

## run: serve on :8080 with the in-process memory store (set RELAY_* to change)
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/relay serve

## test: every test, race detector on (Valkey tests start their own server)
test:
	$(GO) test -race -count=1 -timeout 14m ./...

## build: the relay binary at bin/relay
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/relay

## lint: go vet and a gofmt check
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## bench: Go benchmarks of the hot paths, allocations reported
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./...

## bench-floor: this machine's floors (bare net/http under wrk, one loop writing
## WebSocket frames to 1,000 sockets) next to the relay's ingest; Markdown on stdout
bench-floor:
	bash scripts/bench-floor.sh

## bench-compare: the relay side by side with Centrifugo; rewrites BENCHMARKS.md
bench-compare:
	bash scripts/bench-compare.sh

## fuzz: a short run of every fuzz target of every package (FUZZTIME=30s each),
## found with go test -list, so a new Fuzz* function runs without editing this
FUZZTIME ?= 30s
fuzz:
	@set -e; pkgs=$$($(GO) list ./...); for pkg in $$pkgs; do \
		list=$$($(GO) test -list '^Fuzz' $$pkg); \
		for f in $$(echo "$$list" | grep '^Fuzz' || true); do \
			echo "== $$f ($$pkg)"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin
