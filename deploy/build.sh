#!/bin/sh
# Builds the userproxy binary the container image ships: static (no cgo, no
# libc, no dynamic loader), reproducible paths (-trimpath), stripped, with
# version and revision stamped in. deploy/Dockerfile runs this very script,
# and so do `make build` and the deploy module's tests, so the binary checked
# outside Docker is the one the image contains.
#
# Usage: deploy/build.sh OUTPUT
# Environment: VERSION (default: git describe, else "dev"),
#              REVISION (default: git rev-parse HEAD, else "unknown"),
#              GOOS/GOARCH (default: the host's).
set -eu
out="${1:?usage: deploy/build.sh OUTPUT}"
cd "$(dirname "$0")/.."

if [ -z "${VERSION:-}" ]; then
	VERSION="$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
fi
if [ -z "${REVISION:-}" ]; then
	REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
fi

# -buildvcs=false: the image build has no .git (see .dockerignore); the
# revision comes from REVISION instead, the same way everywhere.
CGO_ENABLED=0 exec go build \
	-trimpath \
	-buildvcs=false \
	-ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
	-o "$out" \
	./cmd/userproxy
