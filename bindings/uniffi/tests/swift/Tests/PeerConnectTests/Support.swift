// What the tests share: two nodes on 127.0.0.1 with discovery off, and waits
// with a deadline (never a measure of speed).

import Foundation
import XCTest

@testable import PeerConnectModel

/// A deadline for things that take milliseconds on loopback.
let deadlineSeconds: UInt64 = 20

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func localConfig(_ dir: URL, _ name: String) -> NodeConfig {
    NodeConfig(
        dataDir: dir.path,
        name: name,
        kind: nil,
        listenAddr: "127.0.0.1:0",
        discovery: false,
        connect: [],
        downloadsDir: dir.appendingPathComponent("downloads").path,
        dht: true
    )
}

/// Resumes a continuation once: with the first of an operation's result and
/// the deadline. The binding's async calls cannot be cancelled, so the
/// operation is raced rather than wrapped in a cancelling task group.
private final class Race<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Error>?

    init(_ continuation: CheckedContinuation<T, Error>) { self.continuation = continuation }

    func finish(_ result: Result<T, Error>) {
        lock.lock()
        let c = continuation
        continuation = nil
        lock.unlock()
        c?.resume(with: result)
    }
}

/// `body`'s result, or a `Failure` naming `what` after the deadline.
func withDeadline<T>(_ what: String, _ body: @escaping () async throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let race = Race(continuation)
        Task {
            do { race.finish(.success(try await body())) } catch { race.finish(.failure(error)) }
        }
        Task {
            try? await Task.sleep(nanoseconds: deadlineSeconds * 1_000_000_000)
            race.finish(.failure(Failure("no \(what) within \(deadlineSeconds) s")))
        }
    }
}

/// The first value `pick` returns for `node`'s events, within the deadline;
/// `pick` throws to fail at once (an event that rules the wait out).
func nextMatching<T>(_ node: PeerConnect, _ what: String, _ pick: @escaping (Event) throws -> T?) async throws -> T {
    try await withDeadline(what) {
        while true {
            guard let event = await node.nextEvent() else {
                throw Failure("the event stream ended while waiting for \(what)")
            }
            if let got = try pick(event) { return got }
        }
    }
}

/// Polls `check` until it returns a value, within the deadline.
func eventually<T>(_ what: String, _ check: @escaping () async throws -> T?) async throws -> T {
    try await withDeadline(what) {
        while true {
            if let got = try await check() { return got }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }
}

/// Runs `body` with nodes "alpha" (a) and "beta" (b) in a fresh folder, and
/// shuts both down after.
func withTwoNodes(_ body: (URL, PeerConnect, PeerConnect) async throws -> Void) async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pc-swift-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let a = try await PeerConnect.start(config: localConfig(dir.appendingPathComponent("a"), "alpha"))
    let b = try await PeerConnect.start(config: localConfig(dir.appendingPathComponent("b"), "beta"))
    do {
        try await body(dir, a, b)
    } catch {
        try? await a.shutdown()
        try? await b.shutdown()
        throw error
    }
    try await a.shutdown()
    try await b.shutdown()
}

/// B dials A; returns once B has a session.
func connect(_ b: PeerConnect, to a: PeerConnect) async throws {
    let got = try await b.connect(addr: a.listenAddrs()[0])
    XCTAssertEqual(got, a.id())
}

/// The error `body` throws, or a failure if it throws none.
func thrown(_ what: String, _ body: () async throws -> Void) async -> Error? {
    do {
        try await body()
    } catch {
        return error
    }
    XCTFail("\(what): nothing was thrown")
    return nil
}
