// The iOS shell's NodeModel (apps/ios/PeerConnect/NodeModel.swift), compiled
// with the generated binding and run against the real library: what its
// screens would show when another node connects, offers a file and chats in a
// room.

import Foundation
import XCTest

@testable import PeerConnectModel

@MainActor
final class NodeModelTests: XCTestCase {
    private var dir: URL!

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("pc-swift-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// A model running node "alpha", and a plain node "beta" (a laptop) that
    /// has dialed it. `body` gets both; both are stopped after.
    private func withModel(_ body: (NodeModel, PeerConnect) async throws -> Void) async throws {
        let model = NodeModel()
        let running = Task { await model.run(localConfig(dir.appendingPathComponent("a"), "alpha")) }
        var config = localConfig(dir.appendingPathComponent("b"), "beta")
        config.kind = .laptop
        let beta = try await PeerConnect.start(config: config)
        do {
            let node = try await eventually("the model's node") { model.node }
            _ = try await beta.connect(addr: node.listenAddrs()[0])
            try await body(model, beta)
        } catch {
            await model.stop()
            try? await beta.shutdown()
            throw error
        }
        await model.stop()
        await running.value
        XCTAssertEqual(model.status, "stopped")
        try await beta.shutdown()
    }

    func testTheModelListsAPeerWithItsKindAndAcceptsItsOffer() async throws {
        try await withModel { model, beta in
            let listed = try await eventually("beta connected in the model's peers") {
                model.peers.first { $0.name == "beta" && $0.connected }
            }
            XCTAssertEqual(listed.id, beta.id())
            XCTAssertEqual(listed.kind, .laptop)
            XCTAssertEqual(String(describing: listed.kind), "laptop", "the peers list shows the kind by this name")

            let content = Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            let source = dir.appendingPathComponent("photo.jpg")
            try content.write(to: source)
            let alphaId = try XCTUnwrap(model.node).id()
            let transfer = try await beta.sendFiles(peer: alphaId, paths: [source.path])
            let offer = try await eventually("beta's offer in the model") { model.offers.first { $0.id == transfer } }
            XCTAssertEqual(offer.name, "beta")
            XCTAssertEqual(offer.files, 1)
            XCTAssertEqual(offer.entries.map(\.path), ["photo.jpg"])

            model.answer(offer, accept: true)
            XCTAssertTrue(model.offers.isEmpty, "an answered offer leaves the list at once")
            let status = try await eventually("the model's done status") { () -> String? in
                let status = model.status
                return status.hasPrefix("done: ") ? status : nil
            }
            let path = String(status.dropFirst("done: ".count))
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), content, "the received file differs")
            _ = try await eventually("the transfer gone from the model's running list") {
                model.transfers[transfer] == nil ? true : nil
            }
        }
    }

    func testTheModelFollowsARoomJoinedThroughIt() async throws {
        try await withModel { model, beta in
            try await beta.joinRoom(name: "lobby")
            model.joinRoom("lobby")
            _ = try await eventually("lobby in the model's rooms") {
                model.rooms.map(\.name) == ["lobby"] ? true : nil
            }

            let said = try await beta.roomSayAndWait(name: "lobby", text: "hello model", waitMs: deadlineSeconds * 1000)
            XCTAssertFalse(said.reached.isEmpty, "beta's message reached nobody")
            let got = try await eventually("beta's message in the model") {
                model.roomMessages["lobby"]?.first { $0.text == "hello model" }
            }
            XCTAssertEqual(got.authorName, "beta")
            XCTAssertEqual(got.author, beta.id())

            model.say("hello beta", in: "lobby")
            let heard = try await nextMatching(beta, "the model's message at beta") { e -> RoomMessage? in
                if case let .roomMessage(room, m) = e, room == "lobby", m.text == "hello beta" { return m }
                return nil
            }
            XCTAssertEqual(heard.authorName, "alpha")
            // ours comes back as an event too, and shows once
            _ = try await eventually("both messages, once each, in the model") {
                model.roomMessages["lobby"]?.map(\.text) == ["hello model", "hello beta"] ? true : nil
            }
            // opening the room's screen again reads the history, which has both
            await model.loadRoom("lobby")
            XCTAssertEqual(model.roomMessages["lobby"]?.map(\.text), ["hello model", "hello beta"])

            model.leaveRoom("lobby")
            _ = try await eventually("lobby gone from the model") {
                model.rooms.isEmpty && model.roomMessages["lobby"] == nil ? true : nil
            }
        }
    }
}
