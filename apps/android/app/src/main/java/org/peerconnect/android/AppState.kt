package org.peerconnect.android

import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.update
import uniffi.peerconnect.Event
import uniffi.peerconnect.Message
import uniffi.peerconnect.Peer
import uniffi.peerconnect.PeerConnect

/**
 * What the screens show, fed by [NodeService] from the node's events. Holds no
 * protocol state: the node owns peers, messages and transfers; this is a view.
 */
object AppState {
    /** The running node, once [NodeService] has started it. */
    val node = MutableStateFlow<PeerConnect?>(null)
    val status = MutableStateFlow("starting…")
    val peers = MutableStateFlow<List<Peer>>(emptyList())
    /** Conversations by peer id, oldest message first. */
    val chats = MutableStateFlow<Map<String, List<Message>>>(emptyMap())
    /** Offers waiting for the user's answer. */
    val offers = MutableStateFlow<List<Event.Offer>>(emptyList())
    /** Running transfers by id, with their latest progress. */
    val transfers = MutableStateFlow<Map<String, Event.Progress>>(emptyMap())

    /** Applies one event; returns whether peers must be re-read from the node. */
    fun apply(event: Event): Boolean {
        when (event) {
            is Event.Listening -> status.value = "${event.name} · ${event.addrs.joinToString()}"
            is Event.PeerFound, is Event.PeerUpdated, is Event.PeerLost,
            is Event.PeerConnected, is Event.PeerDisconnected -> return true
            is Event.Error -> status.value = event.message
            is Event.MessageReceived -> addMessage(event.message)
            is Event.MessageStatus -> chats.update { all ->
                all.mapValues { (_, msgs) ->
                    msgs.map { if (it.id == event.id) it.copy(status = event.status) else it }
                }
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
        return false
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
}
