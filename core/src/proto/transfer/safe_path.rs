//! Relative paths a receiver may create, and the " (1)" rule for names in use.
//!
//! An offer names entries by relative paths with `/` between components. The
//! receiver never joins such a string onto its download folder: it parses it
//! into a [`SafePath`], which refuses everything that could leave the folder or
//! mean something else on some file system:
//!
//! - empty paths, a leading `/` (absolute), empty, `.` and `..` components;
//! - drive prefixes (`C:`, `c:foo`) anywhere, backslashes (a separator on Windows);
//! - NUL and every other ASCII control character (they also garble terminals);
//! - Windows device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`,
//!   `LPT1`–`LPT9`, any case, with or without an extension or trailing dots and
//!   spaces), which open devices instead of files there;
//! - components over [`MAX_COMPONENT`] bytes, paths over [`MAX_PATH`] bytes or
//!   deeper than [`MAX_DEPTH`].
//!
//! Symlinks on the receiver's disk are the driver's business (it checks every
//! folder it walks through); this module only sees strings.

/// Longest path component, in bytes (the usual file-system limit).
pub const MAX_COMPONENT: usize = 255;
/// Longest relative path, in bytes.
pub const MAX_PATH: usize = 4096;
/// Deepest nesting of components.
pub const MAX_DEPTH: usize = 64;

/// Why a path from an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("absolute path {0:?}")]
    Absolute(String),
    #[error("path {0:?} climbs out of the folder with \"..\"")]
    ParentDir(String),
    #[error("path {0:?} has an empty or \".\" component")]
    EmptyComponent(String),
    #[error("path {0:?} has a drive prefix")]
    Drive(String),
    #[error("path {0:?} has a \":\" in a name (a drive or an NTFS stream on Windows)")]
    Colon(String),
    #[error("path {0:?} has a name ending in a dot or a space (Windows drops them)")]
    TrailingDotOrSpace(String),
    #[error("path {0:?} contains a backslash")]
    Backslash(String),
    #[error("path {0:?} contains a NUL or control character")]
    Control(String),
    #[error("path {0:?} uses the reserved device name {1:?}")]
    Reserved(String, String),
    #[error("path {0:?} has a component longer than {MAX_COMPONENT} bytes")]
    LongComponent(String),
    #[error("path of {0} bytes is longer than {MAX_PATH}")]
    TooLong(usize),
    #[error("path {0:?} is nested deeper than {MAX_DEPTH} folders")]
    TooDeep(String),
}

/// A relative path that stays inside whatever folder it is placed under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SafePath {
    text: String,
}

const RESERVED: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

impl SafePath {
    /// Checks `path` (components separated by `/`).
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if path.len() > MAX_PATH {
            return Err(PathError::TooLong(path.len()));
        }
        // Quote at most a bounded prefix of hostile input in errors.
        let shown = || {
            let mut end = path.len().min(200);
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            path[..end].to_string()
        };
        if path.starts_with('/') {
            return Err(PathError::Absolute(shown()));
        }
        if path.chars().any(|c| c.is_ascii_control()) {
            return Err(PathError::Control(shown()));
        }
        if path.contains('\\') {
            return Err(PathError::Backslash(shown()));
        }
        let mut depth = 0;
        for c in path.split('/') {
            depth += 1;
            match c {
                "" | "." => return Err(PathError::EmptyComponent(shown())),
                ".." => return Err(PathError::ParentDir(shown())),
                _ => {}
            }
            if c.len() > MAX_COMPONENT {
                return Err(PathError::LongComponent(shown()));
            }
            let b = c.as_bytes();
            if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
                return Err(PathError::Drive(shown()));
            }
            if let Some(r) = reserved_name(c) {
                return Err(PathError::Reserved(shown(), r));
            }
            if cfg!(windows) {
                windows_name(c, shown)?;
            }
        }
        if depth > MAX_DEPTH {
            return Err(PathError::TooDeep(shown()));
        }
        Ok(Self { text: path.into() })
    }

    /// The path as `/`-separated text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.text.split('/')
    }

    /// The first component: the name the entry has in the receiver's folder.
    pub fn root(&self) -> &str {
        self.text.split('/').next().expect("never empty")
    }

    /// Everything after the first component (`None` for a top-level entry).
    pub fn below_root(&self) -> Option<&str> {
        self.text.split_once('/').map(|(_, rest)| rest)
    }

    /// Every proper ancestor, shortest first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        self.text.match_indices('/').map(|(i, _)| &self.text[..i])
    }
}

