# Developer entry points. CI runs .ci/run, which does the same steps.
# Nothing here needs Docker except `make image`.

BIN        ?= userproxy
IMAGE      ?= userproxy:dev
RULES      := deploy/prometheus/userproxy.rules.yml
RULE_TESTS := deploy/prometheus/userproxy.rules.test.yml

.PHONY: all build test lint rules deploy-test check image clean

all: lint test rules deploy-test

## build: the static binary the image ships (deploy/build.sh), as ./$(BIN) (git-ignored)
build:
	deploy/build.sh $(BIN)

## test: the proxy's tests, as the README gives them
test:
	go test -race -count=1 ./...

## lint: gofmt, go vet and staticcheck over both modules
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	go tool staticcheck ./...
	cd deploy && go vet ./...

## rules: promtool checks and unit tests of the Prometheus rules
rules:
	promtool check rules $(RULES)
	promtool test rules $(RULE_TESTS)

## deploy-test: manifests, dashboard, static build and the real-Prometheus end to end
deploy-test:
	cd deploy && go test -count=1 ./...

check: all

## image: the container image (needs a Docker engine)
image:
	docker build -f deploy/Dockerfile \
		--build-arg VERSION="$$(git describe --tags --always --dirty 2>/dev/null || echo dev)" \
		--build-arg REVISION="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
		-t $(IMAGE) .

clean:
	rm -f $(BIN)
