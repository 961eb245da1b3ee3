// swift-tools-version:5.9
// The Swift binding's tests (XCTest) against the real libpeerconnect_ffi.so.
// run.sh assembles this package inside the trixie chroot: it adds the
// generated peerconnect.swift and the iOS shell's non-UI files (NodeModel.swift)
// under Sources/PeerConnectModel (one module, as in the app), the generated header to
// Sources/peerconnectFFI and the library to lib/.
import PackageDescription

let lib = "\(Context.packageDirectory)/lib"

let package = Package(
    name: "PeerConnectSwiftTests",
    targets: [
        .systemLibrary(name: "peerconnectFFI", path: "Sources/peerconnectFFI"),
        .target(
            name: "PeerConnectModel",
            dependencies: ["peerconnectFFI"],
            path: "Sources/PeerConnectModel",
            linkerSettings: [.unsafeFlags(["-L\(lib)"])]
        ),
        .testTarget(
            name: "PeerConnectTests",
            dependencies: ["PeerConnectModel"],
            path: "Tests/PeerConnectTests",
            linkerSettings: [.unsafeFlags(["-L\(lib)"])]
        ),
    ]
)