/// Refuses a name that Windows or NTFS would turn into something else: a
/// `:` (an alternate data stream: `a:b` writes stream `b` of file `a`), or a
/// trailing dot or space (dropped, so `x.` and `x` become one file). Checked
/// where the receiver runs on Windows; elsewhere such names are ordinary
/// (`10:30 meeting.txt`).
/// `shown` is the path as the error quotes it.
pub fn windows_name(component: &str, shown: impl FnOnce() -> String) -> Result<(), PathError> {
    if component.contains(':') {
        return Err(PathError::Colon(shown()));
    }
    if component.ends_with(['.', ' ']) {
        return Err(PathError::TrailingDotOrSpace(shown()));
    }
    Ok(())
}

/// The device name `component` would open on Windows, if any.
fn reserved_name(component: &str) -> Option<String> {
    let stem = component.split('.').next().unwrap_or("");
    let stem = stem.trim_end_matches([' ', '.']);
    let upper = stem.to_ascii_uppercase();
    if RESERVED.contains(&upper.as_str()) {
        return Some(upper);
    }
    // COM1-9 and LPT1-9, and Windows also takes superscript 1, 2 and 3.
    let digit = upper
        .strip_prefix("COM")
        .or_else(|| upper.strip_prefix("LPT"))
        .filter(|d| {
            matches!(
                *d,
                "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
            )
        });
    if digit.is_some() {
        return Some(upper);
    }
    None
}

/// `name` with the " (n)" suffix that makes it unique: before the extension
/// (`photo (1).jpg`, `archive (2).tar.gz`, `.bashrc (1)`), shortening the stem
/// so the result still fits [`MAX_COMPONENT`]. `n == 0` gives `name` itself.
pub fn collision_name(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (stem, ext) = split_extension(name);
    let suffix = format!(" ({n})");
    let room = MAX_COMPONENT.saturating_sub(suffix.len() + ext.len());
    let mut end = stem.len().min(room);
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}{ext}", &stem[..end])
}

