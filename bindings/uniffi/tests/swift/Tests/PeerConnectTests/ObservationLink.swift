// Swift 6.0's libswiftObservation.so on Linux (Debian trixie's swiftlang)
// calls swift::threading::fatal but neither defines nor links it, so anything
// using Observation fails to link (swiftlang/swift#75670; fixed in Swift 6.2).
// The test bundle defines it. It runs only on a fatal threading error. Apple
// platforms, where the iOS shell runs, are not affected.

#if os(Linux)
import Glibc

@_cdecl("_ZN5swift9threading5fatalEPKcz")
func threadingFatal(_ message: UnsafePointer<CChar>) -> Never {
    fputs(message, stderr)
    abort()
}
#endif
