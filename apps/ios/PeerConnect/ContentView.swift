import SwiftUI
import UniformTypeIdentifiers

struct ContentView: View {
    var body: some View {
        TabView {
            PeersView().tabItem { Label("Peers", systemImage: "person.2") }
            RoomsView().tabItem { Label("Rooms", systemImage: "bubble.left.and.bubble.right") }
        }
    }
}

/// Status, offers, running transfers and every peer the node lists, with its kind.
struct PeersView: View {
    @Environment(NodeModel.self) private var model

    var body: some View {
        NavigationStack {
            List {
                Section { Text(model.status).font(.footnote) }
                if !model.offers.isEmpty {
                    Section("Offers") {
                        ForEach(model.offers) { offer in
                            VStack(alignment: .leading) {
                                Text("\(offer.name) offers \(offer.files) file(s), \(offer.totalBytes) bytes")
                                Text(offer.entries.map(\.path).joined(separator: ", ")).font(.caption)
                                Text("code \(offer.verificationCode)").font(.caption)
                                HStack {
                                    Button("Accept") { model.answer(offer, accept: true) }
                                    Button("Reject", role: .destructive) { model.answer(offer, accept: false) }
                                }.buttonStyle(.borderless)
                            }
                        }
                    }
                }
                if !model.transfers.isEmpty {
                    Section("Transfers") {
                        ForEach(model.transfers.sorted(by: { $0.key < $1.key }), id: \.key) { id, t in
                            VStack(alignment: .leading) {
                                ProgressView(t.file ?? id, value: t.fraction)
                                HStack {
                                    Button(t.paused ? "Resume" : "Pause") { model.pause(id, !t.paused) }
                                    Button("Cancel", role: .destructive) { model.cancel(id) }
                                }.buttonStyle(.borderless)
                            }
                        }
                    }
                }
                Section("Peers") {
                    ForEach(model.peers, id: \.id) { peer in
                        NavigationLink(value: peer.id) {
                            VStack(alignment: .leading) {
                                // the kind as the binding names it, so kinds added later show as they are
                                Text("\(peer.name) (\(String(describing: peer.kind)))")
                                Text("\(String(peer.id.prefix(8))) · \(peer.connected ? "connected" : "seen") · code \(peer.verificationCode)")
                                    .font(.caption)
                            }
                        }
                    }
                }
            }
            .navigationTitle("PeerConnect")
            .navigationDestination(for: String.self) { id in
                ChatView(peer: model.peers.first { $0.id == id })
            }
        }
    }
}

struct ChatView: View {
    @Environment(NodeModel.self) private var model
    let peer: Peer?
    @State private var draft = ""
    @State private var picking = false

    var body: some View {
        if let peer {
            VStack {
                List(model.chats[peer.id] ?? [], id: \.id) { m in
                    Text("\(m.outgoing ? "me" : peer.name): \(m.text)")
                }
                HStack {
                    TextField("Message", text: $draft).textFieldStyle(.roundedBorder)
                    Button("Send") {
                        model.send(draft, to: peer.id)
                        draft = ""
                    }
                }.padding()
            }
            .navigationTitle(peer.name)
            .toolbar {
                Button("Trust") { model.trust(peer.id) }
                Button("Send file") { picking = true }
            }
            .fileImporter(isPresented: $picking, allowedContentTypes: [.item]) { result in
                guard case let .success(url) = result else { return }
                do {
                    model.sendFile(atPath: try readableCopy(of: url), to: peer.id)
                } catch {
                    model.status = "\(error)"
                }
            }
            .onAppear { model.loadConversation(peer.id) }
        } else {
            Text("This peer is gone.")
        }
    }
}

/// A picked file is security-scoped: copies it where the core can read it by path.
func readableCopy(of url: URL) throws -> String {
    let copy = FileManager.default.temporaryDirectory.appendingPathComponent(url.lastPathComponent)
    let scoped = url.startAccessingSecurityScopedResource()
    defer { if scoped { url.stopAccessingSecurityScopedResource() } }
    try? FileManager.default.removeItem(at: copy)
    try FileManager.default.copyItem(at: url, to: copy)
    return copy.path
}
