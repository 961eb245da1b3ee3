// The Swift binding against the real library: what the Python and Kotlin
// suites check, in Swift.

import Foundation
import XCTest

@testable import PeerConnectModel

final class BindingTests: XCTestCase {
    func testFirstEventSaysWhereTheNodeListens() async throws {
        try await withTwoNodes { _, a, _ in
            guard case let .listening(id, name, addrs, _) = await a.nextEvent() else {
                return XCTFail("the first event is not listening")
            }
            XCTAssertEqual(id, a.id())
            XCTAssertEqual(id.count, 52)
            XCTAssertEqual(name, "alpha")
            XCTAssertEqual(addrs, a.listenAddrs())
            XCTAssertTrue(addrs[0].hasPrefix("127.0.0.1:"), "\(addrs)")
        }
    }

    func testConnectedNodesListEachOtherWithOneCode() async throws {
        try await withTwoNodes { _, a, b in
            try await connect(b, to: a)
            let bId = b.id(), aId = a.id()
            let onA = try await nextMatching(a, "a's peerConnected for b") { e -> (Peer, String)? in
                if case let .peerConnected(peer, code) = e, peer.id == bId { return (peer, code) }
                return nil
            }
            let onB = try await nextMatching(b, "b's peerConnected for a") { e -> (Peer, String)? in
                if case let .peerConnected(peer, code) = e, peer.id == aId { return (peer, code) }
                return nil
            }
            XCTAssertEqual(onA.0.name, "beta")
            XCTAssertEqual(onB.0.name, "alpha")
            XCTAssertEqual(onA.1, onB.1)
            XCTAssertEqual(onA.1.count, 6)
            let peers = try await b.peers()
            XCTAssertEqual(peers.map { "\($0.id) \($0.name) \($0.connected)" }, ["\(aId) alpha true"])
            XCTAssertEqual(peers[0].trust, .unknown)
        }
    }

    func testTrustSetByNameShowsInPeers() async throws {
        try await withTwoNodes { _, a, b in
            try await connect(b, to: a)
            try await b.setTrust(peer: "alpha", trust: .trusted)
            let peers = try await eventually("alpha trusted in b's peers") { () -> [Peer]? in
                let peers = try await b.peers()
                return peers.map(\.trust) == [.trusted] ? peers : nil
            }
            XCTAssertEqual(peers[0].id, a.id())
        }
    }

    func testDhtFindsAPeerByName() async throws {
        try await withTwoNodes { _, a, b in
            try await connect(b, to: a)
            let found = try await eventually("alpha found through the DHT") { () -> [FoundPeer]? in
                let found = try await b.find(query: "alpha")
                return found.isEmpty ? nil : found
            }
            XCTAssertEqual(found.map { "\($0.id) \($0.name)" }, ["\(a.id()) alpha"])
        }
    }

    func testAMessageArrivesAndIsAcknowledged() async throws {
        try await withTwoNodes { _, a, b in
            try await connect(b, to: a)
            let sent = try await a.sendMessage(peer: b.id(), text: "hello from swift")
            XCTAssertTrue(sent.outgoing)
            XCTAssertEqual([sent.sender, sent.recipient, sent.text], [a.id(), b.id(), "hello from swift"])

            let got = try await nextMatching(b, "b's messageReceived") { e -> Message? in
                if case let .messageReceived(m) = e { return m }
                return nil
            }
            XCTAssertEqual([got.id, got.sender, got.text], [sent.id, a.id(), "hello from swift"])
            XCTAssertFalse(got.outgoing)
            let sentId = sent.id
            _ = try await nextMatching(a, "a's messageStatus delivered") { e -> Bool? in
                if case let .messageStatus(id, _, status) = e, id == sentId, status == .delivered { return true }
                return nil
            }
            let history = try await b.conversation(peer: "alpha", before: nil, limit: 50)
            XCTAssertEqual(history.map(\.text), ["hello from swift"])
            let marked = try await b.markRead(peer: a.id(), upTo: got.id)
            XCTAssertEqual(marked, 1)
            let tooLong = String(repeating: "x", count: 64 * 1024 + 1)
            let error = await thrown("a text over 64 KiB") { _ = try await a.sendMessage(peer: b.id(), text: tooLong) }
            guard case .Invalid = error as? ApiError else { return XCTFail("expected ApiError.Invalid, got \(String(describing: error))") }
        }
    }

