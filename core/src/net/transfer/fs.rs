//! File-system work of transfers: walking what to send, free space, folders
//! that never pass through a symlink, `.part` files, hashing ranges, and
//! renaming into place without overwriting.
//!
//! Everything here blocks; callers run it on blocking threads.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::proto::transfer::resume::{self, Proof};
use crate::proto::transfer::{BLOCK, Entry, collision_name};

/// Size of the reads that hash files for resume proofs.
const HASH_READ: usize = 1 << 20;

/// Most " (n)" suffixes tried before giving up on a name.
const MAX_SUFFIX: u32 = 10_000;

/// What [`walk`] found: the offer's entries and, per entry, the local file
/// (`None` for folders).
#[derive(Debug, Default)]
pub struct Walked {
    pub entries: Vec<Entry>,
    pub sources: Vec<Option<PathBuf>>,
    /// Symlinks, sockets and the like, left out.
    pub skipped: Vec<PathBuf>,
}

/// Builds the entries of an offer from files and folders given by the user.
/// Each path becomes a top-level entry named by its last component; folders
/// bring everything below them, sorted by name, empty folders included.
/// Symlinks below a folder are left out (never followed); a path given
/// directly may be a symlink.
pub fn walk(paths: &[PathBuf]) -> Result<Walked, String> {
    let mut w = Walked::default();
    let mut roots = BTreeSet::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        // The name as given ("photos/" → "photos"); "." and ".." by what they are.
        let name = p
            .file_name()
            .map(|n| n.to_owned())
            .or_else(|| {
                p.canonicalize()
                    .ok()
                    .and_then(|c| c.file_name().map(|n| n.to_owned()))
            })
            .ok_or_else(|| format!("{}: has no file name", p.display()))?;
        let name = name
            .to_str()
            .ok_or_else(|| format!("{}: name is not UTF-8", p.display()))?
            .to_string();
        if !roots.insert(name.clone()) {
            return Err(format!(
                "two of the paths are named {name:?}; send them in separate transfers"
            ));
        }
        if meta.is_dir() {
            w.entries.push(Entry::dir(&name));
            w.sources.push(None);
            walk_dir(p, &name, &mut w)?;
        } else if meta.is_file() {
            w.entries.push(Entry::file(&name, meta.len()));
            w.sources.push(Some(p.clone()));
        } else {
            return Err(format!("{}: not a file or folder", p.display()));
        }
    }
    Ok(w)
}

fn walk_dir(dir: &Path, rel: &str, w: &mut Walked) -> Result<(), String> {
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    children.sort_by_key(|c| c.file_name());
    for c in children {
        let path = c.path();
        let name = c.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| format!("{}: name is not UTF-8", path.display()))?;
        let child_rel = format!("{rel}/{name}");
        let ft = c
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if ft.is_dir() {
            w.entries.push(Entry::dir(&child_rel));
            w.sources.push(None);
            walk_dir(&path, &child_rel, w)?;
        } else if ft.is_file() {
            let len = c
                .metadata()
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            w.entries.push(Entry::file(child_rel, len));
            w.sources.push(Some(path));
        } else {
            w.skipped.push(path);
        }
    }
    Ok(())
}

/// Bytes available to an unprivileged user on the file system holding `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Whether anything (a file, folder, or symlink, even a dangling one) is at `p`.
pub fn occupied(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// A name for a new top-level entry in `dir`: `name`, else `name (1)`, ...
/// such that neither it nor its `.part` is taken.
pub fn free_root_name(dir: &Path, name: &str) -> io::Result<String> {
    for n in 0..MAX_SUFFIX {
        let cand = collision_name(name, n);
        if !occupied(&dir.join(&cand)) && !occupied(&dir.join(part_name(&cand))) {
            return Ok(cand);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {name:?} in {}", dir.display()),
    ))
}

/// `name.part`.
pub fn part_name(name: &str) -> String {
    format!("{name}.part")
}

/// The `.part` path beside `target`.
pub fn part_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Creates the folders from `root` down to `dir` (which must be below `root`),
/// refusing to pass through a symlink or a non-folder. `known` caches folders
/// already checked.
pub fn ensure_dir(root: &Path, dir: &Path, known: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    if dir == root || known.contains(dir) {
        return Ok(());
    }
    let rel = dir.strip_prefix(root).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not below {}", dir.display(), root.display()),
        )
    })?;
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if known.contains(&cur) {
            continue;
        }
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symlink; refusing to write through it",
                        cur.display()
                    ),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a folder", cur.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&cur) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && cur.is_dir() => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
        known.insert(cur.clone());
    }
    Ok(())
}

