//! `peerconnect bench transfer --vs` (issue 21): the big file through a node,
//! a plain TLS file copy and (when asked) iperf3 in turn, with ratios. Small
//! and without iperf3 here: this checks the command works and cleans up, not
//! how fast anything is.

use std::process::Command;

use peerconnect_tests::peerconnect_bin;

#[test]
fn bench_transfer_vs_reports_every_round_with_ratios_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(peerconnect_bin())
        .args(["bench", "transfer", "--vs", "--json", "--no-iperf"])
        .args(["--size", "4194304", "--rounds", "2", "--dir"])
        .arg(dir.path())
        .output()
        .expect("peerconnect runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON report");
    assert_eq!(r["bytes"], 4_194_304, "{r}");
    let rounds = r["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{r}");
    for x in rounds {
        for k in ["peerconnect_mbytes_per_s", "tls_copy_mbytes_per_s"] {
            let v = x[k].as_f64().unwrap_or_else(|| panic!("no {k} in {x}"));
            assert!(v.is_finite() && v > 0.0, "{k} = {v}");
        }
        assert!(x["iperf3_mbytes_per_s"].is_null(), "--no-iperf: {x}");
    }
    let ratio = r["ours_over_tls_copy"].as_f64().expect("ratio");
    assert!(ratio.is_finite() && ratio > 0.0, "{r}");
    assert!(r["ours_over_iperf3"].is_null(), "{r}");
    // the files, the receiver's data and the copy are all gone
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
