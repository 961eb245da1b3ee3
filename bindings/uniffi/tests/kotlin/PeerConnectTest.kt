// The Kotlin binding on the JVM against the real library: two nodes in one
// process on 127.0.0.1 with discovery off. Run by bindings/uniffi/test.sh.

import java.nio.file.Files
import java.nio.file.Path
import kotlin.system.exitProcess
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import org.peerconnect.android.NodeState
import uniffi.peerconnect.ApiException
import uniffi.peerconnect.DeliveryStatus
import uniffi.peerconnect.Direction
import uniffi.peerconnect.Event
import uniffi.peerconnect.NodeConfig
import uniffi.peerconnect.OfferEntry
import uniffi.peerconnect.PeerConnect
import uniffi.peerconnect.TransferState
import uniffi.peerconnect.Trust

// A deadline for things that take milliseconds on loopback; never a measure of speed.
const val DEADLINE_MS = 20_000L

fun localConfig(dir: Path, name: String) = NodeConfig(
    dataDir = dir.toString(),
    name = name,
    listenAddr = "127.0.0.1:0",
    discovery = false,
    downloadsDir = dir.resolve("downloads").toString(),
)

suspend fun <T> PeerConnect.nextMatching(what: String, pick: (Event) -> T?): T =
    withTimeoutOrNull(DEADLINE_MS) {
        while (true) {
            val event = nextEvent() ?: error("event stream ended while waiting for $what")
            pick(event)?.let { return@withTimeoutOrNull it }
        }
        @Suppress("UNREACHABLE_CODE")
        null
    } ?: error("no $what within ${DEADLINE_MS / 1000}s")

suspend fun <T> waitUntil(what: String, check: suspend () -> T?): T =
    withTimeoutOrNull(DEADLINE_MS) {
        var got = check()
        while (got == null) {
            delay(50)
            got = check()
        }
        got
    } ?: error("$what not within ${DEADLINE_MS / 1000}s")

inline fun <reified E : Throwable> assertThrows(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("$what: expected ${E::class.simpleName}, got $e", e)
    }
    throw AssertionError("$what: expected ${E::class.simpleName}, nothing was thrown")
}

fun check(cond: Boolean, what: () -> String) {
    if (!cond) throw AssertionError(what())
}

class TwoNodes(val dir: Path, val a: PeerConnect, val b: PeerConnect) {
    suspend fun connect() {
        val got = b.connect(a.listenAddrs()[0])
        check(got == a.id()) { "connect returned $got, not ${a.id()}" }
    }

    fun writeFile(name: String, content: ByteArray): Path =
        dir.resolve(name).also { Files.write(it, content) }
}

// The final event of `transfer`: TransferComplete, or a failure this test reports.
fun completeOf(transfer: String): (Event) -> Event.TransferComplete? = { e ->
    when {
        e is Event.TransferComplete && e.id == transfer -> e
        e is Event.TransferFailed && e.id == transfer && e.path == null -> error("transfer failed: $e")
        e is Event.TransferCancelled && e.id == transfer -> error("transfer cancelled: $e")
        e is Event.TransferRejected && e.id == transfer -> error("transfer rejected: $e")
        else -> null
    }
}

suspend fun twoNodes(body: suspend TwoNodes.() -> Unit) {
    val dir = Files.createTempDirectory("pc-kotlin")
    val a = PeerConnect.start(localConfig(dir.resolve("a"), "alpha"))
    val b = PeerConnect.start(localConfig(dir.resolve("b"), "beta"))
    try {
        TwoNodes(dir, a, b).body()
    } finally {
        a.shutdown()
        b.shutdown()
        a.close()
        b.close()
        dir.toFile().deleteRecursively()
    }
}

