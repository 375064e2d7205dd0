#!/usr/bin/env bash
# Builds the real tools the tests (and `modelplat lint`) run, from their Go modules at pinned
# versions, into a cache outside the clone. A tool already built at its version is skipped, so a
# warm run costs nothing. Prebuilt-binary downloads are deliberately not used: only the Go module
# proxy is reachable from CI machines, and a pinned source build is reproducible anyway.
#
# Usage: install-tools.sh [tool...]      (default: every tool below; `modelplat tools install`
# runs it from the installed package). Pins: pins.env beside it.
# Prints the bin directory on its last line; put it on PATH or pass MODELPLAT_TOOLS_DIR.
set -euo pipefail

CACHE="${MODELPLAT_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplat-tools}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=pins.env
. "$HERE/pins.env"

# Every build uses the same flags, so packages two tools share (Istio for istioctl and
# sidecar-config, Kubernetes libraries at the same version) compile once into the Go build cache;
# no debug info is linked (the tools are run, never debugged: ~30% of a large link).
GO_BUILD=(-trimpath -ldflags "-s -w")

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
    GOBIN="$CACHE/helm-$HELM_VERSION" go install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  }
  link helm "$HELM_VERSION"
}

install_kubeconform() {
  installed kubeconform "$KUBECONFORM_VERSION" || {
    need_go; log "building kubeconform $KUBECONFORM_VERSION"
    GOBIN="$CACHE/kubeconform-$KUBECONFORM_VERSION" go install "${GO_BUILD[@]}" \
      "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  }
  link kubeconform "$KUBECONFORM_VERSION"
}

install_helm_unittest() {
  installed helm-unittest "$HELM_UNITTEST_VERSION" || {
    need_go; log "building helm-unittest $HELM_UNITTEST_VERSION"
    # `go install` refuses this module (its go.mod has a replace directive), so build it as
    # the main module from a writable copy of the downloaded source.
    local tmp
    tmp=$(module_copy "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION")
    trap 'rm -rf "${tmp:-}"' RETURN
    (cd "$tmp" && go build "${GO_BUILD[@]}" -o "$CACHE/helm-unittest-$HELM_UNITTEST_VERSION/helm-unittest" ./cmd/helm-unittest)
  }
  link helm-unittest "$HELM_UNITTEST_VERSION"
}

install_promtool() {
  installed promtool "$PROMTOOL_VERSION" || {
    need_go; log "building promtool $PROMTOOL_VERSION (cold: ~5 min)"
    # remove_all_sd leaves out Prometheus's service-discovery plugins (cloud SDKs): promtool
    # checks and tests rule files here, which needs none of them (a fifth of its packages).
    GOBIN="$CACHE/promtool-$PROMTOOL_VERSION" go install "${GO_BUILD[@]}" -tags remove_all_sd \
      "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  }
  link promtool "$PROMTOOL_VERSION"
}

install_istioctl() {
  installed istioctl "$ISTIOCTL_VERSION" || {
    need_go; log "building istioctl $ISTIOCTL_VERSION (cold: ~5-8 min)"
    GOBIN="$CACHE/istioctl-$ISTIOCTL_VERSION" go install "${GO_BUILD[@]}" "istio.io/istio/istioctl/cmd/istioctl@$ISTIOCTL_VERSION"
  }
  link istioctl "$ISTIOCTL_VERSION"
}

install_kustomize() {
  installed kustomize "$KUSTOMIZE_VERSION" || {
    need_go; log "building kustomize $KUSTOMIZE_VERSION"
    GOBIN="$CACHE/kustomize-$KUSTOMIZE_VERSION" go install "${GO_BUILD[@]}" "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  }
  link kustomize "$KUSTOMIZE_VERSION"
}

install_ratelimit() {
  # The binary is called service_cmd upstream; it is linked as `ratelimit`.
  [ -x "$CACHE/ratelimit-$RATELIMIT_VERSION/service_cmd" ] || {
    need_go; log "building envoyproxy/ratelimit $RATELIMIT_VERSION (cold: ~1 min)"
    GOBIN="$CACHE/ratelimit-$RATELIMIT_VERSION" go install "${GO_BUILD[@]}" \
      "github.com/envoyproxy/ratelimit/src/service_cmd@$RATELIMIT_VERSION"
  }
  ln -sfn "$CACHE/ratelimit-$RATELIMIT_VERSION/service_cmd" "$BIN/ratelimit"
}

install_redis() {
  # Redis is not a Go module: it comes from the distribution's package (Debian/Ubuntu).
  local found
  found=$(command -v redis-server || true)
  if [ -z "$found" ]; then
    command -v apt-get >/dev/null 2>&1 || { log "error: redis-server is missing and apt-get is not available"; exit 2; }
    log "installing redis-server (Debian package)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 ||
      { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends redis-server >/dev/null; }
    found=$(command -v redis-server)
  fi
  ln -sfn "$found" "$BIN/redis-server"
}

# kube-apiserver and kubectl: neither `go install` works (replace directives; the kubernetes
# module zip lacks its staging modules), so build them from a throwaway wrapper module whose
# replace block points every staging module at its published v0.X.Y.
install_kubernetes() {
  local k8s_bins="kube-apiserver kubectl kube-controller-manager" b
  if installed kube-apiserver "$KUBERNETES_VERSION" && installed kubectl "$KUBERNETES_VERSION" &&
    installed kube-controller-manager "$KUBERNETES_VERSION"; then
    for b in $k8s_bins; do link "$b" "$KUBERNETES_VERSION"; done; return
  fi
  need_go; log "building kube-apiserver, kube-controller-manager and kubectl $KUBERNETES_VERSION (cold: ~7 min, ~2 GB RAM)"
  local tmp minor staging ldf kv
  tmp=$(mktemp -d)
  trap 'rm -rf "${tmp:-}"' RETURN
  minor="v0.${KUBERNETES_VERSION#v1.}"
  staging=$(cd "$tmp" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  python3 - "$staging" "$minor" "$KUBERNETES_VERSION" "$tmp" <<'PY'
import re, sys
gomod, minor, version, tmp = sys.argv[1:]
mods = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", open(gomod).read(), re.M)) - {"k8s.io/sample-cli-plugin"})
with open(f"{tmp}/go.mod", "w") as f:
    f.write(f"module k8swrap\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes {version}\n\nreplace (\n")
    f.writelines(f"\t{m} => {m} {minor}\n" for m in mods)
    f.write(")\n")
with open(f"{tmp}/tools.go", "w") as f:
    f.write('//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n)\n')
PY
  ldf="-s -w"
  for kv in "gitVersion=$KUBERNETES_VERSION" "gitMajor=1" "gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)" "gitTreeState=clean"; do
    ldf="$ldf -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  (cd "$tmp" && go mod tidy >/dev/null 2>&1 &&
    for b in $k8s_bins; do
      installed "$b" "$KUBERNETES_VERSION" && continue
      mkdir -p "$CACHE/$b-$KUBERNETES_VERSION" &&
        go build -trimpath -ldflags "$ldf" -o "$CACHE/$b-$KUBERNETES_VERSION/$b.tmp" "k8s.io/kubernetes/cmd/$b" &&
        mv "$CACHE/$b-$KUBERNETES_VERSION/$b.tmp" "$CACHE/$b-$KUBERNETES_VERSION/$b" || exit 1
    done)
  for b in $k8s_bins; do link "$b" "$KUBERNETES_VERSION"; done
}

install_etcd() {
  installed etcd "$ETCD_VERSION" || {
    need_go; log "building etcd $ETCD_VERSION (cold: ~1.5 min)"
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "${tmp:-}"' RETURN
    printf 'module etcdwrap\n\ngo 1.26.0\n' >"$tmp/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$tmp/tools.go"
    (cd "$tmp" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 &&
      go build "${GO_BUILD[@]}" -o "$CACHE/etcd-$ETCD_VERSION/etcd" go.etcd.io/etcd/server/v3)
  }
  link etcd "$ETCD_VERSION"
}

# A writable copy of a downloaded Go module, for modules that must be built as the main module
# (their go.mod has replace directives, so `go install` refuses them). Prints the copy's path.
module_copy() {
  local src tmp
  src=$(go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  tmp=$(mktemp -d)
  cp -r "$src/." "$tmp/"
  chmod -R u+w "$tmp"
  echo "$tmp"
}

# Builds BINARY into DIR from a writable copy of MODULE (module_copy) and keeps the module's
# folder DATA beside it as DIR/DATA_NAME. PREPARE (a function, or `true`) runs in the copy
# before the build, for go.mod edits. More BINARY PACKAGE pairs after the first build from the
# same copy. Usage: build_from_copy DIR BINARY MODULE DATA DATA_NAME PREPARE PACKAGE [BINARY PACKAGE]...
build_from_copy() {
  local dir=$1 binary=$2 module=$3 data=$4 data_name=$5 prepare=$6 package=$7 tmp
  shift 7
  tmp=$(module_copy "$module")
  trap 'rm -rf "${tmp:-}"' RETURN
  mkdir -p "$dir"
  (cd "$tmp" && "$prepare" && go build "${GO_BUILD[@]}" -o "$dir/$binary.tmp" "$package" &&
    while [ $# -ge 2 ]; do go build "${GO_BUILD[@]}" -o "$dir/$1.tmp" "$2" || exit 1; shift 2; done)
  rm -rf "${dir:?}/$data_name" && cp -r "$tmp/$data" "$dir/$data_name"
  mv "$dir/$binary.tmp" "$dir/$binary"
  while [ $# -ge 2 ]; do mv "$dir/$1.tmp" "$dir/$1"; shift 2; done
}

# KServe's controller manager and its LLMInferenceService controller (cmd/llmisvc), built from one
# copy of the module, with the module's own config/ (CRDs, the inferenceservice-config ConfigMap,
# serving runtimes, the llmisvc presets, webhook configurations) kept beside them: the engines
# harness installs exactly what this version ships.
install_kserve() {
  local dir="$CACHE/kserve-$KSERVE_VERSION"
  if ! { [ -x "$dir/manager" ] && [ -x "$dir/llmisvc" ] && [ -d "$dir/config" ]; }; then
    need_go; log "building the KServe $KSERVE_VERSION controllers (cold: ~7 min, llmisvc ~3 min more)"
    build_from_copy "$dir" manager "github.com/kserve/kserve@$KSERVE_VERSION" config config \
      true ./cmd/manager llmisvc ./cmd/llmisvc
  fi
  module_crds "sigs.k8s.io/lws@$LWS_VERSION" config/crd/bases "$dir/crds-lws-$LWS_VERSION"
  module_crds "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" config/crd/standard \
    "$dir/crds-gateway-api-$GATEWAY_API_VERSION"
}

# Copies a module's CRD folder FOLDER to DEST (once): CRDs the engines install, at a pinned version.
module_crds() {
  local module=$1 folder=$2 dest=$3 src
  [ -d "$dest" ] && return
  need_go
  src=$(go mod download -json "$module" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$dest.tmp" && cp -r "$src/$folder" "$dest.tmp" && chmod -R u+w "$dest.tmp" && mv "$dest.tmp" "$dest"
}

link_kserve() {
  ln -sfn "$CACHE/kserve-$KSERVE_VERSION/manager" "$BIN/kserve-manager"
  ln -sfn "$CACHE/kserve-$KSERVE_VERSION/llmisvc" "$BIN/kserve-llmisvc"
}

# Flux's controllers. The `api` nested module is not in the module zip: drop the replace that
# points at it so the published api module of the same version is used.
flux_controller() {
  local name=$1 version=$2 dir="$CACHE/$1-$2"
  [ -x "$dir/$name" ] && [ -d "$dir/crds" ] && return
  need_go; log "building Flux $name $version (cold: ~3-4 min)"
  build_from_copy "$dir" "$name" "github.com/fluxcd/$name@$version" config/crd/bases crds flux_prepare .
}

# Runs in the module copy of a Flux controller ($name: flux_controller's): the edited go.mod
# takes module resolution (GOFLAGS=-mod=mod, for this build's subshell only).
flux_prepare() {
  go mod edit -dropreplace "github.com/fluxcd/$name/api" || return
  if [ "$name" = source-controller ]; then
    # The proxy refuses the zips of fluxcd/pkg/artifact v0.18.2 and v0.18.3.
    go mod edit -require=github.com/fluxcd/pkg/artifact@v0.18.1 || return
  fi
  export GOFLAGS=-mod=mod
}

install_flux() {
  flux_controller source-controller "$SOURCE_CONTROLLER_VERSION"
  flux_controller kustomize-controller "$KUSTOMIZE_CONTROLLER_VERSION"
  flux_controller helm-controller "$HELM_CONTROLLER_VERSION"
  local c v
  for c in source-controller:$SOURCE_CONTROLLER_VERSION kustomize-controller:$KUSTOMIZE_CONTROLLER_VERSION \
    helm-controller:$HELM_CONTROLLER_VERSION; do
    v=${c#*:}; c=${c%%:*}; link "$c" "$v"
  done
}

# A Go main module of this checkout (a folder with its go.mod and go.sum), built into
# $CACHE/<name>-<version>/: build_local NAME SOURCE VERSION MESSAGE.
build_local() {
  local name=$1 src=$2 version=$3 tmp
  installed "$name" "$version" || {
    need_go; log "$4"
    tmp=$(mktemp -d)
    trap 'rm -rf "${tmp:-}"' RETURN
    cp -r "$src/." "$tmp/"
    (cd "$tmp" && go build "${GO_BUILD[@]}" -o "$CACHE/$name-$version/$name.tmp" .)
    mv "$CACHE/$name-$version/$name.tmp" "$CACHE/$name-$version/$name"
  }
  link "$name" "$version"
}

# What identifies a local module's build: its sources.
source_sum() { cat "$1"/*.go "$1/go.mod" "$1/go.sum" | sha256sum | cut -c1-12; }

# Istio's own config generation (sidecar-config/ beside this script), at istioctl's Istio.
install_sidecar_config() {
  local src="$HERE/sidecar-config"
  build_local sidecar-config "$src" "$ISTIOCTL_VERSION-$(source_sum "$src")" \
    "building sidecar-config against Istio $ISTIOCTL_VERSION (cold: ~3 min after istioctl)"
}

# The tests' ext_proc harness (tests/extproc in a clone: Envoy's generated types, a screening
# server and Envoy's client side, see its main.go). An installed package has no tests: nothing to build.
install_extproc_harness() {
  local src="$HERE/../tests/extproc"
  if [ ! -f "$src/main.go" ]; then log "extproc-harness: no tests/extproc here (a clone's tests only)"; return 0; fi
  build_local extproc-harness "$src" "$(source_sum "$src")" "building extproc-harness (cold: ~1 min)"
}

install_actionlint() {
  installed actionlint "$ACTIONLINT_VERSION" || {
    need_go; log "building actionlint $ACTIONLINT_VERSION"
    GOBIN="$CACHE/actionlint-$ACTIONLINT_VERSION" go install "${GO_BUILD[@]}" \
      "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  }
  link actionlint "$ACTIONLINT_VERSION"
}

install_one() {
  case "$1" in
    helm) install_helm ;;
    kubeconform) install_kubeconform ;;
    helm-unittest) install_helm_unittest ;;
    promtool) install_promtool ;;
    istioctl) install_istioctl ;;
    kustomize) install_kustomize ;;
    ratelimit) install_ratelimit ;;
    redis) install_redis ;;
    kubernetes | kube-apiserver | kubectl | kube-controller-manager) install_kubernetes ;;
    etcd) install_etcd ;;
    kserve) install_kserve; link_kserve ;;
    flux) install_flux ;;
    source-controller) flux_controller source-controller "$SOURCE_CONTROLLER_VERSION"
      link source-controller "$SOURCE_CONTROLLER_VERSION" ;;
    kustomize-controller) flux_controller kustomize-controller "$KUSTOMIZE_CONTROLLER_VERSION"
      link kustomize-controller "$KUSTOMIZE_CONTROLLER_VERSION" ;;
    helm-controller) flux_controller helm-controller "$HELM_CONTROLLER_VERSION"
      link helm-controller "$HELM_CONTROLLER_VERSION" ;;
    sidecar-config) install_sidecar_config ;;
    actionlint) install_actionlint ;;
    extproc-harness) install_extproc_harness ;;
    *) log "unknown tool: $1"; exit 2 ;;
  esac
}

# Every tool, longest cold build first (figures: docs/performance.md). sidecar-config comes
# late: it waits for istioctl (when both are built), whose compiled Istio packages it reuses.
ALL_TOOLS="kubernetes istioctl promtool source-controller kserve kustomize-controller helm-controller
  helm etcd helm-unittest sidecar-config ratelimit extproc-harness actionlint kustomize kubeconform redis"
ALL_TOOLS=$(echo $ALL_TOOLS)  # one space between names

# The build unit of a tool name (the three Kubernetes binaries are one build, ...).
unit() {
  case "$1" in
    kube-apiserver | kubectl | kube-controller-manager) echo kubernetes ;;
    kserve-manager | kserve-llmisvc) echo kserve ;;
    redis-server) echo redis ;;
    flux) echo source-controller kustomize-controller helm-controller ;;
    *) echo "$1" ;;
  esac
}

# One worker: claims the next unclaimed tool of the list (mkdir is atomic), builds it, marks it
# done. Each build runs in its own subshell with errexit on, so a failing step stops that build
# (errexit is ignored inside a function called from a condition). Logs what each tool cost.
worker() {
  local claims=$1 t start rc
  shift
  set +e
  for t in "$@"; do
    mkdir "$claims/$t" 2>/dev/null || continue
    if [ "$t" = sidecar-config ] && [ -d "$claims/istioctl" ]; then
      while [ ! -e "$claims/istioctl/done" ]; do
        [ -e "$claims/failed" ] && return 1
        sleep 2
      done
    fi
    start=$SECONDS
    (set -e; install_one "$t")
    rc=$?
    if [ "$rc" != 0 ]; then touch "$claims/failed"; log "error: $t failed (exit $rc)"; return "$rc"; fi
    [ $((SECONDS - start)) -lt 2 ] || log "$t ready after $((SECONDS - start)) s"
    touch "$claims/$t/done"
  done
}

# The requested tools (default: all), as build units in ALL_TOOLS's order.
wanted=""
if [ $# -gt 0 ]; then
  for t in "$@"; do
    for u in $(unit "$t"); do
      case " $ALL_TOOLS " in *" $u "*) ;; *) log "unknown tool: $t"; exit 2 ;; esac
      wanted="$wanted $u"
    done
  done
fi
order=""
for t in $ALL_TOOLS; do
  case " $wanted " in *" $t "*) order="$order $t" ;; *) [ -n "$wanted" ] || order="$order $t" ;; esac
done

# Two workers share the list: on 2 cores one compiles while the other downloads modules or links
# a large binary, and neither idles while work is left. Peak memory of a pair stays under ~4 GB
# (kube-apiserver's link is the largest).
claims=$(mktemp -d)
trap 'rm -rf "$claims"' EXIT
started=$SECONDS
# shellcheck disable=SC2086 # the tool names are words
worker "$claims" $order &
first=$!
# shellcheck disable=SC2086
worker "$claims" $order &
second=$!
status=0
wait "$first" || status=$?
wait "$second" || status=$?
[ "$status" = 0 ] || { log "error: a tool build failed (see above)"; exit "$status"; }
[ $((SECONDS - started)) -lt 2 ] || log "every tool ready after $((SECONDS - started)) s"
echo "$BIN"
