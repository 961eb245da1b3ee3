"""The Python binding against the real library: two nodes in one process on
127.0.0.1 with discovery off.

Run by bindings/uniffi/test.sh against the package as a user installs it
(`pip install ./bindings/uniffi`, into a venv under target/), from this folder,
so nothing but the installed `peerconnect` can be imported. Prints
`python: N passed, M failed`.
"""

import asyncio
import json
import os
import sys
import tempfile
import unittest
import urllib.request

from peerconnect import (
    ApiError,
    DeliveryStatus,
    DeviceKind,
    Direction,
    Event,
    NodeConfig,
    OfferEntry,
    PeerConnect,
    TransferState,
    Trust,
)

# A deadline for things that happen in milliseconds on loopback; never a
# measure of speed.
DEADLINE = 20


def local_config(data_dir, name):
    return NodeConfig(
        data_dir=data_dir,
        name=name,
        listen_addr="127.0.0.1:0",
        discovery=False,
        downloads_dir=os.path.join(data_dir, "downloads"),
    )


async def next_matching(node, what, pick):
    """The first value `pick(event)` returns that is not None, within DEADLINE."""

    async def scan():
        while True:
            event = await node.next_event()
            if event is None:
                raise AssertionError(f"event stream ended while waiting for {what}")
            got = pick(event)
            if got is not None:
                return got

    try:
        return await asyncio.wait_for(scan(), DEADLINE)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {what} within {DEADLINE}s") from None


