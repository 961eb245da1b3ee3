#!/usr/bin/env bash
# Builds libpeerconnect_ffi and writes its Kotlin, Swift and Python bindings with
# this crate's own uniffi-bindgen in library mode, next to a copy of the library.
#
#   bindings/uniffi/generate.sh [OUT_DIR]      (default: target/uniffi/bindings)
#   PROFILE=release bindings/uniffi/generate.sh dist/
#
# OUT_DIR then holds peerconnect.py, uniffi/peerconnect/peerconnect.kt,
# peerconnect.swift + peerconnectFFI.h + peerconnectFFI.modulemap, and the
# library (libpeerconnect_ffi.so or .dylib). Generated files are not committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
profile=${PROFILE:-debug}
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$target/uniffi/bindings}

flags=(-p peerconnect-ffi --lib --bin uniffi-bindgen)
[ "$profile" = release ] && flags+=(--release)
cargo build "${flags[@]}"

case "$(uname -s)" in
  Darwin) lib=$target/$profile/libpeerconnect_ffi.dylib ;;
  *) lib=$target/$profile/libpeerconnect_ffi.so ;;
esac
mkdir -p "$out"
# --no-format: ktlint and swift-format are not needed to use the output
"$target/$profile/uniffi-bindgen" generate --library "$lib" \
  --language kotlin --language swift --language python --no-format --out-dir "$out"
cp "$lib" "$out/"
echo "bindings and $(basename "$lib") in $out"
