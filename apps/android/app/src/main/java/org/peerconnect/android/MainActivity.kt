package org.peerconnect.android

import android.content.Intent
import android.net.Uri
import android.os.Bundle
import android.provider.OpenableColumns
import androidx.activity.ComponentActivity
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.compose.setContent
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.clickable
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.Card
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.collectAsState
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import java.io.File
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import uniffi.peerconnect.ApiException
import uniffi.peerconnect.Peer
import uniffi.peerconnect.PeerConnect

/** Peers, offers, transfers and rooms; tap a peer to chat with it and send it files. */
class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        startForegroundService(Intent(this, NodeService::class.java))
        setContent { MaterialTheme { App() } }
    }
}

/** Runs a binding call off the main thread; failures go to the status line. */
fun CoroutineScope.call(block: suspend (PeerConnect) -> Unit) = launch {
    val node = AppState.node.value ?: return@launch
    try {
        withContext(Dispatchers.IO) { block(node) }
    } catch (e: ApiException) {
        AppState.status.value = e.message ?: e.toString()
    }
}

/** Which screen shows. */
sealed interface Screen {
    data object Home : Screen
    data class Chat(val peer: Peer) : Screen
    data object Rooms : Screen
    data class Room(val name: String) : Screen
}

@Composable
fun App() {
    var screen by remember { mutableStateOf<Screen>(Screen.Home) }
    when (val s = screen) {
        Screen.Home -> Home(onOpen = { screen = Screen.Chat(it) }, onRooms = { screen = Screen.Rooms })
        is Screen.Chat -> Chat(s.peer, onBack = { screen = Screen.Home })
        Screen.Rooms -> Rooms(onOpen = { screen = Screen.Room(it) }, onBack = { screen = Screen.Home })
        is Screen.Room -> Room(s.name, onBack = { screen = Screen.Rooms })
    }
}

@Composable
fun Home(onOpen: (Peer) -> Unit, onRooms: () -> Unit) {
    val status by AppState.status.collectAsState()
    val peers by AppState.peers.collectAsState()
    val offers by AppState.offers.collectAsState()
    val transfers by AppState.transfers.collectAsState()
    val scope = rememberCoroutineScope()
    Column(Modifier.fillMaxSize().padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        Row {
            Text("PeerConnect", style = MaterialTheme.typography.headlineSmall, modifier = Modifier.weight(1f))
            TextButton(onClick = onRooms) { Text("Rooms") }
        }
        Text(status, style = MaterialTheme.typography.bodySmall)
        for (offer in offers) {
            Card(Modifier.fillMaxWidth()) {
                Column(Modifier.padding(12.dp)) {
                    Text("${offer.name} offers ${offer.files} file(s), ${offer.totalBytes} bytes")
                    Text(offer.entries.joinToString { it.path }, style = MaterialTheme.typography.bodySmall)
                    Text("code ${offer.verificationCode}", style = MaterialTheme.typography.bodySmall)
                    Row {
                        Button(onClick = { AppState.dropOffer(offer.id); scope.call { it.acceptOffer(offer.id) } }) {
                            Text("Accept")
                        }
                        TextButton(onClick = { AppState.dropOffer(offer.id); scope.call { it.rejectOffer(offer.id) } }) {
                            Text("Reject")
                        }
                    }
                }
            }
        }
        for (t in transfers.values) {
            Text("${t.file ?: t.id}: ${t.doneBytes} / ${t.totalBytes}${if (t.paused) " (paused)" else ""}")
            LinearProgressIndicator(
                progress = { if (t.totalBytes == 0uL) 1f else t.doneBytes.toFloat() / t.totalBytes.toFloat() },
                modifier = Modifier.fillMaxWidth(),
            )
            Row {
                if (t.paused) {
                    TextButton(onClick = { scope.call { it.resumeTransfer(t.id) } }) { Text("Resume") }
                } else {
                    TextButton(onClick = { scope.call { it.pauseTransfer(t.id) } }) { Text("Pause") }
                }
                TextButton(onClick = { scope.call { it.cancelTransfer(t.id) } }) { Text("Cancel") }
            }
        }
        Text("Peers", style = MaterialTheme.typography.titleMedium)
        LazyColumn {
            items(peers, key = { it.id }) { p ->
                Column(Modifier.fillMaxWidth().clickable { onOpen(p) }.padding(vertical = 8.dp)) {
                    // the kind as the binding names it, so kinds added later show as they are
                    Text("${p.name} (${p.kind.name.lowercase()})")
                    Text(
                        "${p.id.take(8)} · ${if (p.connected) "connected" else "seen"} · ${p.trust.name.lowercase()}" +
                            " · code ${p.verificationCode}",
                        style = MaterialTheme.typography.bodySmall,
                    )
                }
            }
        }
    }
}

