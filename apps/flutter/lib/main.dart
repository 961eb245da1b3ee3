// PeerConnect on Flutter: peers, offers, transfers, chat and rooms over the
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
/// protocol state: the node owns peers, messages, transfers and rooms; this is
/// a view of them, re-read from the node when an event says they changed.
class NodeModel extends ChangeNotifier {
  PeerConnect? node;
  String status = 'starting…';
  /// Every peer the node lists, of any kind (`Peer.kind`).
  List<Peer> peers = [];
  final Map<String, List<Message>> chats = {};
  /// Offers waiting for the user's answer.
  final List<Event_Offer> offers = [];
  /// Running transfers by id, with their latest progress.
  final Map<String, Event_Progress> transfers = {};
  /// Rooms joined, with their neighbour counts, as the node lists them.
  List<RoomInfo> rooms = [];
  /// Messages of joined rooms by room name, oldest first.
  final Map<String, List<RoomMessage>> roomMessages = {};

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
      case Event_RoomMessage(:final room, :final message):
        _addRoomMessage(room, message);
      case Event_RoomJoined(:final room):
        rooms = await node!.rooms();
        await _loadRoom(node!, room);
      case Event_RoomLeft(:final room):
        roomMessages.remove(room);
        rooms = await node!.rooms();
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

  /// Appends a message the room's list lacks (ours come back as events too).
  void _addRoomMessage(String room, RoomMessage m) {
    final list = roomMessages[room] ??= [];
    if (!list.any((x) => x.id == m.id)) list.add(m);
  }

  /// Reads the room's stored history (the latest 200 messages) and puts it
  /// before the messages that arrived as events and are not in it.
  Future<void> _loadRoom(PeerConnect n, String room) async {
    final page = await n.roomHistory(name: room, before: null, limit: 200);
    final stored = {for (final m in page) m.id};
    roomMessages[room] = [
      ...page,
      ...?roomMessages[room]?.where((m) => !stored.contains(m.id)),
    ];
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

  /// Joins room `name`; `RoomJoined` then lists it and loads its history.
  Future<void> joinRoom(String name) => call((n) => n.joinRoom(name: name));

  /// Leaves room `name`; `RoomLeft` then drops it.
  Future<void> leaveRoom(String name) => call((n) => n.leaveRoom(name: name));

  /// Says `text` in `room`; it shows when the node's `RoomMessage` arrives.
  Future<void> say(String room, String text) =>
      call((n) => n.roomSay(name: room, text: text));

  Future<void> loadRoom(String room) => call((n) => _loadRoom(n, room));
}

class HomePage extends StatelessWidget {
  const HomePage({super.key, required this.model});
  final NodeModel model;

  @override
  Widget build(BuildContext context) {
    return ListenableBuilder(
      listenable: model,
      builder: (context, _) => Scaffold(
        appBar: AppBar(title: const Text('PeerConnect'), actions: [
          TextButton(
            onPressed: () => Navigator.push(
                context, MaterialPageRoute(builder: (_) => RoomsPage(model: model))),
            child: const Text('Rooms'),
          ),
        ]),
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
              // the kind as the binding names it, so kinds added later show as they are
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

/// Rooms joined, with their neighbour counts, and joining one by name.
class RoomsPage extends StatefulWidget {
  const RoomsPage({super.key, required this.model});
  final NodeModel model;

  @override
  State<RoomsPage> createState() => _RoomsPageState();
}

class _RoomsPageState extends State<RoomsPage> {
  final name = TextEditingController();

  @override
  void dispose() {
    name.dispose();
    super.dispose();
  }

  void _join() {
    final room = name.text.trim();
    if (room.isEmpty) return;
    widget.model.joinRoom(room);
    name.clear();
  }

  @override
  Widget build(BuildContext context) {
    final model = widget.model;
    return ListenableBuilder(
      listenable: model,
      builder: (context, _) => Scaffold(
        appBar: AppBar(title: const Text('Rooms')),
        body: ListView(children: [
          ListTile(
            title: TextField(
              controller: name,
              decoration: const InputDecoration(hintText: 'Room name'),
              onSubmitted: (_) => _join(),
            ),
            trailing: TextButton(onPressed: _join, child: const Text('Join')),
          ),
          for (final r in model.rooms)
            ListTile(
              title: Text(r.name),
              subtitle: Text('${r.neighbors} neighbours'),
              onTap: () => Navigator.push(context,
                  MaterialPageRoute(builder: (_) => RoomPage(model: model, room: r.name))),
            ),
        ]),
      ),
    );
  }
}

/// One room's messages, oldest first, a line to say something, and leaving.
class RoomPage extends StatefulWidget {
  const RoomPage({super.key, required this.model, required this.room});
  final NodeModel model;
  final String room;

  @override
  State<RoomPage> createState() => _RoomPageState();
}

class _RoomPageState extends State<RoomPage> {
  final draft = TextEditingController();

  @override
  void initState() {
    super.initState();
    widget.model.loadRoom(widget.room);
  }

  @override
  void dispose() {
    draft.dispose();
    super.dispose();
  }

  @override
  Widget build(BuildContext context) {
    final model = widget.model;
    final room = widget.room;
    return ListenableBuilder(
      listenable: model,
      builder: (context, _) => Scaffold(
        appBar: AppBar(title: Text(room), actions: [
          TextButton(
            onPressed: () {
              model.leaveRoom(room);
              Navigator.pop(context);
            },
            child: const Text('Leave'),
          ),
        ]),
        body: Column(children: [
          Expanded(
            child: ListView(children: [
              for (final m in model.roomMessages[room] ?? const <RoomMessage>[])
                ListTile(title: Text(m.text), subtitle: Text(m.authorName)),
            ]),
          ),
          Row(children: [
            Expanded(child: TextField(controller: draft)),
            IconButton(
              icon: const Icon(Icons.send),
              onPressed: () {
                if (draft.text.isEmpty) return;
                model.say(room, draft.text);
                draft.clear();
              },
            ),
          ]),
        ]),
      ),
    );
  }
}
