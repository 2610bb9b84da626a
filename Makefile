# Switchyard's entry points. `make demo` runs the main job, `make test` the
# tests; both install what they need first (scripts/ensure-deps).

SHELL := /bin/bash
GO    ?= go
BUF   := $(GO) tool -modfile=tools.mod buf

.PHONY: test lint generate check-generated demo deps build

## test: install missing deps, lint, then every test with -race (real ZooKeeper, embedded NATS)
test: deps lint
	scripts/gotest

## deps: install Java and ZooKeeper from Debian when missing
deps:
	scripts/ensure-deps

## lint: gofmt, go vet, go mod tidy, buf lint, and generated code up to date
lint:
	@echo "lint: gofmt"
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt: not formatted:"; echo "$$out"; exit 1; fi
	@echo "lint: go vet"
	@$(GO) vet ./...
	@echo "lint: go mod tidy"
	@$(GO) mod tidy -diff
	@echo "lint: buf lint"
	@$(BUF) lint
	@echo "lint: generated code"
	@scripts/check-generated

## generate: regenerate the Go code beside every .proto
generate:
	$(BUF) generate

## build: build the yard binary into bin/
build:
	$(GO) build -o bin/yard ./cmd/yard

## demo: the trade-off demos (yard demo all): RPC vs. message queue on a flash sale, side by side; charts and CSV in demo-out/
demo: deps
	$(GO) run ./cmd/yard demo all --out demo-out
