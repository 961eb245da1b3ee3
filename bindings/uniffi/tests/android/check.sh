#!/usr/bin/env bash
# The Android type check: `cargo check -p peerconnect-ffi` for
# aarch64-linux-android, so the binding and the core keep compiling for the
# phones the Android shell runs on.
#
# There is no Android NDK here. ring and SQLite compile C in their build
# scripts, so clang is pointed at glibc's arm64 headers (libc6-dev-arm64-cross)
# in place of bionic's: the C compiles, nothing is linked. A type check, not a
# build; the real build (cargo ndk) is in apps/android/README.md.
# scripts/test installs the tools; where one is missing this says SKIPPED.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../../.." && pwd)
cd "$root"
triple=aarch64-linux-android
headers=/usr/aarch64-linux-gnu/include

missing=()
command -v clang >/dev/null || missing+=("clang")
ar=$(command -v llvm-ar || command -v llvm-ar-14 || true)
[ -n "$ar" ] || missing+=("llvm-ar (package llvm)")
[ -f "$headers/stdio.h" ] || missing+=("$headers (package libc6-dev-arm64-cross)")
rustup target list --installed 2>/dev/null | grep -qx "$triple" || missing+=("the rustup target $triple")
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIPPED android type check: missing ${missing[*]}"
  exit 0
fi

# The aarch64 check of the dependencies (ring's and SQLite's C included) takes
# minutes and does not change between clones: like the Swift chroot, it is
# kept outside the clone (PEERCONNECT_CACHE, default /var/cache/peerconnect),
# so a fresh clone re-checks only the workspace's own crates. Cargo locks the
# folder, so clones checking at once take turns. Where it cannot be made, the
# clone's own target/ is used.
cache=${PEERCONNECT_CACHE:-/var/cache/peerconnect}
android_target=$cache/android-target
if ! mkdir -p "$android_target" 2>/dev/null || [ ! -w "$android_target" ]; then
  android_target=${CARGO_TARGET_DIR:-$root/target}
fi

# API level 26: the Android shell's minSdk
CARGO_TARGET_DIR=$android_target \
CC_aarch64_linux_android=clang \
AR_aarch64_linux_android=$ar \
CFLAGS_aarch64_linux_android="--target=${triple}26 -isystem $headers" \
  cargo check --target "$triple" -p peerconnect-ffi --lib
echo "android: cargo check --target $triple -p peerconnect-ffi passed"
