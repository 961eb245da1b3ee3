// PeerConnect on Flutter: peers, offers, transfers and chat over the
// flutter_rust_bridge bindings (package peerconnect_flutter).

import 'dart:async';
import 'dart:io';

import 'package:file_picker/file_picker.dart';
import 'package:flutter/material.dart';
import 'package:path_provider/path_provider.dart';
import 'package:peerconnect_flutter/peerconnect_flutter.dart';

Future<void> main() async {
  WidgetsFlutterBinding.ensureInitialized();
  await RustLib.init();
  final support = await getApplicationSupportDirectory();
  final docs = await getApplicationDocumentsDirectory();
  final model = NodeModel();
  unawaited(model.start(NodeConfig(
    dataDir: '${support.path}/peerconnect',
    name: Platform.localHostname,
    kind: Platform.isAndroid || Platform.isIOS ? DeviceKind.phone : DeviceKind.desktop,
    listenAddr: null,
    discovery: true,
    connect: const [],
    downloadsDir: docs.path,
    dht: true,
  )));
  runApp(MaterialApp(title: 'PeerConnect', home: HomePage(model: model)));
}

/// Owns the node and turns its events into what the pages show. Holds no
/// protocol state: the node owns peers, messages and transfers.
class NodeModel extends ChangeNotifier {
  PeerConnect? node;
  String status = 'starting…';
  List<Peer> peers = [];
  final Map<String, List<Message>> chats = {};
  /// Offers waiting for the user's answer.
  final List<Event_Offer> offers = [];
  /// Running transfers by id, with their latest progress.
  final Map<String, Event_Progress> transfers = {};

  Future<void> start(NodeConfig config) async {
    try {
      final n = await PeerConnect.start(config: config);
      node = n;
      n.events().listen(_apply, onDone: () {
        status = 'stopped';
        notifyListeners();
      });
    } on ApiError catch (e) {
      status = 'could not start: $e';
      notifyListeners();
    }
  }

  Future<void> _apply(Event e) async {
    switch (e) {
      case Event_Listening(:final name, :final addrs):
        status = '$name · ${addrs.join(', ')}';
      case Event_PeerFound() || Event_PeerUpdated() || Event_PeerLost() ||
            Event_PeerConnected() || Event_PeerDisconnected():
        peers = await node!.peers();
      case Event_Error(:final message):
        status = message;
      case Event_MessageReceived(:final message):
        _add(message);
      case Event_MessageStatus(:final id, :final peer, status: final s):
        final list = chats[peer];
        if (list != null) {
          chats[peer] = [
            for (final m in list)
              m.id == id
                  ? Message(
                      id: m.id,
                      sender: m.sender,
                      recipient: m.recipient,
                      outgoing: m.outgoing,
                      sentMs: m.sentMs,
                      text: m.text,
                      replyTo: m.replyTo,
                      status: s)
                  : m
          ];
        }
      case Event_Offer offer:
        if (!offer.autoAccepted) offers.add(offer);
      case Event_Progress progress:
        transfers[progress.id] = progress;
      case Event_TransferDone(:final path):
        status = 'done: $path';
      case Event_TransferComplete(:final id) || Event_TransferCancelled(:final id):
        _endTransfer(id);
      case Event_TransferFailed(:final id, :final path, :final error):
        if (path == null) {
          _endTransfer(id);
          status = 'transfer failed: $error';
        }
      case Event_TransferRejected(:final id, :final reason):
        _endTransfer(id);
        status = 'offer refused: $reason';
      default:
        break;
    }
    notifyListeners();
  }

  /// A transfer's final event: it leaves the running list (and the offers, if unanswered).
  void _endTransfer(String id) {
    transfers.remove(id);
    offers.removeWhere((o) => o.id == id);
  }

  void _add(Message m) {
    final peer = m.outgoing ? m.recipient : m.sender;
    (chats[peer] ??= []).add(m);
  }

  /// Runs a binding call; failures go to the status line.
  Future<void> call(Future<void> Function(PeerConnect node) body) async {
    final n = node;
    if (n == null) return;
    try {
      await body(n);
    } on ApiError catch (e) {
      status = '$e';
    }
    notifyListeners();
  }

  Future<void> loadConversation(String peer) => call((n) async {
        chats[peer] = await n.conversation(peer: peer, before: null, limit: 200);
      });