/// Splits off the extension: the last `.xyz`, or `.tar.xyz`; none for dot files.
fn split_extension(name: &str) -> (&str, &str) {
    let Some(dot) = name.rfind('.').filter(|&i| i > 0) else {
        return (name, "");
    };
    let (stem, ext) = name.split_at(dot);
    if ext.len() > 16 {
        return (name, ""); // not an extension, just a dot in a name
    }
    if let Some(tar) = stem
        .len()
        .checked_sub(4)
        .filter(|&i| i > 0 && stem.is_char_boundary(i) && stem[i..].eq_ignore_ascii_case(".tar"))
    {
        return name.split_at(tar);
    }
    (stem, ext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_paths_pass() {
        for p in [
            "a.txt",
            "photos/2024/IMG 001.jpg",
            "ünïcødé/файл.txt",
            "a/b/c/d",
            ".hidden",
            "name with spaces",
            "10:30 meeting.txt",
            "CONSOLE.txt",
            "com10",
            "..foo",
        ] {
            assert!(SafePath::parse(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        assert_eq!(SafePath::parse(""), Err(PathError::Empty));
        for (p, want) in [
            ("/etc/passwd", "absolute"),
            ("../x", "climbs"),
            ("a/../../x", "climbs"),
            ("a/..", "climbs"),
            ("a//b", "empty"),
            ("a/./b", "empty"),
            ("a/", "empty"),
            ("C:/Windows/x", "drive"),
            ("c:x", "drive"),
            ("a/D:evil", "drive"),
            ("a\\..\\b", "backslash"),
            ("a\0b", "control"),
            ("line\nbreak", "control"),
        ] {
            let err = SafePath::parse(p).unwrap_err().to_string();
            assert!(err.contains(want), "{p:?}: {err}");
        }
    }

    /// Device names Windows reserves, superscript digits included, are
    /// refused everywhere (a folder may be shared with Windows).
    #[test]
    fn every_windows_device_name_is_refused() {
        for p in ["COM¹", "a/lpt³.txt", "conin$", "CONOUT$.log"] {
            assert!(
                matches!(SafePath::parse(p), Err(PathError::Reserved(..))),
                "{p:?}"
            );
        }
        for p in ["COM10", "com", "x.y", "a b/c"] {
            assert!(SafePath::parse(p).is_ok(), "{p:?}");
        }
    }

    /// Names NTFS would turn into a stream, or Windows would merge with
    /// another by dropping a trailing dot or space, are refused by the check a
    /// Windows receiver runs.
    #[test]
    fn names_windows_would_change_are_refused_on_windows() {
        for (c, want) in [
            ("ab:stream", "\":\""),
            ("b.txt:zone.identifier", "\":\""),
            ("x.", "dot or a space"),
            ("dir ", "dot or a space"),
        ] {
            let err = windows_name(c, || c.to_string()).unwrap_err().to_string();
            assert!(err.contains(want), "{c:?}: {err}");
        }
        for c in ["a.txt", ".hidden", "x y"] {
            assert!(windows_name(c, || c.to_string()).is_ok(), "{c:?}");
        }
    }

    /// A name with a multi-byte character where ".tar" would start must not
    /// panic the receiver when it picks a free name (found by fuzzing).
    #[test]
    fn collision_names_of_multibyte_names_do_not_panic() {
        assert_eq!(collision_name("日ab.gz", 1), "日ab (1).gz");
        assert_eq!(collision_name("é.tar.gz", 2), "é (2).tar.gz");
    }

    #[test]
    fn windows_device_names_are_refused_in_any_form() {
        for p in [
            "CON",
            "con",
            "a/nul.txt",
            "Aux.tar.gz",
            "COM1",
            "lpt9.log",
            "PRN ",
            "x/NUL. .txt",
        ] {
            assert!(
                matches!(SafePath::parse(p), Err(PathError::Reserved(..))),
                "{p}"
            );
        }
    }

    #[test]
    fn overlong_and_overdeep_paths_are_refused() {
        assert!(matches!(
            SafePath::parse(&"x".repeat(256)),
            Err(PathError::LongComponent(_))
        ));
        assert!(SafePath::parse(&"x".repeat(255)).is_ok());
        assert!(matches!(
            SafePath::parse(&"a/".repeat(2100)),
            Err(PathError::TooLong(_))
        ));
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert!(matches!(SafePath::parse(&deep), Err(PathError::TooDeep(_))));
    }

    #[test]
    fn roots_and_ancestors() {
        let p = SafePath::parse("a/b/c.txt").unwrap();
        assert_eq!(p.root(), "a");
        assert_eq!(p.below_root(), Some("b/c.txt"));
        assert_eq!(p.ancestors().collect::<Vec<_>>(), ["a", "a/b"]);
        let top = SafePath::parse("c.txt").unwrap();
        assert_eq!(top.below_root(), None);
        assert_eq!(top.ancestors().count(), 0);
    }

    #[test]
    fn collision_names_go_before_the_extension() {
        assert_eq!(collision_name("a.txt", 0), "a.txt");
        assert_eq!(collision_name("a.txt", 1), "a (1).txt");
        assert_eq!(collision_name("photos", 2), "photos (2)");
        assert_eq!(collision_name("archive.tar.gz", 1), "archive (1).tar.gz");
        assert_eq!(collision_name(".bashrc", 1), ".bashrc (1)");
        assert_eq!(collision_name("v1.2.3", 1), "v1.2 (1).3");
        let long = format!("{}.txt", "é".repeat(125));
        let c = collision_name(&long, 12);
        assert!(c.len() <= MAX_COMPONENT && c.ends_with(" (12).txt"), "{c}");
    }

    proptest! {
        #[test]
        fn accepted_paths_never_escape(s in "[a-zA-Z0-9 ./\\\\:]{0,40}") {
            if let Ok(p) = SafePath::parse(&s) {
                let joined = std::path::Path::new("/base").join(p.as_str());
                let mut depth = 0i32;
                for c in joined.components().skip(2) {
                    match c {
                        std::path::Component::Normal(_) => depth += 1,
                        _ => prop_assert!(false, "{s:?} gave component {c:?}"),
                    }
                }
                prop_assert!(depth >= 1);
            }
        }

        #[test]
        fn collision_names_are_valid_and_distinct(name in "[a-z.]{1,20}", n in 1u32..1000) {
            prop_assume!(SafePath::parse(&name).is_ok() && !name.contains('/'));
            let c = collision_name(&name, n);
            prop_assert_ne!(&c, &name);
            prop_assert!(SafePath::parse(&c).is_ok(), "{}", c);
        }
    }
}
