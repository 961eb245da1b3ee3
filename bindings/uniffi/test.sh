#!/usr/bin/env bash
# The binding tests in the bindings' own languages (Python, Kotlin on the JVM),
# against the real library built by generate.sh. scripts/test runs this after
# installing kotlinc (npm, into tests/kotlin/node_modules) and JNA (Debian's
# libjna-java); a language whose tools are missing says SKIPPED and why.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/uniffi/test
cd "$root" # unittest takes a test file by its path relative to here
rm -rf "$out"
"$here/generate.sh" "$out"

echo "-- python"
if command -v python3 >/dev/null; then
  PYTHONPATH=$out python3 -m unittest -v "$here/tests/python/test_peerconnect.py" 2>&1
else
  echo "SKIPPED python binding tests: no python3"
fi

echo "-- kotlin (JVM)"
kotlin=$here/tests/kotlin/node_modules/kotlin-compiler
jna=/usr/share/java/jna.jar
missing=()
[ -x "$kotlin/bin/kotlinc" ] || missing+=("kotlinc (npm install in $here/tests/kotlin)")
[ -f "$jna" ] || missing+=("$jna (apt-get install libjna-java)")
command -v java >/dev/null || missing+=("java")
if [ ${#missing[@]} -gt 0 ]; then
  echo "SKIPPED kotlin binding tests: missing ${missing[*]}"
  exit 0
fi
cp=$jna:$kotlin/lib/kotlinx-coroutines-core-jvm.jar
# AppState.kt of the Android shell uses no Android API: compiling it here keeps
# the shell's event handling in step with the binding's Event
"$kotlin/bin/kotlinc" -nowarn -cp "$cp" -d "$out/test.jar" \
  "$out/uniffi/peerconnect/peerconnect.kt" "$here/tests/kotlin/PeerConnectTest.kt" \
  "$root/apps/android/app/src/main/java/org/peerconnect/android/AppState.kt"
java -Djna.library.path="$out" -cp "$out/test.jar:$cp:$kotlin/lib/kotlin-stdlib.jar" PeerConnectTestKt
