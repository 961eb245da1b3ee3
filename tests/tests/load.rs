//! The short version of `peerconnect bench load` (issue 17): transfers, direct
//! messages, a chatting room and browser guests at once among nodes of the
//! binary on 127.0.0.1. Nothing may be lost, duplicated or corrupted, and the
//! guests keep being answered. (The long run and its table: docs/benchmarks.md.)

use std::process::Command;

use peerconnect_tests::peerconnect_bin;

#[test]
fn under_load_nothing_is_lost_duplicated_or_corrupted() {
    let out = Command::new(peerconnect_bin())
        .args(["bench", "load", "--json", "--seconds", "8", "--nodes", "4"])
        .args([
            "--transfers",
            "8",
            "--file-mib",
            "1",
            "--messages-per-sec",
            "400",
        ])
        .args(["--room-nodes", "16", "--room-per-sec", "4", "--guests", "4"])
        .args(["--drain", "30"])
        .output()
        .expect("peerconnect runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("bench load: {r:#}");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("no {k} in {r}"));
    // The load happened...
    assert!(n("messages_sent") > 1000, "{r}");
    assert!(n("transfers_done") > 8, "{r}");
    assert!(n("room_sent") > 10, "{r}");
    assert!(n("guest_polls") >= 4 * 7, "{r}");
    // ...and nothing was lost, duplicated or corrupted.
    assert_eq!(n("messages_stored_once"), n("messages_sent"), "{r}");
    assert_eq!(
        (n("messages_missing"), n("messages_duplicated")),
        (0, 0),
        "{r}"
    );
    assert_eq!(
        (n("transfers_failed"), n("transfers_corrupt")),
        (0, 0),
        "{r}"
    );
    assert_eq!(n("room_stored"), n("room_expected"), "{r}");
    assert_eq!(n("room_delivered"), n("room_expected"), "{r}");
    assert_eq!(n("room_duplicated"), 0, "{r}");
    assert_eq!(n("guest_polls_ok"), n("guest_polls"), "{r}");
    assert!(out.status.success(), "exit {:?}: {r}", out.status);
}
