// The Kotlin binding on the JVM against the real library: two nodes in one
// process on 127.0.0.1 with discovery off. Run by bindings/uniffi/test.sh.

import java.nio.file.Files
import java.nio.file.Path
import kotlin.system.exitProcess
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import uniffi.peerconnect.ApiException
import uniffi.peerconnect.DeliveryStatus
import uniffi.peerconnect.Event
import uniffi.peerconnect.NodeConfig
import uniffi.peerconnect.PeerConnect
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
