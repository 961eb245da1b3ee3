use super::*;
use crate::proto::sim::{SeedGuard, seed_from_env};

/// A small file with many groups, so that trees pipeline and repairs happen
/// mid-file, quickly.
fn small(receivers: usize, seed: u64) -> SimConfig {
    SimConfig {
        file_bytes: 16 << 20,
        group: Some(64 << 10),
        ..SimConfig::new(receivers, seed)
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("PEERCONNECT_SIM_SEED") {
        Ok(_) => vec![seed_from_env(1)],
        Err(_) => vec![1, 2, 3],
    }
}

/// What every run of every scenario must hold.
fn assert_sound(r: &Report) {
    for run in &r.runs {
        assert_eq!(
            run.verified,
            run.survivors,
            "{}: a survivor lacks a verified file\n{}",
            run.name,
            r.table()
        );
        assert!(
            run.seconds.is_finite(),
            "{}: unfinished\n{}",
            run.name,
            r.table()
        );
        assert_eq!(run.bad_stored, 0, "{}: stored unverified data", run.name);
        assert_eq!(
            run.refetched_bytes,
            0,
            "{}: fetched verified data again\n{}",
            run.name,
            r.table()
        );
    }
}

#[test]
fn every_receiver_completes_with_verified_data_despite_kills_and_corruption() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let cfg = SimConfig {
            kill: 2,
            corrupt: 1,
            ..small(24, seed)
        };
        let r = run(&cfg);
        assert_sound(&r);
        let faults = r.run("faults").unwrap();
        assert_eq!(faults.killed, 2);
        assert_eq!(faults.survivors, 22);
        assert!(faults.corrupt_caught >= 1, "{}", r.table());
        assert!(faults.repairs >= 1, "{}", r.table());
    }
}

#[test]
fn sixteen_receivers_take_at_most_one_and_a_half_times_one_and_the_sender_uploads_the_file_about_once()
 {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let r = run(&small(16, seed));
        assert_sound(&r);
        let tree = r.run("tree").unwrap();
        assert!(
            r.tree_s <= 1.5 * r.single_s,
            "tree {} s against one receiver {} s\n{}",
            r.tree_s,
            r.single_s,
            r.table()
        );
        assert!(tree.sender_upload_ratio <= 1.5, "{}", r.table());
        // separate copies take about N times as long, uploading N files
        let copies = r.run("copies").unwrap();
        assert!(r.copies_s >= 12.0 * r.single_s, "{}", r.table());
        assert!(copies.sender_upload_ratio >= 16.0, "{}", r.table());
    }
}

#[test]
fn a_relay_killed_mid_transfer_leaves_every_other_receiver_complete() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let cfg = SimConfig {
            kill: 1,
            corrupt: 0,
            ..small(32, seed)
        };
        let r = run(&cfg);
        assert_sound(&r);
        let faults = r.run("faults").unwrap();
        assert_eq!((faults.killed, faults.survivors), (1, 31));
        assert!(faults.repairs >= 1, "{}", r.table());
        assert!(faults.sender_upload_ratio <= 1.5, "{}", r.table());
    }
}

#[test]
fn a_corrupting_relay_is_caught_and_its_children_fetch_elsewhere() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let cfg = SimConfig {
            kill: 0,
            corrupt: 2,
            ..small(20, seed)
        };
        let r = run(&cfg);
        assert_sound(&r);
        let faults = r.run("faults").unwrap();
        assert!(faults.corrupt_caught >= 2, "{}", r.table());
        assert_eq!(faults.verified, 20);
    }
}

#[test]
fn relays_slower_than_measured_lose_their_children() {
    for seed in seeds() {
        let _guard = SeedGuard(seed);
        let cfg = SimConfig {
            kill: 0,
            corrupt: 0,
            slow: 3,
            file_bytes: 64 << 20,
            ..small(32, seed)
        };
        let with = run(&cfg);
        assert_sound(&with);
        let moved = with.run("faults").unwrap();
        assert!(moved.slow_moves + moved.demotions >= 1, "{}", with.table());
        let without = run(&SimConfig {
            tree: tree::Config {
                slow_checks: u32::MAX,
                ..cfg.tree.clone()
            },
            ..cfg.clone()
        });
        let stuck = without.run("faults").unwrap();
        assert!(
            moved.seconds < 0.8 * stuck.seconds,
            "with repairs {} s, without {} s\n{}{}",
            moved.seconds,
            stuck.seconds,
            with.table(),
            without.table()
        );
    }
}

#[test]
fn a_hundred_receivers_on_mixed_links_finish_near_the_slowest_alone() {
    let seed = seed_from_env(5);
    let _guard = SeedGuard(seed);
    let cfg = SimConfig {
        links: Links::Mixed,
        kill: 2,
        corrupt: 1,
        slow: 2,
        ..small(100, seed)
    };
    let r = run(&cfg);
    assert_sound(&r);
    assert!(r.tree_s <= 2.0 * r.single_s, "{}", r.table());
    assert!(r.copies_s >= 10.0 * r.tree_s, "{}", r.table());
    assert!(
        r.run("tree").unwrap().sender_upload_ratio <= 1.5,
        "{}",
        r.table()
    );
}

#[test]
fn a_thousand_receivers_complete_with_the_sender_uploading_the_file_about_once() {
    let seed = seed_from_env(7);
    let _guard = SeedGuard(seed);
    let cfg = SimConfig {
        file_bytes: 4 << 20,
        group: Some(32 << 10),
        kill: 3,
        corrupt: 1,
        ..SimConfig::new(1000, seed)
    };
    let r = run(&cfg);
    assert_sound(&r);
    assert!(
        r.run("tree").unwrap().sender_upload_ratio <= 1.5,
        "{}",
        r.table()
    );
    assert!(
        r.run("faults").unwrap().sender_upload_ratio <= 1.5,
        "{}",
        r.table()
    );
}

#[test]
fn same_seed_replays_the_same_run() {
    let cfg = small(12, 4);
    let a = serde_json::to_string(&run(&cfg)).unwrap();
    let b = serde_json::to_string(&run(&cfg)).unwrap();
    assert_eq!(a, b);
}
