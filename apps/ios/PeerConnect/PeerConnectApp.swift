import SwiftUI
import UIKit

@main
struct PeerConnectApp: App {
    @State private var model = NodeModel()

    var body: some Scene {
        WindowGroup {
            ContentView()
                .environment(model)
                .task { await model.run(Self.config()) }
        }
    }

    /// This device's node: its store in Application Support, received files in
    /// Documents (visible in the Files app), discovery and the DHT on.
    static func config() -> NodeConfig {
        let support = FileManager.default.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        return NodeConfig(
            dataDir: support.appendingPathComponent("peerconnect").path,
            name: UIDevice.current.name,
            kind: UIDevice.current.userInterfaceIdiom == .pad ? .tablet : .phone,
            listenAddr: nil,
            discovery: true,
            connect: [],
            downloadsDir: documents.path,
            dht: true
        )
    }
}
