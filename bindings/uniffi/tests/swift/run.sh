#!/usr/bin/env bash
# The Swift binding tests (XCTest) against the real library, in a Debian trixie
# chroot: bookworm has no Swift compiler, trixie's `swiftlang` package has one.
#
#   bindings/uniffi/tests/swift/run.sh GENERATED_DIR [SWIFT_TEST_ARGS...]
#
# (e.g. `--filter NodeModelTests` to run some tests only)
# GENERATED_DIR is what generate.sh wrote (peerconnect.swift, peerconnectFFI.h,
# libpeerconnect_ffi.so). The chroot is made once, with debootstrap from Debian's
# own packages, and kept outside the clone (PEERCONNECT_CACHE, default
# /var/cache/peerconnect) so later runs reuse it; where it cannot be made this
# prints `SKIPPED swift binding tests: <why>` and exits 0. /proc is mounted in it
# only for the run. Prints `swift: N passed, M failed`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../../.." && pwd)
gen=$(cd "${1:?usage: run.sh GENERATED_DIR [SWIFT_TEST_ARGS...]}" && pwd)
shift
cache=${PEERCONNECT_CACHE:-/var/cache/peerconnect}
chroot_dir=$cache/swift-trixie
ready=$chroot_dir/.peerconnect-ready
# the package inside the chroot; kept between runs so SwiftPM builds incrementally
pkg=/build/peerconnect-swift

skip() {
  echo "SKIPPED swift binding tests: $*"
  exit 0
}

[ "$(id -u)" = 0 ] || skip "debootstrap, chroot and mount need root"
[ -f "$ready" ] || command -v debootstrap >/dev/null || skip "no debootstrap (scripts/test installs it)"
[ "$(uname -s)" = Linux ] || skip "the trixie chroot is made on Linux only"
mkdir -p "$cache" || skip "cannot create $cache"
command -v flock >/dev/null || skip "no flock (util-linux)"
# one run at a time on this machine: the chroot, its /proc mount and the
# package folder are shared by every clone
exec 9>"$cache/swift.lock"
flock 9

# Unmounts whatever is mounted at or below $1 (deepest first).
unmount_below() {
  local m
  for m in $(findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1' | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}

# A Debian mirror this machine already uses (its apt sources), else Debian's own.
debian_mirror() {
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ') || true
  echo "${m:-http://deb.debian.org/debian}"
}

prepare_chroot() {
  [ -f "$ready" ] && return 0
  local part=$chroot_dir.partial mirror
  mirror=$(debian_mirror)
  unmount_below "$part"
  rm -rf --one-file-system "$part"
  echo "making a Debian trixie chroot in $chroot_dir (debootstrap from $mirror; once per machine)"
  debootstrap --variant=minbase --include=ca-certificates trixie "$part" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { echo "debootstrap failed; the end of $cache/debootstrap.log:"; tail -n 5 "$cache/debootstrap.log"; unmount_below "$part"; return 1; }
  mount -t proc proc "$part/proc"
  local ok=0
  echo "installing swiftlang in the chroot"
  chroot "$part" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends swiftlang libc6-dev libstdc++-14-dev && apt-get clean' \
    >"$cache/swiftlang.log" 2>&1 || ok=$?
  unmount_below "$part"
  if [ "$ok" != 0 ]; then
    echo "installing swiftlang failed; the end of $cache/swiftlang.log:"
    tail -n 5 "$cache/swiftlang.log"
    return 1
  fi
  touch "$part/.peerconnect-ready"
  mv "$part" "$chroot_dir"
}

if [ ! -f "$ready" ]; then
  # about 2.7 GB once made, plus the packages while they install
  free_kb=$(df -Pk "$cache" | awk 'NR == 2 { print $4 }')
  [ "${free_kb:-0}" -ge $((4 * 1024 * 1024)) ] \
    || skip "the trixie chroot needs about 4 GB free in $cache; $((${free_kb:-0} / 1024)) MB are"
  unmount_below "$chroot_dir"
  rm -rf --one-file-system "$chroot_dir"
  prepare_chroot || skip "the trixie chroot with swiftlang could not be made (see above)"
fi

# The package: the committed Package.swift, module map and tests, the generated
# binding and header, the iOS shell's non-UI model code and the library.
# Unchanged files keep their times, so SwiftPM rebuilds only what changed.
put() { # put SRC DEST (DEST relative to the package)
  local dest=$chroot_dir$pkg/$2
  mkdir -p "$(dirname "$dest")"
  cmp -s "$1" "$dest" || cp "$1" "$dest"
}
sync_dir() { # sync_dir DIR FILE...: DIR of the package holds exactly FILE...
  local dir=$1 f
  shift
  mkdir -p "$chroot_dir$pkg/$dir"
  for f in "$chroot_dir$pkg/$dir"/*; do
    [ -e "$f" ] || continue
    printf '%s\n' "$@" | grep -qx ".*/$(basename "$f")" || rm -f "$f"
  done
  for f; do put "$f" "$dir/$(basename "$f")"; done
}
put "$here/Package.swift" Package.swift
sync_dir Sources/peerconnectFFI "$here/Sources/peerconnectFFI/module.modulemap" "$gen/peerconnectFFI.h"
sync_dir Sources/PeerConnectModel/generated "$gen/peerconnect.swift"
# every file of the iOS shell that needs neither SwiftUI nor UIKit
model=()
for f in "$root"/apps/ios/PeerConnect/*.swift; do
  grep -qE '^import (SwiftUI|UIKit)' "$f" || model+=("$f")
done
sync_dir Sources/PeerConnectModel/shell "${model[@]}"
echo "with the iOS shell's ${model[*]#"$root/"}"
sync_dir Tests/PeerConnectTests "$here"/Tests/PeerConnectTests/*.swift
sync_dir lib "$gen/libpeerconnect_ffi.so"

mounted=
cleanup() { [ -z "$mounted" ] || unmount_below "$chroot_dir/proc"; }
trap cleanup EXIT
# swiftc cannot load libswiftCore without /proc. (A mount left by a run that
# was killed is stale: this run holds the lock.)
unmount_below "$chroot_dir/proc"
mount -t proc proc "$chroot_dir/proc"
mounted=yes
in_chroot() {
  chroot "$chroot_dir" /usr/bin/env -i HOME=/root PATH=/usr/bin:/bin LANG=C.UTF-8 TMPDIR=/tmp \
    LD_LIBRARY_PATH="$pkg/lib" "$@"
}
echo "$(in_chroot swift --version 2>&1 | head -n1) (in $chroot_dir)"
log=$chroot_dir$pkg/test.log
rc=0
in_chroot swift test --package-path "$pkg" "$@" 2>&1 | tee "$log" || rc=$?
cleanup
mounted=
trap - EXIT

# one line per test case: "Test Case 'BindingTests.testX' passed (0.1 seconds)";
# a case that started and never ended took the process down (a crash)
count() { grep -cE "^Test Case '[^']+' $1" "$log" || true; }
started=$(count started)
passed=$(count passed)
failed=$(count failed)
crashed=$((started - passed - failed))
if [ "$started" = 0 ]; then
  echo "swift: 0 passed, 0 failed: the tests did not run (see above)"
  exit 1
fi
[ "$crashed" = 0 ] || echo "the test process died in $(grep -oE "^Test Case '[^']+' started" "$log" | tail -n1)"
echo "swift: $passed passed, $((failed + crashed)) failed"
[ "$rc" = 0 ] && [ "$failed" = 0 ] && [ "$crashed" = 0 ]
