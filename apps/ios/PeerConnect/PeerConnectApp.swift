import SwiftUI
import UIKit

@main
struct PeerConnectApp: App {
    @StateObject private var model = NodeModel()

    var body: some Scene {
        WindowGroup {
            ContentView().environmentObject(model)
        }
    }
}

/// An offer waiting for the user's answer: the parts of `Event.offer` the view shows.
struct PendingOffer: Identifiable {
    let id: String
    let name: String
    let verificationCode: String
    let files: UInt64
    let totalBytes: UInt64
    let entries: [OfferEntry]
}

/// A running transfer as the view shows it, from its latest `Event.progress`.
struct RunningTransfer {
    let file: String?
    let fraction: Double
    let paused: Bool
}

/// Owns the node and turns its events into what the views show. Holds no
/// protocol state: the node owns peers, messages and transfers.
@MainActor
final class NodeModel: ObservableObject {
    @Published var status = "starting…"
    @Published var peers: [Peer] = []
    @Published var chats: [String: [Message]] = [:]
    @Published var offers: [PendingOffer] = []
    @Published var transfers: [String: RunningTransfer] = [:]
    private(set) var node: PeerConnect?

    init() {
        Task { await run() }
    }

    private func run() async {
        let support = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let config = NodeConfig(
            dataDir: support.appendingPathComponent("peerconnect").path,
            name: UIDevice.current.name,
            kind: .phone,
            listenAddr: nil,
            discovery: true,
            connect: [],
            downloadsDir: documents.path,
            dht: true
        )
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

    private func apply(_ event: Event) async {
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

    /// Runs a binding call; failures go to the status line.
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

    func sendFile(_ url: URL, to peer: String) {
        // a picked file is security-scoped: copy it where the core can read it
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent(url.lastPathComponent)
        let scoped = url.startAccessingSecurityScopedResource()
        defer { if scoped { url.stopAccessingSecurityScopedResource() } }
        try? FileManager.default.removeItem(at: copy)
        do {
            try FileManager.default.copyItem(at: url, to: copy)
        } catch {
            status = "\(error)"
            return
        }
        call { node in _ = try await node.sendFiles(peer: peer, paths: [copy.path]) }
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
}
