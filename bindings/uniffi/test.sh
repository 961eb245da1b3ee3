#!/usr/bin/env bash
# The binding tests in the bindings' own languages, against the real library
# built by generate.sh:
#
#   python   the pip-installed package (maturin), in a venv under target/
#   kotlin   on the JVM, with the Android shell's Kotlin that needs no Android SDK
#   swift    XCTest in a Debian trixie chroot, with the iOS shell's model code
#   android  cargo check of peerconnect-ffi for aarch64-linux-android
#
#   bindings/uniffi/test.sh [STEP...]      (default: all four)
#
# scripts/test runs this after installing what the steps need (kotlinc from npm,
# JNA, debootstrap, clang and glibc's arm64 headers, the rustup target); a step
# whose tools are missing says `SKIPPED <step>: <why>`. Every step runs; the
# script fails if any failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/uniffi/test
cd "$root" || exit 1
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(python kotlin swift android)

python_tests() {
  command -v python3 >/dev/null || { echo "SKIPPED python binding tests: no python3"; return 0; }
  # a venv of our own, so the system Python is untouched
  local venv=$target/uniffi/venv
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "SKIPPED python binding tests: python3 -m venv failed"; return 0; }
  fi
  if ! "$venv/bin/maturin" --version >/dev/null 2>&1; then
    "$venv/bin/pip" install -q "maturin>=1.16,<2" \
      || { echo "SKIPPED python binding tests: pip could not install maturin"; return 0; }
  fi
  # What a user runs (`pip install ./bindings/uniffi`), with the venv's maturin
  # instead of a fresh download per run, and the dev profile, which reuses
  # generate.sh's build instead of a release build of the whole core.
  # (the build backend runs `maturin` from PATH)
  PATH=$venv/bin:$PATH "$venv/bin/pip" install -q --force-reinstall --no-deps --no-build-isolation \
    --config-settings=build-args="--profile dev" "$here" || return 1
  local installed
  installed=$("$venv/bin/python" -c 'import peerconnect; print(peerconnect.__file__)') || return 1
  case $installed in
    "$venv"/*) echo "peerconnect installed at $installed" ;;
    *) echo "the tests would import peerconnect from $installed, not the venv"; return 1 ;;
  esac
  # from the tests' own folder, so only the installed package can be imported
  (cd "$here/tests/python" && "$venv/bin/python" test_peerconnect.py 2>&1)
}

kotlin_tests() {
  local kotlin=$here/tests/kotlin/node_modules/kotlin-compiler jna=/usr/share/java/jna.jar missing=()
  [ -x "$kotlin/bin/kotlinc" ] || missing+=("kotlinc (npm install in $here/tests/kotlin)")
  [ -f "$jna" ] || missing+=("$jna (apt-get install libjna-java)")
  command -v java >/dev/null || missing+=("java")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "SKIPPED kotlin binding tests: missing ${missing[*]}"
    return 0
  fi
  # The Android shell's Kotlin that uses no Android API (its state and event
  # handling) is compiled with the binding and tested here; the rest needs the SDK.
  local shell=() f
  while IFS= read -r f; do shell+=("$f"); done < <(grep -rL -E '^import (android|androidx)\.' \
    --include='*.kt' "$root/apps/android/app/src/main/java" | sort)
  echo "with the Android shell's ${shell[*]#"$root/"}"
  local cp=$jna:$kotlin/lib/kotlinx-coroutines-core-jvm.jar
  "$kotlin/bin/kotlinc" -nowarn -cp "$cp" -d "$out/test.jar" \
    "$out/uniffi/peerconnect/peerconnect.kt" "$here/tests/kotlin/PeerConnectTest.kt" "${shell[@]}" || return 1
  java -Djna.library.path="$out" -cp "$out/test.jar:$cp:$kotlin/lib/kotlin-stdlib.jar" PeerConnectTestKt
}

swift_tests() {
  bash "$here/tests/swift/run.sh" "$out"
}

android_check() {
  bash "$here/tests/android/check.sh"
}

failed=()
generated=no
for step in "${steps[@]}"; do
  case $step in
    python | kotlin | swift)
      if [ $generated = no ]; then
        rm -rf "$out"
        "$here/generate.sh" "$out" || exit 1
        generated=yes
      fi
      ;;
    android) ;;
    *) echo "unknown step $step (python, kotlin, swift, android)"; exit 2 ;;
  esac
  echo "-- $step"
  start=$SECONDS
  case $step in
    python) python_tests ;;
    kotlin) kotlin_tests ;;
    swift) swift_tests ;;
    android) android_check ;;
  esac || failed+=("$step")
  echo "-- $step: $((SECONDS - start)) s"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "binding steps failed: ${failed[*]}"
  exit 1
fi