@Composable
fun Chat(peer: Peer, onBack: () -> Unit) {
    val chats by AppState.chats.collectAsState()
    val messages = chats[peer.id] ?: emptyList()
    var draft by remember { mutableStateOf("") }
    val scope = rememberCoroutineScope()
    val context = androidx.compose.ui.platform.LocalContext.current
    LaunchedEffect(peer.id) {
        scope.call { AppState.setConversation(peer.id, it.conversation(peer.id, null, 200u)) }
    }
    val pick = rememberLauncherForActivityResult(ActivityResultContracts.OpenDocument()) { uri: Uri? ->
        if (uri != null) scope.call { node ->
            // the core sends files by path: copy the picked document into the cache first
            val file = copyToCache(context, uri)
            node.sendFiles(peer.id, listOf(file.path))
        }
    }
    Column(Modifier.fillMaxSize().padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        Row {
            TextButton(onClick = onBack) { Text("‹ Peers") }
            Text(peer.name, style = MaterialTheme.typography.titleLarge)
        }
        Row {
            TextButton(onClick = { scope.call { it.setTrust(peer.id, uniffi.peerconnect.Trust.TRUSTED) } }) {
                Text("Trust (code ${peer.verificationCode})")
            }
            TextButton(onClick = { pick.launch(arrayOf("*/*")) }) { Text("Send file") }
        }
        LazyColumn(Modifier.weight(1f)) {
            items(messages, key = { it.id }) { m ->
                val who = if (m.outgoing) "me" else peer.name
                Text("$who: ${m.text}  (${m.status.name.lowercase()})")
            }
        }
        Row {
            OutlinedTextField(draft, { draft = it }, Modifier.weight(1f))
            Button(onClick = {
                val text = draft
                draft = ""
                scope.call { AppState.addMessage(it.sendMessage(peer.id, text)) }
            }) { Text("Send") }
        }
    }
}

/** Rooms joined, with their neighbour counts, and joining one by name. */
@Composable
fun Rooms(onOpen: (String) -> Unit, onBack: () -> Unit) {
    val rooms by AppState.rooms.collectAsState()
    var name by remember { mutableStateOf("") }
    val scope = rememberCoroutineScope()
    Column(Modifier.fillMaxSize().padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        Row {
            TextButton(onClick = onBack) { Text("‹ Peers") }
            Text("Rooms", style = MaterialTheme.typography.titleLarge)
        }
        Row {
            OutlinedTextField(name, { name = it }, Modifier.weight(1f), label = { Text("Room name") }, singleLine = true)
            Button(enabled = name.isNotBlank(), onClick = {
                val room = name.trim()
                name = ""
                scope.call { it.joinRoom(room) }
            }) { Text("Join") }
        }
        LazyColumn {
            items(rooms, key = { it.name }) { r ->
                Row(Modifier.fillMaxWidth().clickable { onOpen(r.name) }.padding(vertical = 8.dp)) {
                    Text(r.name, Modifier.weight(1f))
                    Text("${r.neighbors} neighbours", style = MaterialTheme.typography.bodySmall)
                }
            }
        }
    }
}

/** One room's messages, oldest first, a line to say something, and leaving. */
@Composable
fun Room(name: String, onBack: () -> Unit) {
    val all by AppState.roomMessages.collectAsState()
    val messages = all[name] ?: emptyList()
    var draft by remember { mutableStateOf("") }
    val scope = rememberCoroutineScope()
    LaunchedEffect(name) { scope.call { AppState.loadRoom(it, name) } }
    Column(Modifier.fillMaxSize().padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        Row {
            TextButton(onClick = onBack) { Text("‹ Rooms") }
            Text(name, style = MaterialTheme.typography.titleLarge, modifier = Modifier.weight(1f))
            TextButton(onClick = {
                scope.call { it.leaveRoom(name) }
                onBack()
            }) { Text("Leave") }
        }
        LazyColumn(Modifier.weight(1f)) {
            items(messages, key = { it.id }) { m ->
                Column(Modifier.padding(vertical = 4.dp)) {
                    Text(m.authorName, style = MaterialTheme.typography.bodySmall)
                    Text(m.text)
                }
            }
        }
        Row {
            OutlinedTextField(draft, { draft = it }, Modifier.weight(1f))
            Button(enabled = draft.isNotEmpty(), onClick = {
                val text = draft
                draft = ""
                // shows when the node's RoomMessage event for it arrives
                scope.call { it.roomSay(name, text) }
            }) { Text("Send") }
        }
    }
}

fun copyToCache(context: android.content.Context, uri: Uri): File {
    val name = context.contentResolver.query(uri, null, null, null, null)?.use { c ->
        val i = c.getColumnIndex(OpenableColumns.DISPLAY_NAME)
        if (c.moveToFirst() && i >= 0) c.getString(i) else null
    } ?: "file"
    val dir = File(context.cacheDir, "outgoing").apply { mkdirs() }
    val file = File(dir, File(name).name)
    context.contentResolver.openInputStream(uri)!!.use { input ->
        file.outputStream().use { input.copyTo(it) }
    }
    return file
}