val tests: List<Pair<String, suspend () -> Unit>> = listOf(
    "first event says where the node listens" to suspend {
        twoNodes {
            val e = a.nextEvent()
            check(e is Event.Listening) { "first event $e" }
            e as Event.Listening
            check(e.id == a.id() && e.name == "alpha") { "listening $e" }
            check(e.addrs == a.listenAddrs() && e.addrs[0].startsWith("127.0.0.1:")) { "addrs ${e.addrs}" }
        }
    },
    "connected nodes list each other with one code" to suspend {
        twoNodes {
            connect()
            val onA = a.nextMatching("a's PeerConnected for b") { e ->
                (e as? Event.PeerConnected)?.takeIf { it.peer.id == b.id() }
            }
            val onB = b.nextMatching("b's PeerConnected for a") { e ->
                (e as? Event.PeerConnected)?.takeIf { it.peer.id == a.id() }
            }
            check(onA.peer.name == "beta" && onB.peer.name == "alpha") { "names $onA $onB" }
            check(onA.verificationCode == onB.verificationCode && onA.verificationCode.length == 6) {
                "codes ${onA.verificationCode} ${onB.verificationCode}"
            }
            val peers = b.peers()
            check(peers.map { Triple(it.id, it.name, it.connected) } == listOf(Triple(a.id(), "alpha", true))) {
                "b's peers $peers"
            }
            check(peers[0].trust == Trust.UNKNOWN) { "trust ${peers[0].trust}" }
        }
    },
    "trust set by name shows in peers" to suspend {
        twoNodes {
            connect()
            b.setTrust("alpha", Trust.TRUSTED)
            val peers = waitUntil("alpha trusted in b's peers") {
                b.peers().takeIf { ps -> ps.map { it.trust } == listOf(Trust.TRUSTED) }
            }
            check(peers[0].id == a.id()) { "b's peers $peers" }
        }
    },
    "DHT finds a peer by name" to suspend {
        twoNodes {
            connect()
            val found = waitUntil("alpha found through the DHT") { b.find("alpha").ifEmpty { null } }
            check(found.map { it.id to it.name } == listOf(a.id() to "alpha")) { "found $found" }
        }
    },
    "a message arrives and is acknowledged" to suspend {
        twoNodes {
            connect()
            val sent = a.sendMessage(b.id(), "hello from kotlin")
            check(sent.outgoing && sent.sender == a.id() && sent.recipient == b.id()) { "sent $sent" }
            val got = b.nextMatching("b's MessageReceived") { e -> (e as? Event.MessageReceived)?.message }
            check(got.id == sent.id && got.sender == a.id() && got.text == "hello from kotlin" && !got.outgoing) {
                "received $got"
            }
            val delivered = a.nextMatching("a's MessageStatus delivered") { e ->
                (e as? Event.MessageStatus)?.takeIf { it.id == sent.id && it.status == DeliveryStatus.DELIVERED }
            }
            check(delivered.peer == b.id()) { "status $delivered" }
            val history = b.conversation("alpha", null, 50u)
            check(history.map { it.text } == listOf("hello from kotlin")) { "history $history" }
            check(b.markRead(a.id(), got.id) == 1uL) { "mark read" }
            assertThrows<ApiException.Invalid>("text over 64 KiB") {
                runBlocking { a.sendMessage(b.id(), "x".repeat(64 * 1024 + 1)) }
            }
        }
    },
    "a file sent is offered, accepted and arrives whole" to suspend {
        twoNodes {
            connect()
            val content = ByteArray(200_000) { (it * 31 + 7).toByte() } + "the end\n".toByteArray()
            val source = writeFile("report.bin", content)
            val transfer = a.sendFiles(b.id(), listOf(source.toString()))
            check(transfer.length == 16) { "transfer id $transfer" }
            val offer = b.nextMatching("b's Offer") { e -> (e as? Event.Offer)?.takeIf { it.id == transfer } }
            check(offer.peer == a.id() && offer.name == "alpha" && !offer.autoAccepted) { "offer $offer" }
            check(offer.files == 1uL && offer.totalBytes == content.size.toULong()) { "offer $offer" }
            check(offer.entries == listOf(OfferEntry("report.bin", content.size.toULong(), false))) {
                "entries ${offer.entries}"
            }
            b.acceptOffer(offer.id)
            val done = b.nextMatching("b's TransferDone") { e ->
                (e as? Event.TransferDone)?.takeIf { it.id == transfer }
            }
            check(done.direction == Direction.RECEIVE && done.bytes == content.size.toULong()) { "done $done" }
            check(done.blake3.length == 64) { "blake3 ${done.blake3}" }
            check(Files.readAllBytes(Path.of(done.path)).contentEquals(content)) { "content of ${done.path}" }
            check(Path.of(done.path).parent == dir.resolve("b").resolve("downloads")) { "path ${done.path}" }
            val onB = b.nextMatching("b's TransferComplete", completeOf(transfer))
            val onA = a.nextMatching("a's TransferComplete", completeOf(transfer))
            for (side in listOf(onA, onB)) {
                check(side.files == 1uL && side.failed == 0uL && side.bytes == content.size.toULong()) { "complete $side" }
            }
            check(onA.direction == Direction.SEND && onB.direction == Direction.RECEIVE) { "directions $onA $onB" }
            val listed = a.transfers().map { Triple(it.id, it.direction, it.state) }
            check(Triple(transfer, Direction.SEND, TransferState.COMPLETE) in listed) { "a's transfers $listed" }
        }
    },
    "a rejected offer tells the sender" to suspend {
        twoNodes {
            connect()
            val transfer = a.sendFiles("beta", listOf(writeFile("unwanted.txt", "no thanks".toByteArray()).toString()))
            val offer = b.nextMatching("b's Offer") { e -> (e as? Event.Offer)?.takeIf { it.id == transfer } }
            b.rejectOffer(offer.id)
            val rejected = a.nextMatching("a's TransferRejected") { e ->
                (e as? Event.TransferRejected)?.takeIf { it.id == transfer }
            }
            check(rejected.peer == b.id() && rejected.direction == Direction.SEND) { "rejected $rejected" }
            check(!Files.exists(dir.resolve("b/downloads/unwanted.txt"))) { "rejected file was written" }
            assertThrows<ApiException.Invalid>("accept after reject") { b.acceptOffer(offer.id) }
            assertThrows<ApiException.Invalid>("bad transfer id") { b.cancelTransfer("not a transfer id") }
        }
    },
    "a room message reaches the other member" to suspend {
        twoNodes {
            connect()
            a.joinRoom("lobby")
            b.joinRoom("lobby")
            b.nextMatching("b's RoomJoined") { e -> (e as? Event.RoomJoined)?.takeIf { it.room == "lobby" } }
            val said = a.roomSayAndWait("lobby", "hello room", DEADLINE_MS.toULong())
            val got = b.nextMatching("b's RoomMessage") { e ->
                (e as? Event.RoomMessage)?.takeIf { it.room == "lobby" }?.message
            }
            check(got.id == said.message.id && got.author == a.id() && got.authorName == "alpha") { "got $got" }
            check(got.text == "hello room") { "text ${got.text}" }
            check(b.roomHistory("lobby", null, 10u).map { it.text } == listOf("hello room")) { "history" }
            val rooms = b.rooms()
            check(rooms.map { it.name } == listOf("lobby")) { "rooms $rooms" }
            b.leaveRoom("lobby")
            b.nextMatching("b's RoomLeft") { e -> (e as? Event.RoomLeft)?.takeIf { it.room == "lobby" } }
            val left = b.rooms()
            check(left.isEmpty()) { "rooms after leaving $left" }
        }
    },
    "errors raise ApiException by kind" to suspend {
        twoNodes {
            assertThrows<ApiException.Invalid>("bad address") { runBlocking { b.connect("not an address") } }
            assertThrows<ApiException.NotFound>("unknown peer") {
                runBlocking { b.setTrust("nobody-by-this-name", Trust.BLOCKED) }
            }
            val e = assertThrows<ApiException.Io>("data dir in use") {
                runBlocking { PeerConnect.start(localConfig(dir.resolve("a"), "alpha-again")) }
            }
            check(e.message!!.contains("in use")) { "message ${e.message}" }
        }
    },
    "the Android shell's state follows a peer, its offer and a room" to suspend {
        twoNodes {
            val state = NodeState()
            coroutineScope {
                val following = launch { state.follow(a) }
                connect()
                val listed = waitUntil("beta connected in the state's peers") {
                    state.peers.value.firstOrNull { it.name == "beta" && it.connected }
                }
                check(listed.id == b.id()) { "listed $listed" }

                val content = ByteArray(50_000) { (it * 7).toByte() }
                val transfer = b.sendFiles(a.id(), listOf(writeFile("photo.jpg", content).toString()))
                val offer = waitUntil("beta's offer in the state") { state.offers.value.firstOrNull { it.id == transfer } }
                check(offer.name == "beta" && offer.entries.map { it.path } == listOf("photo.jpg")) { "offer $offer" }
                // what the Accept button does
                state.dropOffer(offer.id)
                a.acceptOffer(offer.id)
                val status = waitUntil("the state's done status") { state.status.value.takeIf { it.startsWith("done: ") } }
                check(Files.readAllBytes(Path.of(status.removePrefix("done: "))).contentEquals(content)) { "content of $status" }
                waitUntil("the transfer gone from the running list") { if (transfer in state.transfers.value) null else true }
                check(state.offers.value.isEmpty()) { "offers ${state.offers.value}" }

                a.joinRoom("lobby")
                waitUntil("lobby in the state's rooms") { if (state.rooms.value.map { it.name } == listOf("lobby")) true else null }
                b.joinRoom("lobby")
                val said = b.roomSayAndWait("lobby", "hello android", DEADLINE_MS.toULong())
                check(said.reached.isNotEmpty()) { "beta's message reached nobody" }
                val got = waitUntil("beta's message in the state") {
                    state.roomMessages.value["lobby"]?.firstOrNull { it.text == "hello android" }
                }
                check(got.authorName == "beta" && got.author == b.id()) { "got $got" }
                a.roomSay("lobby", "hello beta")
                // ours comes back as an event too, and shows once
                waitUntil("both messages, once each, in the state") {
                    if (state.roomMessages.value["lobby"]?.map { it.text } == listOf("hello android", "hello beta")) true else null
                }
                // opening the room's screen again reads the history, which has both
                state.loadRoom(a, "lobby")
                val shown = state.roomMessages.value["lobby"]?.map { it.text }
                check(shown == listOf("hello android", "hello beta")) { "after reading the history: $shown" }
                a.leaveRoom("lobby")
                waitUntil("lobby gone from the state") {
                    if (state.rooms.value.isEmpty() && "lobby" !in state.roomMessages.value) true else null
                }

                a.shutdown()
                withTimeout(DEADLINE_MS) { following.join() }
                check(state.status.value == "stopped") { "status ${state.status.value}" }
            }
        }
    },
    "shutdown ends events and later calls fail" to suspend {
        twoNodes {
            connect()
            a.shutdown()
            withTimeout(DEADLINE_MS) { while (a.nextEvent() != null) Unit }
            assertThrows<ApiException.Shutdown>("peers after shutdown") { runBlocking { a.peers() } }
            val aId = a.id()
            val gone = b.nextMatching("b's PeerDisconnected for a") { e ->
                (e as? Event.PeerDisconnected)?.takeIf { it.id == aId }
            }
            check(gone.id == aId) { "disconnected $gone" }
        }
    },
)

fun main() {
    var failed = 0
    for ((name, body) in tests) {
        try {
            runBlocking { body() }
            println("ok      $name")
        } catch (e: Throwable) {
            failed++
            println("FAILED  $name: $e")
            e.printStackTrace()
        }
    }
    println("kotlin: ${tests.size - failed} passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
