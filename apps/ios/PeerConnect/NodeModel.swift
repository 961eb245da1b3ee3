// What the views show, fed by the node's events. No SwiftUI or UIKit here:
// bindings/uniffi/tests/swift compiles this file with the generated binding on
// Linux and tests it against the real library.

import Foundation
import Observation

/// An offer waiting for the user's answer: the parts of `Event.offer` the view shows.
struct PendingOffer: Identifiable, Equatable {
    let id: String
    let name: String
    let verificationCode: String
    let files: UInt64
    let totalBytes: UInt64
    let entries: [OfferEntry]
}

/// A running transfer as the view shows it, from its latest `Event.progress`.
struct RunningTransfer: Equatable {
    let file: String?
    let fraction: Double
    let paused: Bool
}

/// Owns the node and turns its events into what the views show. Holds no
/// protocol state: the node owns peers, messages, transfers and rooms; this is
/// a view of them, re-read from the node when an event says they changed.
@MainActor
@Observable
final class NodeModel {
    var status = "starting…"
    /// Every peer the node lists, of any kind (`Peer.kind`).
    var peers: [Peer] = []
    /// Conversations by peer id, oldest message first.
    var chats: [String: [Message]] = [:]
    var offers: [PendingOffer] = []
    var transfers: [String: RunningTransfer] = [:]
    /// Rooms joined, with their neighbour counts, as the node lists them.
    var rooms: [RoomInfo] = []
    /// Messages of joined rooms by room name, oldest first.
    var roomMessages: [String: [RoomMessage]] = [:]
    private(set) var node: PeerConnect?

    init() {}

    /// Starts a node from `config` and applies its events until it shuts down.
    func run(_ config: NodeConfig) async {
        do {
            let node = try await PeerConnect.start(config: config)
            self.node = node
            while let event = await node.nextEvent() {
                await apply(event)
            }
            status = "stopped"
        } catch {
            status = "could not start: \(error)"
        }
    }

    /// Stops the node; `run` returns once the last event was applied.
    func stop() async {
        try? await node?.shutdown()
    }

    func apply(_ event: Event) async {
        switch event {
        case let .listening(_, name, addrs, _):
            status = "\(name) · \(addrs.joined(separator: ", "))"
        case .peerFound, .peerUpdated, .peerLost, .peerConnected, .peerDisconnected:
            if let node { peers = (try? await node.peers()) ?? peers }
        case let .error(message):
            status = message
        case let .messageReceived(message):
            add(message)
        case let .messageStatus(id, peer, newStatus):
            chats[peer] = chats[peer]?.map { m in
                var m = m
                if m.id == id { m.status = newStatus }
                return m
            }
        case let .roomMessage(room, message):
            addRoomMessage(message, to: room)
        case let .roomJoined(room):
            await refreshRooms()
            await loadRoom(room)
        case let .roomLeft(room):
            roomMessages[room] = nil
            await refreshRooms()
        case let .offer(id, _, name, code, _, autoAccepted, files, totalBytes, _, entries):
            if !autoAccepted {
                offers.append(PendingOffer(
                    id: id, name: name, verificationCode: code, files: files,
                    totalBytes: totalBytes, entries: entries
                ))
            }
        case let .progress(id, _, _, doneBytes, totalBytes, _, _, file, _, _, _, _, paused):
            let fraction = totalBytes == 0 ? 1 : Double(doneBytes) / Double(totalBytes)
            transfers[id] = RunningTransfer(file: file, fraction: fraction, paused: paused)
        case let .transferDone(_, _, _, path, _, _):
            status = "done: \(path)"
        case let .transferComplete(id, _, _, _, _, _, _):
            endTransfer(id)
        case let .transferFailed(id, _, _, path, error):
            if path == nil {
                endTransfer(id)
                status = "transfer failed: \(error)"
            }
        case let .transferCancelled(id, _, _, _):
            endTransfer(id)
        case let .transferRejected(id, _, _, reason):
            endTransfer(id)
            status = "offer refused: \(reason)"
        default:
            break
        }
    }

    /// A transfer's final event: it leaves the running list (and the offers, if unanswered).
    private func endTransfer(_ id: String) {
        transfers[id] = nil
        offers.removeAll { $0.id == id }
    }

    func add(_ message: Message) {
        let peer = message.outgoing ? message.recipient : message.sender
        chats[peer, default: []].append(message)
    }

    /// Appends a message the room's list does not have yet (ours come back
    /// as events too, and an event can race the history read at join).
    private func addRoomMessage(_ message: RoomMessage, to room: String) {
        if roomMessages[room]?.contains(where: { $0.id == message.id }) == true { return }
        roomMessages[room, default: []].append(message)
    }

    /// Puts a history page (oldest first) before the messages that arrived as
    /// events and are not in it.
    private func mergeHistory(_ page: [RoomMessage], of room: String) {
        let stored = Set(page.map(\.id))
        roomMessages[room] = page + (roomMessages[room] ?? []).filter { !stored.contains($0.id) }
    }

    private func refreshRooms() async {
        if let node { rooms = (try? await node.rooms()) ?? rooms }
    }

    /// Runs a binding call off the main actor; failures go to the status line.
    func call(_ body: @escaping (PeerConnect) async throws -> Void) {
        guard let node else { return }
        Task {
            do { try await body(node) } catch { status = "\(error)" }
        }
    }

    func loadConversation(_ peer: String) {
        call { node in
            let messages = try await node.conversation(peer: peer, before: nil, limit: 200)
            await MainActor.run { self.chats[peer] = messages }
        }
    }

    func send(_ text: String, to peer: String) {
        call { node in
            let m = try await node.sendMessage(peer: peer, text: text)
            await MainActor.run { self.add(m) }
        }
    }

    /// Offers the file at `path` (readable by the core) to `peer`.
    func sendFile(atPath path: String, to peer: String) {
        call { node in _ = try await node.sendFiles(peer: peer, paths: [path]) }
    }

    func answer(_ offer: PendingOffer, accept: Bool) {
        offers.removeAll { $0.id == offer.id }
        call { node in
            if accept { try node.acceptOffer(id: offer.id) } else { try node.rejectOffer(id: offer.id) }
        }
    }

    func pause(_ id: String, _ paused: Bool) {
        call { node in
            if paused { try node.pauseTransfer(id: id) } else { try node.resumeTransfer(id: id) }
        }
    }

    func cancel(_ id: String) {
        call { node in try node.cancelTransfer(id: id) }
    }

    func trust(_ peer: String) {
        call { node in try await node.setTrust(peer: peer, trust: .trusted) }
    }

    /// Joins room `name`; `RoomJoined` then lists it and loads its history.
    func joinRoom(_ name: String) {
        call { node in try await node.joinRoom(name: name) }
    }

    /// Leaves room `name`; `RoomLeft` then drops it.
    func leaveRoom(_ name: String) {
        call { node in try await node.leaveRoom(name: name) }
    }

    /// Says `text` in `room`; it shows when the node's `RoomMessage` for it arrives.
    func say(_ text: String, in room: String) {
        call { node in _ = try await node.roomSay(name: room, text: text) }
    }

    /// Reads the room's stored history (the latest 200 messages) into the list.
    func loadRoom(_ room: String) async {
        guard let node else { return }
        do {
            // a synchronous read of the store: off the main actor
            let page = try await Task.detached { try node.roomHistory(name: room, before: nil, limit: 200) }.value
            mergeHistory(page, of: room)
        } catch {
            status = "\(error)"
        }
    }
}