    func testAFileSentIsOfferedAcceptedAndArrivesWhole() async throws {
        try await withTwoNodes { dir, a, b in
            try await connect(b, to: a)
            var bytes = [UInt8](repeating: 0, count: 200_000)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
            let content = Data(bytes) + Data("the end\n".utf8)
            let source = dir.appendingPathComponent("report.bin")
            try content.write(to: source)

            let transfer = try await a.sendFiles(peer: b.id(), paths: [source.path])
            XCTAssertEqual(transfer.count, 16)
            let offer = try await nextMatching(b, "b's offer") { e -> (String, String, UInt64, UInt64, [OfferEntry], Bool)? in
                if case let .offer(id, peer, name, _, _, autoAccepted, files, total, _, entries) = e, id == transfer {
                    return (peer, name, files, total, entries, autoAccepted)
                }
                return nil
            }
            XCTAssertEqual(offer.0, a.id())
            XCTAssertEqual(offer.1, "alpha")
            XCTAssertEqual(offer.2, 1)
            XCTAssertEqual(offer.3, UInt64(content.count))
            XCTAssertEqual(offer.4, [OfferEntry(path: "report.bin", size: UInt64(content.count), dir: false)])
            XCTAssertFalse(offer.5)
            try b.acceptOffer(id: transfer)

            let done = try await nextMatching(b, "b's transferDone") { e -> (Direction, String, UInt64, String)? in
                if case let .transferDone(id, _, direction, path, bytes, blake3) = e, id == transfer {
                    return (direction, path, bytes, blake3)
                }
                return nil
            }
            XCTAssertEqual(done.0, .receive)
            XCTAssertEqual(done.2, UInt64(content.count))
            XCTAssertEqual(done.3.count, 64)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: done.1)), content, "the received file differs")
            XCTAssertEqual(
                URL(fileURLWithPath: done.1).deletingLastPathComponent().standardizedFileURL.path,
                dir.appendingPathComponent("b/downloads").standardizedFileURL.path
            )

            let onB = try await nextMatching(b, "b's transferComplete", completion(of: transfer))
            let onA = try await nextMatching(a, "a's transferComplete", completion(of: transfer))
            for side in [onA, onB] {
                XCTAssertEqual([side.files, side.failed, side.bytes], [1, 0, UInt64(content.count)])
            }
            XCTAssertEqual(onA.direction, .send)
            XCTAssertEqual(onB.direction, .receive)
            let listed = try a.transfers().filter { $0.id == transfer }
            XCTAssertEqual(listed.map(\.state), [.complete])
        }
    }

    func testARejectedOfferTellsTheSender() async throws {
        try await withTwoNodes { dir, a, b in
            try await connect(b, to: a)
            let source = dir.appendingPathComponent("unwanted.txt")
            try Data("no thanks".utf8).write(to: source)
            let transfer = try await a.sendFiles(peer: "beta", paths: [source.path])
            _ = try await nextMatching(b, "b's offer") { e -> Bool? in
                if case let .offer(id, _, _, _, _, _, _, _, _, _) = e, id == transfer { return true }
                return nil
            }
            try b.rejectOffer(id: transfer)
            let rejected = try await nextMatching(a, "a's transferRejected") { e -> (String, Direction)? in
                if case let .transferRejected(id, peer, direction, _) = e, id == transfer { return (peer, direction) }
                return nil
            }
            XCTAssertEqual(rejected.0, b.id())
            XCTAssertEqual(rejected.1, .send)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("b/downloads/unwanted.txt").path))
            let error = await thrown("accepting a rejected offer") { try b.acceptOffer(id: transfer) }
            guard case .Invalid = error as? ApiError else { return XCTFail("expected ApiError.Invalid, got \(String(describing: error))") }
        }
    }

    func testARoomMessageReachesTheOtherMember() async throws {
        try await withTwoNodes { _, a, b in
            try await connect(b, to: a)
            try await a.joinRoom(name: "lobby")
            try await b.joinRoom(name: "lobby")
            _ = try await nextMatching(b, "b's roomJoined") { e -> Bool? in
                if case let .roomJoined(room) = e, room == "lobby" { return true }
                return nil
            }
            let said = try await a.roomSayAndWait(name: "lobby", text: "hello room", waitMs: deadlineSeconds * 1000)
            XCTAssertEqual(said.message.author, a.id())
            XCTAssertEqual(said.message.text, "hello room")

            let got = try await nextMatching(b, "b's roomMessage") { e -> RoomMessage? in
                if case let .roomMessage(room, message) = e, room == "lobby" { return message }
                return nil
            }
            XCTAssertEqual([got.id, got.author, got.authorName, got.text], [said.message.id, a.id(), "alpha", "hello room"])
            XCTAssertEqual(try b.roomHistory(name: "lobby", before: nil, limit: 10).map(\.text), ["hello room"])
            let rooms = try await b.rooms()
            XCTAssertEqual(rooms.map(\.name), ["lobby"])
            try await b.leaveRoom(name: "lobby")
            _ = try await nextMatching(b, "b's roomLeft") { e -> Bool? in
                if case let .roomLeft(room) = e, room == "lobby" { return true }
                return nil
            }
            let left = try await b.rooms()
            XCTAssertEqual(left, [])
        }
    }

    func testErrorsAreApiErrorsByKind() async throws {
        try await withTwoNodes { dir, _, b in
            let badAddress = await thrown("a bad address") { _ = try await b.connect(addr: "not an address") }
            guard case .Invalid = badAddress as? ApiError else {
                return XCTFail("expected ApiError.Invalid, got \(String(describing: badAddress))")
            }
            let unknown = await thrown("an unknown peer") { try await b.setTrust(peer: "nobody-by-this-name", trust: .blocked) }
            guard case .NotFound = unknown as? ApiError else {
                return XCTFail("expected ApiError.NotFound, got \(String(describing: unknown))")
            }
            let inUse = await thrown("a data dir in use") {
                _ = try await PeerConnect.start(config: localConfig(dir.appendingPathComponent("a"), "alpha-again"))
            }
            guard case let .Io(message) = inUse as? ApiError else {
                return XCTFail("expected ApiError.Io, got \(String(describing: inUse))")
            }
            XCTAssertTrue(message.contains("in use"), message)
        }
    }

    func testShutdownEndsEventsAndLaterCallsFail() async throws {
        try await withTwoNodes { _, a, b in
            try await connect(b, to: a)
            try await a.shutdown()
            try await withDeadline("the end of a's events") {
                while await a.nextEvent() != nil {}
            }
            let error = await thrown("peers after shutdown") { _ = try await a.peers() }
            guard case .Shutdown = error as? ApiError else {
                return XCTFail("expected ApiError.Shutdown, got \(String(describing: error))")
            }
            let aId = a.id()
            _ = try await nextMatching(b, "b's peerDisconnected for a") { e -> Bool? in
                if case let .peerDisconnected(id, _) = e, id == aId { return true }
                return nil
            }
        }
    }
}

/// A transfer's completion as the test compares it.
struct Completion {
    let direction: Direction
    let files: UInt64
    let failed: UInt64
    let bytes: UInt64
}

/// Picks the final event of `transfer`: its completion; any other end fails the wait.
func completion(of transfer: String) -> (Event) throws -> Completion? {
    { e in
        switch e {
        case let .transferComplete(id, _, direction, files, failed, bytes, _) where id == transfer:
            return Completion(direction: direction, files: files, failed: failed, bytes: bytes)
        case let .transferFailed(id, _, _, nil, error) where id == transfer:
            throw Failure("transfer failed: \(error)")
        case let .transferCancelled(id, _, _, _) where id == transfer:
            throw Failure("transfer cancelled")
        case let .transferRejected(id, _, _, reason) where id == transfer:
            throw Failure("transfer rejected: \(reason)")
        default:
            break
        }
        return nil
    }
}
