#!/usr/bin/env bash
# Builds the Kubernetes tools (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, helm) from their Go modules into a cache
# outside the checkout, keyed by version, and skips what is already built.
#
#   kube/build.sh            build what is missing, print the bin directory
#   MIZZEN_KUBE_CACHE=DIR    cache root (default: ~/.cache/mizzen/kube)
#
# Nothing is downloaded but Go modules from the module proxy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MIZZEN_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mizzen/kube}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

mod_version() { # module path, go.mod file -> version it requires
	awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$2"
}

k8s="$(mod_version k8s.io/kubernetes "$here/tools/go.mod")"
etcd="$(mod_version go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")"
helm="$(mod_version helm.sh/helm/v3 "$here/helm/go.mod")"
bin="$cache/k8s-$k8s-etcd-$etcd-helm-$helm/bin"
mkdir -p "$bin"

build() { # module dir, output name, package, extra ldflags
	local dir="$1" out="$2" pkg="$3" ldflags="-s -w ${4:-}"
	[[ -x "$bin/$out" ]] && return 0
	echo "building $out from $pkg" >&2
	local started=$SECONDS
	(cd "$here/$dir" && /usr/bin/time -f "$out: %e s, peak %M KB" \
		go build -trimpath -p "$(nproc)" -ldflags "$ldflags" -o "$bin/$out.tmp" "$pkg")
	mv "$bin/$out.tmp" "$bin/$out"
	echo "built $out in $((SECONDS - started)) s" >&2
}

minor="${k8s#v1.}"
minor="${minor%%.*}"
version_flags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	version_flags+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor"
	version_flags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
	build tools "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$version_flags"
done
build etcd etcd go.etcd.io/etcd/server/v3
build helm helm helm.sh/helm/v3/cmd/helm \
	"-X helm.sh/helm/v3/internal/version.version=$helm"
echo "$bin"