  Future<void> send(String peer, String text) => call((n) async {
        _add(await n.sendMessage(peer: peer, text: text));
      });

  Future<void> sendFile(String peer, String path) =>
      call((n) => n.sendFiles(peer: peer, paths: [path]));

  Future<void> answer(Event_Offer offer, bool accept) {
    offers.removeWhere((o) => o.id == offer.id);
    return call((n) => accept ? n.acceptOffer(id: offer.id) : n.rejectOffer(id: offer.id));
  }

  Future<void> pause(String id, bool paused) =>
      call((n) => paused ? n.pauseTransfer(id: id) : n.resumeTransfer(id: id));

  Future<void> cancel(String id) => call((n) => n.cancelTransfer(id: id));
}

class HomePage extends StatelessWidget {
  const HomePage({super.key, required this.model});
  final NodeModel model;

  @override
  Widget build(BuildContext context) {
    return ListenableBuilder(
      listenable: model,
      builder: (context, _) => Scaffold(
        appBar: AppBar(title: const Text('PeerConnect')),
        body: ListView(children: [
          ListTile(subtitle: Text(model.status)),
          for (final o in model.offers)
            Card(
              child: ListTile(
                title: Text('${o.name} offers ${o.files} file(s), ${o.totalBytes} bytes'),
                subtitle: Text('${o.entries.map((e) => e.path).join(', ')}\n'
                    'code ${o.verificationCode}'),
                trailing: Wrap(children: [
                  TextButton(onPressed: () => model.answer(o, true), child: const Text('Accept')),
                  TextButton(onPressed: () => model.answer(o, false), child: const Text('Reject')),
                ]),
              ),
            ),
          for (final t in model.transfers.values)
            ListTile(
              title: Text(t.file ?? t.id),
              subtitle: LinearProgressIndicator(
                  value: t.totalBytes == BigInt.zero ? 1 : t.doneBytes / t.totalBytes),
              trailing: Wrap(children: [
                TextButton(
                    onPressed: () => model.pause(t.id, !t.paused),
                    child: Text(t.paused ? 'Resume' : 'Pause')),
                TextButton(onPressed: () => model.cancel(t.id), child: const Text('Cancel')),
              ]),
            ),
          const ListTile(title: Text('Peers')),
          for (final p in model.peers)
            ListTile(
              title: Text('${p.name} (${p.kind.name})'),
              subtitle: Text('${p.id.substring(0, 8)} · '
                  '${p.connected ? 'connected' : 'seen'} · code ${p.verificationCode}'),
              onTap: () => Navigator.push(context,
                  MaterialPageRoute(builder: (_) => ChatPage(model: model, peer: p))),
            ),
        ]),
      ),
    );
  }
}

class ChatPage extends StatefulWidget {
  const ChatPage({super.key, required this.model, required this.peer});
  final NodeModel model;
  final Peer peer;

  @override
  State<ChatPage> createState() => _ChatPageState();
}

class _ChatPageState extends State<ChatPage> {
  final draft = TextEditingController();

  @override
  void initState() {
    super.initState();
    widget.model.loadConversation(widget.peer.id);
  }

  @override
  Widget build(BuildContext context) {
    final model = widget.model;
    final peer = widget.peer;
    return ListenableBuilder(
      listenable: model,
      builder: (context, _) => Scaffold(
        appBar: AppBar(title: Text(peer.name), actions: [
          TextButton(
              onPressed: () => model.call((n) => n.setTrust(peer: peer.id, trust: Trust.trusted)),
              child: const Text('Trust')),
          IconButton(
            icon: const Icon(Icons.attach_file),
            onPressed: () async {
              final picked = await FilePicker.platform.pickFiles();
              final path = picked?.files.single.path;
              if (path != null) await model.sendFile(peer.id, path);
            },
          ),
        ]),
        body: Column(children: [
          Expanded(
            child: ListView(children: [
              for (final m in model.chats[peer.id] ?? const <Message>[])
                ListTile(
                  title: Text(m.text),
                  subtitle: Text('${m.outgoing ? 'me' : peer.name} · ${m.status.name}'),
                ),
            ]),
          ),
          Row(children: [
            Expanded(child: TextField(controller: draft)),
            IconButton(
              icon: const Icon(Icons.send),
              onPressed: () {
                model.send(peer.id, draft.text);
                draft.clear();
              },
            ),
          ]),
        ]),
      ),
    );
  }
}