/// Opens a `.part` for writing, never following a symlink at its path:
/// `keep` bytes are kept (and anything after them dropped); with `keep == 0` a
/// new empty file replaces whatever regular file was there.
pub fn open_part(path: &Path, keep: u64) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(keep == 0)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    if keep > 0 {
        f.set_len(keep)?;
    }
    Ok(f)
}

/// Opens an existing regular file for reading without following a symlink.
pub fn open_existing(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(f)
}

/// Feeds bytes `range` of `file` to `hashers`.
pub fn hash_range(
    file: &File,
    range: std::ops::Range<u64>,
    hashers: &mut [&mut blake3::Hasher],
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.resize(HASH_READ, 0);
    let mut pos = range.start;
    while pos < range.end {
        let n = ((range.end - pos) as usize).min(HASH_READ);
        file.read_exact_at(&mut buf[..n], pos)?;
        for h in hashers.iter_mut() {
            h.update(&buf[..n]);
        }
        pos += n as u64;
    }
    Ok(())
}

/// The receiver's proof for a part of `part_len` bytes of a file of `size`:
/// the hashes of its whole chunks, and the whole-file hasher fed up to the end
/// of those chunks.
pub fn prove_part(
    file: &File,
    size: u64,
    part_len: u64,
) -> io::Result<(Vec<[u8; 32]>, u64, blake3::Hasher)> {
    let n = resume::whole_chunks(size, part_len);
    let mut full = blake3::Hasher::new();
    let mut hashes = Vec::with_capacity(n as usize);
    let mut buf = Vec::new();
    let mut end = 0;
    for i in 0..n {
        let range = resume::chunk_range(size, i);
        end = range.end;
        let mut chunk = blake3::Hasher::new();
        hash_range(file, range, &mut [&mut chunk, &mut full], &mut buf)?;
        hashes.push(*chunk.finalize().as_bytes());
    }
    Ok((hashes, end, full))
}

/// The sender's side of a proof: compares our chunks in order and returns the
/// offset to resume at and the whole-file hasher fed up to it.
pub fn check_proof(file: &File, mut proof: Proof) -> io::Result<(u64, blake3::Hasher)> {
    let mut full = blake3::Hasher::new();
    let mut buf = Vec::new();
    while let Some(range) = proof.next_range() {
        let before = full.clone();
        let mut chunk = blake3::Hasher::new();
        hash_range(file, range, &mut [&mut chunk, &mut full], &mut buf)?;
        if !proof.check(chunk.finalize().as_bytes()) {
            full = before;
            break;
        }
    }
    Ok((proof.offset(), full))
}

/// BLAKE3 of the first `len` bytes of `file`.
pub fn hash_prefix(file: &File, len: u64) -> io::Result<blake3::Hasher> {
    let mut h = blake3::Hasher::new();
    hash_range(file, 0..len, &mut [&mut h], &mut Vec::new())?;
    Ok(h)
}

/// Renames `from` to `to` unless something is already at `to`
/// (`ErrorKind::AlreadyExists` then).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
    };
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are valid NUL-terminated paths; renameat2 reads nothing else.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            // c_uint in glibc's libc, c_int in bionic's (Android)
            libc::RENAME_NOREPLACE as libc::c_uint,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // The file system cannot do it atomically: a hard link fails on an
        // existing name just the same.
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(err),
    }
}

/// Renames a finished `part` into place at `target`, or at `target`'s name
/// with the first free " (n)" suffix; returns where it went.
pub fn place(part: &Path, target: &Path) -> io::Result<PathBuf> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "target has no name"))?;
    for n in 0..MAX_SUFFIX {
        let cand = dir.join(collision_name(name, n));
        match rename_noreplace(part, &cand) {
            Ok(()) => return Ok(cand),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {}", target.display()),
    ))
}

