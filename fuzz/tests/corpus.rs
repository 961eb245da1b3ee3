//! Replays every committed corpus file through its target, on stable and
//! without libFuzzer: a crash the fuzzer once found (its input is kept in
//! `corpus/<target>/`) fails `cargo test` if it comes back.

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, target) in peerconnect_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for target {name}");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "target {name} fails on {}", f.display());
        }
        total += files.len();
    }
    println!("{total} corpus files passed");
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    // A seed whose message format changed would silently stop reaching deep
    // code: regenerate with `cargo run -p peerconnect-fuzz --example seeds`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in peerconnect_fuzz::seeds::all() {
        let f = root.join(target).join(format!("seed-{name}"));
        let committed = std::fs::read(&f).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} is stale: run `cargo run -p peerconnect-fuzz --example seeds`",
            f.display()
        );
    }
}

#[test]
fn the_tree_seeds_reach_a_whole_session_and_a_corrupt_relay() {
    // A seed that stopped reaching the end would leave the fuzzer far from
    // the relay and completion code.
    let seed = |name: &str| peerconnect_fuzz::tree::run(&seed_of("tree", name));
    let whole = seed("session");
    assert!(whole.is_complete(), "the session seed does not complete");
    assert!(whole.groups_sent() > 0, "the session seed never relays");
    let corrupt = seed("corrupt-relay");
    assert!(corrupt.stats().corrupt > 0, "no corrupt relay caught");
    assert!(!corrupt.is_complete());
}

#[test]
fn the_tree_coordinator_seeds_reach_repairs_slow_moves_completion_and_abort() {
    // As above: seeds far from the repair code would leave the fuzzer there.
    let seed =
        |name: &str| peerconnect_fuzz::tree_coordinator::run(&seed_of("tree_coordinator", name));
    let whole = seed("session");
    assert!(
        whole.is_all_complete(),
        "the session seed does not complete"
    );
    assert!(whole.groups_sent() > 0, "the sender never sends a group");
    assert!(whole.stats().repairs > 0, "no repair");
    assert!(
        whole.stats().corrupt_reports > 0,
        "no corrupt relay reported"
    );
    let slow = seed("slow");
    assert!(
        slow.stats().slow_moves + slow.stats().demotions > 0,
        "no slow relay found: {:?}",
        slow.stats()
    );
    let abort = seed("abort");
    assert!(abort.stats().corrupt_reports > 0 && !abort.is_all_complete());
}

#[test]
fn the_tree_stream_seeds_are_read_to_their_last_frame() {
    // An offer with every coordinator frame kind and a relay's stream with a
    // group: a seed cut short by a decoding change would hide the rest.
    let frames = |name: &str| {
        peerconnect::net::transfer::tree_fuzzing::stream(&seed_of("tree_stream", name))
    };
    assert_eq!(frames("offer"), 6);
    assert_eq!(frames("relay"), 4);
}

/// The generated seed `name` of `target`.
fn seed_of(target: &str, name: &str) -> Vec<u8> {
    peerconnect_fuzz::seeds::all()
        .into_iter()
        .find(|(t, n, _)| *t == target && n == name)
        .map(|(_, _, bytes)| bytes)
        .unwrap_or_else(|| panic!("no seed {target}/{name}"))
}
