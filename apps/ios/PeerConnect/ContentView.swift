import SwiftUI
import UniformTypeIdentifiers

struct ContentView: View {
    @EnvironmentObject var model: NodeModel

    var body: some View {
        NavigationStack {
            List {
                Section { Text(model.status).font(.footnote) }
                if !model.offers.isEmpty {
                    Section("Offers") {
                        ForEach(model.offers, id: \.id) { offer in
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
                                Text(peer.name)
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
    @EnvironmentObject var model: NodeModel
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
                if case let .success(url) = result { model.sendFile(url, to: peer.id) }
            }
            .onAppear { model.loadConversation(peer.id) }
        } else {
            Text("This peer is gone.")
        }
    }
}