/// Appends bytes `[pos, pos + len)` of `file` to `out`, reading straight into
/// its spare capacity (no zero-filling first); a file that got shorter is an
/// `UnexpectedEof`, and `out` keeps its old length on any error.
pub fn read_block(file: &File, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    debug_assert!(len <= BLOCK);
    let start = out.len();
    out.reserve(len);
    let mut done = 0;
    while done < len {
        let spare = out.spare_capacity_mut();
        // SAFETY: the pointer and length describe spare capacity of `out`, valid
        // for writes of `len - done` bytes (reserved above); pread writes at most
        // that many and reports how many it wrote.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                len - done,
                (pos + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            out.truncate(start);
            return Err(e);
        }
        if n == 0 {
            out.truncate(start);
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        // SAFETY: pread initialised the next `n` bytes of the spare capacity.
        unsafe { out.set_len(out.len() + n as usize) };
        done += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_lists_nested_and_empty_folders_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("top");
        fs::create_dir_all(top.join("b/empty")).unwrap();
        fs::write(top.join("b/x.txt"), b"xx").unwrap();
        fs::write(top.join("a.txt"), b"a").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", top.join("link")).unwrap();
        fs::write(d.path().join("single"), b"123").unwrap();
        let w = walk(&[top.clone(), d.path().join("single")]).unwrap();
        let paths: Vec<_> = w.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "top",
                "top/a.txt",
                "top/b",
                "top/b/empty",
                "top/b/x.txt",
                "single"
            ]
        );
        assert_eq!(w.entries[4].size(), Some(2));
        assert_eq!(w.skipped, vec![top.join("link")]);
        assert!(walk(&[top.clone(), top]).is_err(), "same name twice");
    }

    #[test]
    fn ensure_dir_refuses_symlinks_on_the_way() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("dl");
        fs::create_dir(&root).unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        let mut known = BTreeSet::new();
        let err = ensure_dir(&root, &root.join("evil/sub"), &mut known).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.join("sub").exists());
        ensure_dir(&root, &root.join("ok/sub"), &mut known).unwrap();
        assert!(root.join("ok/sub").is_dir());
        assert!(ensure_dir(&root, &d.path().join("elsewhere"), &mut known).is_err());
    }

    #[test]
    fn placing_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("a.txt");
        fs::write(&target, b"old").unwrap();
        fs::write(d.path().join("a (1).txt"), b"older").unwrap();
        let part = part_path(&target);
        fs::write(&part, b"new").unwrap();
        let put = place(&part, &target).unwrap();
        assert_eq!(put, d.path().join("a (2).txt"));
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read(&put).unwrap(), b"new");
        assert!(!part.exists());
    }

    #[test]
    fn a_symlink_at_the_part_path_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let part = d.path().join("x.part");
        std::os::unix::fs::symlink(&victim, &part).unwrap();
        assert!(open_part(&part, 0).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn a_proof_resumes_at_the_first_differing_chunk() {
        let d = tempfile::tempdir().unwrap();
        let c = resume::MIN_CHUNK as usize;
        let data: Vec<u8> = (0..3 * c + 100).map(|i| (i * 7 % 251) as u8).collect();
        let src = d.path().join("src");
        fs::write(&src, &data).unwrap();
        let mut part = data[..2 * c + 10].to_vec();
        part[c + 5] ^= 1; // chunk 1 is corrupt
        let pp = d.path().join("p");
        fs::write(&pp, &part).unwrap();
        let size = data.len() as u64;
        let (hashes, end, _) =
            prove_part(&File::open(&pp).unwrap(), size, part.len() as u64).unwrap();
        assert_eq!((hashes.len(), end), (2, 2 * c as u64));
        let proof = Proof::new(size, resume::chunk_size(size), hashes).unwrap();
        let (offset, mut hasher) = check_proof(&File::open(&src).unwrap(), proof).unwrap();
        assert_eq!(offset, c as u64);
        hasher.update(&data[c..]);
        assert_eq!(hasher.finalize(), blake3::hash(&data));
    }

    #[test]
    fn free_space_is_reported() {
        let d = tempfile::tempdir().unwrap();
        assert!(free_space(d.path()).unwrap() > 0);
    }
}
