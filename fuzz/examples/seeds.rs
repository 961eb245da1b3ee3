//! Writes the seed corpus: `cargo run -p peerconnect-fuzz --example seeds`.
//! Each seed goes to `corpus/<target>/seed-<name>`; files the fuzzer added and
//! regression inputs (`crash-*`) are left alone.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in peerconnect_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), &bytes)?;
        println!("{target}/seed-{name}: {} bytes", bytes.len());
    }
    Ok(())
}
