package org.peerconnect.android

import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.update
import uniffi.peerconnect.ApiException
import uniffi.peerconnect.Event
import uniffi.peerconnect.Message
import uniffi.peerconnect.Peer
import uniffi.peerconnect.PeerConnect
import uniffi.peerconnect.RoomInfo
import uniffi.peerconnect.RoomMessage

/**
 * What the screens show, fed by [follow] from the node's events. Holds no
 * protocol state: the node owns peers, messages, transfers and rooms; this is
 * a view of them, re-read from the node when an event says they changed.
 *
 * Uses no Android API: `bindings/uniffi/test.sh` compiles it against the
 * generated binding and runs it against the real library on the JVM.
 */
class NodeState {
    /** The running node, once [follow] has it. */
    val node = MutableStateFlow<PeerConnect?>(null)
    val status = MutableStateFlow("starting…")
    /** Every peer the node lists, of any kind (`Peer.kind`). */
    val peers = MutableStateFlow<List<Peer>>(emptyList())
    /** Conversations by peer id, oldest message first. */
    val chats = MutableStateFlow<Map<String, List<Message>>>(emptyMap())
    /** Offers waiting for the user's answer. */
    val offers = MutableStateFlow<List<Event.Offer>>(emptyList())
    /** Running transfers by id, with their latest progress. */
    val transfers = MutableStateFlow<Map<String, Event.Progress>>(emptyMap())
    /** Rooms joined, with their neighbour counts, as the node lists them. */
    val rooms = MutableStateFlow<List<RoomInfo>>(emptyList())
    /** Messages of joined rooms by room name, oldest first. */
    val roomMessages = MutableStateFlow<Map<String, List<RoomMessage>>>(emptyMap())

    /** Applies `node`'s events until it shuts down. */
    suspend fun follow(node: PeerConnect) {
        this.node.value = node
        while (true) {
            val event = node.nextEvent() ?: break
            apply(node, event)
        }
        status.value = "stopped"
    }

    /** Applies one event, re-reading from `node` what it says changed. */
    suspend fun apply(node: PeerConnect, event: Event) {
        when (event) {
            is Event.Listening -> status.value = "${event.name} · ${event.addrs.joinToString()}"
            is Event.PeerFound, is Event.PeerUpdated, is Event.PeerLost,
            is Event.PeerConnected, is Event.PeerDisconnected -> reread { peers.value = node.peers() }
            is Event.Error -> status.value = event.message
            is Event.MessageReceived -> addMessage(event.message)
            is Event.MessageStatus -> chats.update { all ->
                all.mapValues { (_, msgs) ->
                    msgs.map { if (it.id == event.id) it.copy(status = event.status) else it }
                }
            }
            is Event.RoomMessage -> addRoomMessage(event.room, event.message)
            is Event.RoomJoined -> reread {
                rooms.value = node.rooms()
                loadRoom(node, event.room)
            }
            is Event.RoomLeft -> {
                roomMessages.update { it - event.room }
                reread { rooms.value = node.rooms() }
            }
            is Event.Offer -> if (!event.autoAccepted) offers.update { it + event }
            is Event.Progress -> transfers.update { it + (event.id to event) }
            is Event.TransferDone -> status.value = "done: ${event.path}"
            is Event.TransferComplete -> endTransfer(event.id)
            is Event.TransferFailed -> if (event.path == null) {
                endTransfer(event.id)
                status.value = "transfer failed: ${event.error}"
            }
            is Event.TransferCancelled -> endTransfer(event.id)
            is Event.TransferRejected -> {
                endTransfer(event.id)
                status.value = "offer refused: ${event.reason}"
            }
            else -> {}
        }
    }

    /** A re-read that fails (the node is shutting down) leaves the old view. */
    private suspend fun reread(block: suspend () -> Unit) {
        try {
            block()
        } catch (_: ApiException) {
        }
    }

    /** A transfer's final event: it leaves the running list (and the offers, if unanswered). */
    private fun endTransfer(id: String) {
        transfers.update { it - id }
        dropOffer(id)
    }

    fun addMessage(m: Message) {
        val peer = if (m.outgoing) m.recipient else m.sender
        chats.update { it + (peer to ((it[peer] ?: emptyList()) + m)) }
    }

    fun setConversation(peer: String, messages: List<Message>) {
        chats.update { it + (peer to messages) }
    }

    fun dropOffer(id: String) = offers.update { all -> all.filter { it.id != id } }

    /** Appends a message the room's list lacks (ours come back as events too). */
    private fun addRoomMessage(room: String, m: RoomMessage) = roomMessages.update { all ->
        val list = all[room] ?: emptyList()
        if (list.any { it.id == m.id }) all else all + (room to (list + m))
    }

    /**
     * Reads the room's stored history (the latest 200 messages) and puts it
     * before the messages that arrived as events and are not in it.
     */
    fun loadRoom(node: PeerConnect, room: String) {
        val page = node.roomHistory(room, null, 200u)
        val stored = page.map { it.id }.toSet()
        roomMessages.update { all ->
            all + (room to (page + (all[room] ?: emptyList()).filter { it.id !in stored }))
        }
    }
}

/** The app's one state, fed by [NodeService]. */
val AppState = NodeState()
