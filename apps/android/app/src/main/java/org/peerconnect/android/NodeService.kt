package org.peerconnect.android

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.app.Service
import android.content.Context
import android.content.Intent
import android.content.pm.ServiceInfo
import android.net.wifi.WifiManager
import android.os.Build
import android.os.Environment
import android.os.IBinder
import android.os.PowerManager
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import uniffi.peerconnect.ApiException
import uniffi.peerconnect.DeviceKind
import uniffi.peerconnect.NodeConfig
import uniffi.peerconnect.PeerConnect

/**
 * Runs the node in a foreground service, so discovery, messages and transfers go
 * on with the screen off or the app in the background. Holds a MulticastLock
 * (Android drops multicast without one) and a partial wake lock while a transfer
 * is running.
 */
class NodeService : Service() {
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.IO)
    private var multicast: WifiManager.MulticastLock? = null
    private var wake: PowerManager.WakeLock? = null

    override fun onBind(intent: Intent?): IBinder? = null

    override fun onCreate() {
        super.onCreate()
        startForeground()
        multicast = (applicationContext.getSystemService(Context.WIFI_SERVICE) as WifiManager)
            .createMulticastLock("peerconnect-discovery").apply { acquire() }
        wake = (getSystemService(Context.POWER_SERVICE) as PowerManager)
            .newWakeLock(PowerManager.PARTIAL_WAKE_LOCK, "peerconnect:transfer")
        scope.launch { run() }
        scope.launch {
            // keep the CPU awake exactly while transfers run
            AppState.transfers.collect { running ->
                val w = wake ?: return@collect
                if (running.isNotEmpty() && !w.isHeld) w.acquire(60 * 60 * 1000L)
                if (running.isEmpty() && w.isHeld) w.release()
            }
        }
    }

    private suspend fun run() {
        val downloads = getExternalFilesDir(Environment.DIRECTORY_DOWNLOADS) ?: filesDir
        val config = NodeConfig(
            dataDir = filesDir.resolve("peerconnect").path,
            name = Build.MODEL,
            kind = DeviceKind.PHONE,
            downloadsDir = downloads.path,
        )
        val node = try {
            PeerConnect.start(config)
        } catch (e: ApiException) {
            AppState.status.value = "could not start: ${e.message}"
            return
        }
        AppState.follow(node)
    }

    private fun startForeground() {
        val manager = getSystemService(NotificationManager::class.java)
        manager.createNotificationChannel(
            NotificationChannel(CHANNEL, getString(R.string.channel_name), NotificationManager.IMPORTANCE_LOW),
        )
        val notification = Notification.Builder(this, CHANNEL)
            .setContentTitle(getString(R.string.app_name))
            .setContentText("Reachable on this network")
            .setSmallIcon(android.R.drawable.stat_sys_upload)
            .build()
        if (Build.VERSION.SDK_INT >= 29) {
            startForeground(1, notification, ServiceInfo.FOREGROUND_SERVICE_TYPE_DATA_SYNC)
        } else {
            startForeground(1, notification)
        }
    }

    override fun onDestroy() {
        AppState.node.value?.let { node ->
            runBlocking { runCatching { node.shutdown() } }
            node.close()
        }
        AppState.node.value = null
        multicast?.takeIf { it.isHeld }?.release()
        wake?.takeIf { it.isHeld }?.release()
        scope.cancel()
        super.onDestroy()
    }

    companion object {
        private const val CHANNEL = "node"
    }
}
