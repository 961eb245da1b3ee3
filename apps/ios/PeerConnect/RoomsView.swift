import SwiftUI

/// Rooms joined (with how many neighbours each has), joining one by name.
struct RoomsView: View {
    @Environment(NodeModel.self) private var model
    @State private var name = ""

    var body: some View {
        NavigationStack {
            List {
                Section {
                    HStack {
                        TextField("Room name", text: $name)
                            .textInputAutocapitalization(.never)
                            .autocorrectionDisabled()
                        Button("Join") {
                            model.joinRoom(name.trimmingCharacters(in: .whitespaces))
                            name = ""
                        }
                        .disabled(name.trimmingCharacters(in: .whitespaces).isEmpty)
                    }
                }
                Section("Joined") {
                    ForEach(model.rooms, id: \.name) { room in
                        NavigationLink(value: room.name) {
                            HStack {
                                Text(room.name)
                                Spacer()
                                Text("\(room.neighbors) neighbours").font(.caption)
                            }
                        }
                    }
                }
            }
            .navigationTitle("Rooms")
            .navigationDestination(for: String.self) { RoomView(room: $0) }
        }
    }
}

/// One room's messages, oldest first, and a line to say something in it.
struct RoomView: View {
    @Environment(NodeModel.self) private var model
    @Environment(\.dismiss) private var dismiss
    let room: String
    @State private var draft = ""

    var body: some View {
        VStack {
            List(model.roomMessages[room] ?? [], id: \.id) { m in
                VStack(alignment: .leading) {
                    Text(m.authorName).font(.caption)
                    Text(m.text)
                }
            }
            HStack {
                TextField("Message", text: $draft).textFieldStyle(.roundedBorder)
                Button("Send") {
                    model.say(draft, in: room)
                    draft = ""
                }
                .disabled(draft.isEmpty)
            }.padding()
        }
        .navigationTitle(room)
        .toolbar {
            Button("Leave", role: .destructive) {
                model.leaveRoom(room)
                dismiss()
            }
        }
        .task { await model.loadRoom(room) }
    }
}
