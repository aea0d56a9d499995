#!/usr/bin/env bash
# Installs moelab's plugin SDK (headers, CMake package, plugin build helpers) into PREFIX, from a
# build tree (default build/, made by tools/setup.sh), without writing anything into the build
# tree (`cmake --install` would leave an install manifest there).
#
#   tools/install_sdk.sh PREFIX [BUILD_DIR]
#
# Then, in a plugin project: cmake -DCMAKE_PREFIX_PATH="PREFIX;<LibTorch prefix>" ... and
# find_package(moelabSDK 5 REQUIRED). Debian's LibTorch is found without a prefix.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: tools/install_sdk.sh PREFIX [BUILD_DIR]" >&2
    exit 2
fi
prefix=$1
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=${2:-$repo/build}
script="$build/sdk/cmake_install.cmake"
if [ ! -f "$script" ]; then
    echo "install_sdk.sh: $script not found: build moelab first (bash tools/setup.sh)" >&2
    exit 2
fi
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
cmake -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_COMPONENT=sdk -P "$script" >/dev/null
version=$(sed -n 's/.*kSdkVersion\[\] = "\(.*\)";/\1/p' "$prefix/include/moelab/sdk/version.h")
echo "moelab SDK $version installed in $prefix (find_package(moelabSDK ${version%%.*}) with CMAKE_PREFIX_PATH=$prefix)"
