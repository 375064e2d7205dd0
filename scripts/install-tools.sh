#!/usr/bin/env bash
# Builds the real tools the tests (and `modelplat lint`) run, from their Go modules at pinned
# versions, into a cache outside the clone. A tool already built at its version is skipped, so a
# warm run costs nothing. Prebuilt-binary downloads are deliberately not used: only the Go module
# proxy is reachable from CI machines, and a pinned source build is reproducible anyway.
#
# Usage: scripts/install-tools.sh [tool...]      (default: every tool below)
# Prints the bin directory on its last line; put it on PATH or pass MODELPLAT_TOOLS_DIR.
set -euo pipefail

CACHE="${MODELPLAT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplat-tools}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.7.0
HELM_UNITTEST_VERSION=v1.1.2
# Prometheus publishes its Go module as v0.3xx (v0.316.0 is Prometheus 3.16).
PROMTOOL_VERSION=v0.316.0

log() { printf '[install-tools] %s\n' "$*" >&2; }

need_go() {
  command -v go >/dev/null 2>&1 || { log "error: 'go' is required to build the pinned tools"; exit 2; }
}

# Each tool lands in $CACHE/<tool>-<version>/ and is linked into $BIN, so changing a pin
# rebuilds that tool and leaves the others alone.
installed() { [ -x "$CACHE/$1-$2/$1" ]; }
link() { ln -sfn "$CACHE/$1-$2/$1" "$BIN/$1"; }

install_helm() {
  installed helm "$HELM_VERSION" || {
    need_go; log "building helm $HELM_VERSION (cold: ~2 min)"
    # Without the ldflags `helm version` prints only the major.minor (Go module builds lack it).
    GOBIN="$CACHE/helm-$HELM_VERSION" go install \
      -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  }
  link helm "$HELM_VERSION"
}

install_kubeconform() {
  installed kubeconform "$KUBECONFORM_VERSION" || {
    need_go; log "building kubeconform $KUBECONFORM_VERSION"
    GOBIN="$CACHE/kubeconform-$KUBECONFORM_VERSION" go install \
      "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  }
  link kubeconform "$KUBECONFORM_VERSION"
}

install_helm_unittest() {
  installed helm-unittest "$HELM_UNITTEST_VERSION" || {
    need_go; log "building helm-unittest $HELM_UNITTEST_VERSION"
    # `go install` refuses this module (its go.mod has a replace directive), so build it as
    # the main module from a writable copy of the downloaded source.
    local src tmp
    src=$(go mod download -json "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    cp -r "$src/." "$tmp/"
    chmod -R u+w "$tmp"
    (cd "$tmp" && go build -o "$CACHE/helm-unittest-$HELM_UNITTEST_VERSION/helm-unittest" ./cmd/helm-unittest)
  }
  link helm-unittest "$HELM_UNITTEST_VERSION"
}

install_promtool() {
  installed promtool "$PROMTOOL_VERSION" || {
    need_go; log "building promtool $PROMTOOL_VERSION (cold: ~5 min)"
    GOBIN="$CACHE/promtool-$PROMTOOL_VERSION" go install \
      "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  }
  link promtool "$PROMTOOL_VERSION"
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(kubeconform helm-unittest helm promtool)
for t in "${tools[@]}"; do
  case "$t" in
    helm) install_helm ;;
    kubeconform) install_kubeconform ;;
    helm-unittest) install_helm_unittest ;;
    promtool) install_promtool ;;
    *) log "unknown tool: $t"; exit 2 ;;
  esac
done
echo "$BIN"