async def wait_until(what, check):
    """Polls the async `check()` until it returns a value that is not None."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while loop.time() < end:
        got = await check()
        if got is not None:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not within {DEADLINE}s")


class BrowserGuest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.dir = tempfile.TemporaryDirectory()
        config = local_config(self.dir.name, "host")
        self.node = await PeerConnect.start_with_web_ui(config, "127.0.0.1:0")

    async def asyncTearDown(self):
        await self.node.shutdown()
        self.dir.cleanup()

    async def test_a_browser_guest_that_entered_the_pin_is_a_peer(self):
        web = self.node.web_ui()
        self.assertIsNotNone(web)
        url = next(u for u in web.urls if "127.0.0.1" in u).rstrip("/")
        origin = url  # the server checks that a POST comes from its own page

        def login():
            req = urllib.request.Request(
                f"{url}/api/login",
                data=json.dumps({"pin": web.pin, "name": "py phone"}).encode(),
                headers={"Content-Type": "application/json", "Origin": origin},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=DEADLINE) as r:
                return json.load(r)

        guest = (await asyncio.to_thread(login))["guest"]
        peers = [p for p in await self.node.peers() if p.id == guest["id"]]
        self.assertEqual(len(peers), 1)
        self.assertEqual((peers[0].name, peers[0].kind), ("py phone", DeviceKind.BROWSER))
        # The owner messages it like any peer: delivered once stored.
        sent = await self.node.send_message(guest["id"], "hello py phone")
        self.assertEqual(sent.status, DeliveryStatus.DELIVERED)


class TwoNodes(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.a_dir = os.path.join(self.dir.name, "a")
        self.a = await PeerConnect.start(local_config(self.a_dir, "alpha"))
        self.b = await PeerConnect.start(local_config(os.path.join(self.dir.name, "b"), "beta"))

    async def asyncTearDown(self):
        await self.a.shutdown()
        await self.b.shutdown()
        self.dir.cleanup()

    async def connect(self):
        got = await self.b.connect(self.a.listen_addrs()[0])
        self.assertEqual(got, self.a.id())

    async def test_first_event_says_where_the_node_listens(self):
        event = await self.a.next_event()
        self.assertIsInstance(event, Event.LISTENING)
        self.assertEqual(event.id, self.a.id())
        self.assertEqual(event.name, "alpha")
        self.assertEqual(event.addrs, self.a.listen_addrs())
        self.assertTrue(event.addrs[0].startswith("127.0.0.1:"))
        self.assertEqual(len(self.a.id()), 52)

    async def test_connected_nodes_list_each_other_with_one_code(self):
        await self.connect()

        def connected_to(peer_id):
            def pick(e):
                if isinstance(e, Event.PEER_CONNECTED) and e.peer.id == peer_id:
                    return e
                return None

            return pick

        on_a = await next_matching(self.a, "a's PeerConnected for b", connected_to(self.b.id()))
        on_b = await next_matching(self.b, "b's PeerConnected for a", connected_to(self.a.id()))
        self.assertEqual(on_a.peer.name, "beta")
        self.assertEqual(on_b.peer.name, "alpha")
        self.assertEqual(on_a.verification_code, on_b.verification_code)
        self.assertEqual(len(on_a.verification_code), 6)

        peers = await self.b.peers()
        self.assertEqual([(p.id, p.name, p.connected) for p in peers], [(self.a.id(), "alpha", True)])
        self.assertEqual(peers[0].trust, Trust.UNKNOWN)

    async def test_trust_set_by_name_shows_in_peers(self):
        await self.connect()
        await self.b.set_trust("alpha", Trust.TRUSTED)

        async def trusted():
            peers = await self.b.peers()
            return True if [p.trust for p in peers] == [Trust.TRUSTED] else None

        await wait_until("alpha trusted in b's peers", trusted)

    async def test_dht_finds_a_peer_by_name(self):
        await self.connect()

        async def found():
            got = await self.b.find("alpha")
            return got or None

        found = await wait_until("alpha found through the DHT", found)
        self.assertEqual([(f.id, f.name) for f in found], [(self.a.id(), "alpha")])

    async def test_message_arrives_and_is_acknowledged(self):
        await self.connect()
        sent = await self.a.send_message(self.b.id(), "hello from python")
        self.assertTrue(sent.outgoing)
        self.assertEqual((sent.sender, sent.recipient, sent.text), (self.a.id(), self.b.id(), "hello from python"))

        got = await next_matching(
            self.b,
            "b's MessageReceived",
            lambda e: e.message if isinstance(e, Event.MESSAGE_RECEIVED) else None,
        )
        self.assertEqual((got.id, got.sender, got.text, got.outgoing), (sent.id, self.a.id(), sent.text, False))
        await next_matching(
            self.a,
            "a's MessageStatus delivered",
            lambda e: e
            if isinstance(e, Event.MESSAGE_STATUS) and e.id == sent.id and e.status == DeliveryStatus.DELIVERED
            else None,
        )
        history = await self.b.conversation("alpha", None, 50)
        self.assertEqual([m.text for m in history], ["hello from python"])
        self.assertEqual(await self.b.mark_read(self.a.id(), got.id), 1)
        with self.assertRaises(ApiError.Invalid):
            await self.a.send_message(self.b.id(), "x" * (64 * 1024 + 1))

    def write_file(self, name, content):
        path = os.path.join(self.dir.name, name)
        with open(path, "wb") as f:
            f.write(content)
        return path

    async def test_file_sent_is_offered_accepted_and_arrives_whole(self):
        await self.connect()
        content = os.urandom(200_000) + b"the end\n"
        source = self.write_file("report.bin", content)
        transfer = await self.a.send_files(self.b.id(), [source])
        self.assertEqual(len(transfer), 16)

        offer = await next_matching(
            self.b,
            "b's Offer",
            lambda e: e if isinstance(e, Event.OFFER) and e.id == transfer else None,
        )
        self.assertEqual((offer.peer, offer.name), (self.a.id(), "alpha"))
        self.assertEqual((offer.files, offer.total_bytes), (1, len(content)))
        self.assertEqual(offer.entries, [OfferEntry(path="report.bin", size=len(content), dir=False)])
        self.assertFalse(offer.auto_accepted)
        self.b.accept_offer(offer.id)

        done = await next_matching(
            self.b,
            "b's TransferDone",
            lambda e: e if isinstance(e, Event.TRANSFER_DONE) and e.id == transfer else None,
        )
        self.assertEqual(done.direction, Direction.RECEIVE)
        self.assertEqual(done.bytes, len(content))
        self.assertEqual(len(done.blake3), 64)
        with open(done.path, "rb") as f:
            self.assertEqual(f.read(), content)
        self.assertEqual(os.path.dirname(done.path), os.path.join(self.dir.name, "b", "downloads"))

        def complete(e):
            if isinstance(e, Event.TRANSFER_COMPLETE) and e.id == transfer:
                return e
            if isinstance(e, (Event.TRANSFER_FAILED, Event.TRANSFER_CANCELLED, Event.TRANSFER_REJECTED)):
                if e.id == transfer and getattr(e, "path", None) is None:
                    raise AssertionError(f"transfer ended with {e}")
            return None

        on_b = await next_matching(self.b, "b's TransferComplete", complete)
        on_a = await next_matching(self.a, "a's TransferComplete", complete)
        for side in (on_a, on_b):
            self.assertEqual((side.files, side.failed, side.bytes), (1, 0, len(content)))
        self.assertEqual((on_a.direction, on_b.direction), (Direction.SEND, Direction.RECEIVE))
        listed = [(t.id, t.direction, t.state) for t in self.a.transfers()]
        self.assertIn((transfer, Direction.SEND, TransferState.COMPLETE), listed)

    async def test_offer_accepted_into_a_folder_lands_there(self):
        await self.connect()
        content = b"into a folder of my choosing\n" * 100
        source = self.write_file("notes.txt", content)
        transfer = await self.a.send_files("beta", [source])
        offer = await next_matching(
            self.b, "b's Offer", lambda e: e if isinstance(e, Event.OFFER) and e.id == transfer else None
        )
        chosen = os.path.join(self.dir.name, "chosen")
        self.b.accept_offer_into(offer.id, chosen)
        done = await next_matching(
            self.b,
            "b's TransferDone",
            lambda e: e if isinstance(e, Event.TRANSFER_DONE) and e.id == transfer else None,
        )
        self.assertEqual(done.path, os.path.join(chosen, "notes.txt"))
        with open(done.path, "rb") as f:
            self.assertEqual(f.read(), content)

    async def test_rejected_offer_tells_the_sender(self):
        await self.connect()
        transfer = await self.a.send_files(self.b.id(), [self.write_file("unwanted.txt", b"no thanks")])
        offer = await next_matching(
            self.b, "b's Offer", lambda e: e if isinstance(e, Event.OFFER) and e.id == transfer else None
        )
        self.b.reject_offer(offer.id)
        rejected = await next_matching(
            self.a,
            "a's TransferRejected",
            lambda e: e if isinstance(e, Event.TRANSFER_REJECTED) and e.id == transfer else None,
        )
        self.assertEqual((rejected.peer, rejected.direction), (self.b.id(), Direction.SEND))
        self.assertFalse(os.path.exists(os.path.join(self.dir.name, "b", "downloads", "unwanted.txt")))
        with self.assertRaises(ApiError.Invalid):
            self.b.accept_offer(offer.id)

    async def test_transfer_calls_on_unknown_ids_raise_invalid(self):
        with self.assertRaises(ApiError.Invalid):
            self.b.accept_offer("not a transfer id")
        for call in (self.b.accept_offer, self.b.reject_offer, self.b.pause_transfer, self.b.cancel_transfer):
            with self.assertRaises(ApiError.Invalid):
                call("00000000000000aa")
        with self.assertRaises(ApiError.Invalid):
            await self.a.send_files(self.b.id(), [])

    async def test_room_message_reaches_the_other_member(self):
        await self.connect()
        await self.a.join_room("lobby")
        await self.b.join_room("lobby")
        await next_matching(
            self.b, "b's RoomJoined", lambda e: e if isinstance(e, Event.ROOM_JOINED) and e.room == "lobby" else None
        )
        said = await self.a.room_say_and_wait("lobby", "hello room", DEADLINE * 1000)
        self.assertEqual((said.message.author, said.message.text), (self.a.id(), "hello room"))

        got = await next_matching(
            self.b,
            "b's RoomMessage",
            lambda e: e.message if isinstance(e, Event.ROOM_MESSAGE) and e.room == "lobby" else None,
        )
        self.assertEqual(
            (got.id, got.author, got.author_name, got.text),
            (said.message.id, self.a.id(), "alpha", "hello room"),
        )
        self.assertEqual([m.text for m in self.b.room_history("lobby", None, 10)], ["hello room"])
        self.assertEqual([r.name for r in await self.b.rooms()], ["lobby"])
        await self.b.leave_room("lobby")
        await next_matching(
            self.b, "b's RoomLeft", lambda e: e if isinstance(e, Event.ROOM_LEFT) and e.room == "lobby" else None
        )
        self.assertEqual(await self.b.rooms(), [])

    async def test_room_share_and_tree_send_reach_the_member(self):
        await self.connect()
        content = os.urandom(100_000)
        source = self.write_file("slides.bin", content)
        with self.assertRaises(ApiError.Invalid):
            await self.a.send_to_room("lobby", [source])
        await self.a.join_room("lobby")
        await self.b.join_room("lobby")

        async def member_known():
            rooms = await self.a.rooms()
            return True if any(r.name == "lobby" and r.neighbors == 1 for r in rooms) else None

        await wait_until("b as a's neighbour in lobby", member_known)

        async def received(ids, folder):
            offer = await next_matching(
                self.b, "b's Offer", lambda e: e if isinstance(e, Event.OFFER) and e.id in ids else None
            )
            self.b.accept_offer_into(offer.id, folder)
            done = await next_matching(
                self.b,
                "b's TransferDone",
                lambda e: e if isinstance(e, Event.TRANSFER_DONE) and e.id == offer.id else None,
            )
            with open(done.path, "rb") as f:
                self.assertEqual(f.read(), content)

        ids = await self.a.send_to_room("lobby", [source])
        self.assertEqual(len(ids), 1)
        await received(ids, os.path.join(self.dir.name, "from-room"))
        ids = await self.a.send_tree([self.b.id()], source)
        self.assertEqual(len(ids), 1)
        await received(ids, os.path.join(self.dir.name, "from-tree"))

    async def test_errors_raise_api_error_by_kind(self):
        with self.assertRaises(ApiError.Invalid):
            await self.b.connect("not an address")
        with self.assertRaises(ApiError.NotFound):
            await self.b.set_trust("nobody-by-this-name", Trust.BLOCKED)
        with self.assertRaises(ApiError.Io) as caught:
            await PeerConnect.start(local_config(self.a_dir, "alpha-again"))
        self.assertIn("in use", str(caught.exception))

    async def test_shutdown_ends_events_and_later_calls_fail(self):
        await self.connect()
        await self.a.shutdown()

        async def drain():
            while await self.a.next_event() is not None:
                pass

        await asyncio.wait_for(drain(), DEADLINE)
        with self.assertRaises(ApiError.Shutdown):
            await self.a.peers()
        a_id = self.a.id()
        await next_matching(
            self.b,
            "b's PeerDisconnected for a",
            lambda e: e if isinstance(e, Event.PEER_DISCONNECTED) and e.id == a_id else None,
        )


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    print(f"python: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(0 if result.wasSuccessful() else 1)
