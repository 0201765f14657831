//! Content addressing of bundles: file paths inside a bundle, the file index, bundle ids, and
//! where blobs live in the object store.
//!
//! A bundle's id is `b3:` + blake3 of its canonical file index, one line per file sorted by
//! path: `<mode octal> <size> <blob hex> <path>\n`. The same files give the same id on any
//! machine, whatever order they were found in.

use std::fmt;
use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest path inside a bundle, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("path {path:?} in the bundle: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("{path:?} appears twice in the bundle's file index")]
    Duplicate { path: String },
    #[error("{text:?} is not a content id; ids look like b3: followed by 64 hex digits")]
    BadHash { text: String },
    /// A stored file index that does not parse (see [`FileIndex::from_canonical`]).
    #[error("line {line} of a stored file index: {why}")]
    BadIndexLine { line: usize, why: String },
}

/// Most files one bundle may hold (2^20: a million files and their manifest fit).
pub const MAX_BUNDLE_FILES: usize = 1 << 20;

/// A blake3 content hash, written `b3:<64 hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash([u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The object store key of the blob with this content: `blobs/b3/<2 hex>/<64 hex>`.
    pub fn blob_key(&self) -> String {
        let hex = self.hex();
        format!("blobs/b3/{}/{hex}", &hex[..2])
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b3:{}", self.hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl Hash {
    /// The hash written as 64 lowercase hex digits (no `b3:`), or `None`.
    fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        blake3::Hash::from_hex(hex).ok().map(Self::from)
    }
}

impl FromStr for Hash {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<Self, BundleError> {
        s.strip_prefix("b3:")
            .and_then(Self::from_hex)
            .ok_or_else(|| BundleError::BadHash { text: s.to_owned() })
    }
}

crate::serde_as_text!(Hash);

/// A validated relative path inside a bundle: `/`-separated, no empty, `.` or `..` parts, no
/// leading `/`, no control characters (so the canonical index stays one line per file).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundlePath(String);

impl BundlePath {
    pub fn parse(path: &str) -> Result<Self, BundleError> {
        let bad = |why| BundleError::BadPath {
            path: path.to_owned(),
            why,
        };
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(bad("longer than 4096 bytes"));
        }
        if path.starts_with('/') {
            return Err(bad("absolute; paths are relative to the bundle root"));
        }
        if path.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("contains a control character or a backslash"));
        }
        for part in path.split('/') {
            match part {
                "" => return Err(bad("has an empty part (double or trailing '/')")),
                "." | ".." => {
                    return Err(bad(
                        "has a '.' or '..' part; paths must stay inside the bundle",
                    ));
                }
                _ => {}
            }
        }
        Ok(Self(path.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundlePath({})", self.0)
    }
}

impl FromStr for BundlePath {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<Self, BundleError> {
        Self::parse(s)
    }
}

crate::serde_as_text!(BundlePath);

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: BundlePath,
    pub blob: Hash,
    pub size: u64,
    /// Unix permission bits (e.g. 0o644, 0o755).
    pub mode: u32,
}

/// The most bytes of file paths an ingest carries for rules (see
/// [`FileIndex::paths_for_rules`]): a few thousand files' worth, small beside a log entry's limit.
pub const RULE_PATHS_BYTES: usize = 64 * 1024;

/// The files of a bundle, sorted by path, each path once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileIndex {
    files: Vec<FileEntry>,
}

impl FileIndex {
    pub fn new(mut files: Vec<FileEntry>) -> Result<Self, BundleError> {
        // Unstable: no scratch buffer the size of the index, and equal paths are refused.
        // An index read back is sorted already and skips the sort.
        if !files.is_sorted_by(|a, b| a.path <= b.path) {
            files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        }
        if let Some(w) = files.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(BundleError::Duplicate {
                path: w[0].path.to_string(),
            });
        }
        Ok(Self { files })
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// The paths of the files, for rules that match files, when they add up to at most
    /// [`RULE_PATHS_BYTES`]; `None` for a larger bundle (such rules then fire as if one matched).
    pub fn paths_for_rules(&self) -> Option<Vec<String>> {
        let mut total = 0usize;
        let mut out = Vec::with_capacity(self.files.len());
        for f in &self.files {
            total += f.path.as_str().len() + 1;
            if total > RULE_PATHS_BYTES {
                return None;
            }
            out.push(f.path.to_string());
        }
        Some(out)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn get(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Hands each line of the canonical text to `each`, in order, through one reused buffer:
    /// an index of a million files is never held as one string.
    fn each_line<E>(&self, mut each: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
        use std::fmt::Write as _;
        let mut line = String::with_capacity(256);
        for f in &self.files {
            line.clear();
            // Writing to a String cannot fail.
            let _ = writeln!(
                line,
                "{:o} {} {} {}",
                f.mode & 0o7777,
                f.size,
                blake3::Hash::from_bytes(f.blob.0).to_hex(),
                f.path
            );
            each(&line)?;
        }
        Ok(())
    }

    /// The canonical text the bundle id is the hash of.
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(self.files.len() * 100);
        let _ = self.each_line(|l| {
            out.push_str(l);
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// Writes [`FileIndex::canonical`] to `w` a line at a time.
    pub fn write_canonical(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        self.each_line(|l| w.write_all(l.as_bytes()))
    }

    /// A page of the files at or below the folder `dir` (every file when `None`; just that
    /// file when `dir` names one), after the path `after`: at most `limit` entries, and how
    /// many more of them follow the page.
    pub fn page(
        &self,
        dir: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> (&[FileEntry], usize) {
        let (mut lo, hi) = match dir.map(|d| d.trim_end_matches('/')) {
            None | Some("") => (0, self.files.len()),
            Some(d) => {
                if let Ok(i) = self.files.binary_search_by(|f| f.path.as_str().cmp(d)) {
                    (i, i + 1)
                } else {
                    // Paths below `d/` sort together, before `d0` ('0' follows '/').
                    let (below, past) = (format!("{d}/"), format!("{d}0"));
                    (
                        self.files
                            .partition_point(|f| f.path.as_str() < below.as_str()),
                        self.files
                            .partition_point(|f| f.path.as_str() < past.as_str()),
                    )
                }
            }
        };
        if let Some(after) = after {
            lo = lo.max(self.files.partition_point(|f| f.path.as_str() <= after));
        }
        let lo = lo.min(hi);
        let end = lo.saturating_add(limit).min(hi);
        (&self.files[lo..end], hi - end)
    }

    /// `b3:` + blake3 of [`FileIndex::canonical`], hashed a line at a time.
    pub fn id(&self) -> Hash {
        let mut hasher = blake3::Hasher::new();
        let _ = self.each_line(|l| {
            hasher.update(l.as_bytes());
            Ok::<(), std::convert::Infallible>(())
        });
        hasher.finalize().into()
    }

    /// Reads back the [`FileIndex::canonical`] form, so an index can be stored as a blob
    /// whose key is the bundle id. See [`IndexParser`] to read it in pieces.
    pub fn from_canonical(text: &[u8]) -> Result<Self, BundleError> {
        let mut parser = IndexParser::default();
        parser.feed(text);
        parser.finish()
    }
}

/// Reads the [`FileIndex::canonical`] form in pieces of any size, as they come from a file or
/// a store's stream, keeping only the entries and one unfinished line. Paths hold no control
/// characters, so each line is one entry, and the path (which may hold spaces) is the rest
/// of the line.
#[derive(Debug, Default)]
pub struct IndexParser {
    files: Vec<FileEntry>,
    /// The bytes of a line a piece ended in the middle of.
    partial: Vec<u8>,
    /// Lines parsed so far, for errors.
    lines: usize,
    /// The first bad line: later pieces are not parsed, and [`IndexParser::finish`] gives it.
    failed: Option<BundleError>,
}

impl IndexParser {
    /// Parses every whole line of `piece` (with what an earlier piece left unfinished). After
    /// a bad line it does nothing: [`IndexParser::finish`] reports that line.
    pub fn feed(&mut self, piece: &[u8]) {
        if self.failed.is_none()
            && let Err(e) = self.feed_lines(piece)
        {
            self.failed = Some(e);
        }
    }

    fn feed_lines(&mut self, mut piece: &[u8]) -> Result<(), BundleError> {
        if !self.partial.is_empty() {
            let Some(nl) = piece.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(piece);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&piece[..nl]);
            self.line(&line)?;
            piece = &piece[nl + 1..];
        }
        let mut rest = piece;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.line(&rest[..nl])?;
            rest = &rest[nl + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// The index, once every piece was fed (a last line without its newline counts), or the
    /// first bad line.
    pub fn finish(mut self) -> Result<FileIndex, BundleError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line)?;
        }
        FileIndex::new(self.files)
    }

    fn line(&mut self, line: &[u8]) -> Result<(), BundleError> {
        self.lines += 1;
        let bad = |why: String| BundleError::BadIndexLine {
            line: self.lines,
            why,
        };
        let line = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut parts = line.splitn(4, ' ');
        let (Some(mode), Some(size), Some(hex), Some(path)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `<octal mode> <size> <hex> <path>`".into()));
        };
        let mode = u32::from_str_radix(mode, 8).map_err(|e| bad(format!("mode {mode:?}: {e}")))?;
        let size = size
            .parse::<u64>()
            .map_err(|e| bad(format!("size {size:?}: {e}")))?;
        let blob = Hash::from_hex(hex).ok_or_else(|| {
            bad(BundleError::BadHash {
                text: format!("b3:{hex}"),
            }
            .to_string())
        })?;
        let path = BundlePath::parse(path).map_err(|e| bad(e.to_string()))?;
        self.files.push(FileEntry {
            path,
            blob,
            size,
            mode,
        });
        Ok(())
    }
}

impl<'de> Deserialize<'de> for FileIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            files: Vec<FileEntry>,
        }
        FileIndex::new(Raw::deserialize(d)?.files).map_err(serde::de::Error::custom)
    }
}

/// Streams a reader through blake3; returns the hash and the byte count. Blocking: call it
/// from `spawn_blocking` or a thread of its own.
pub fn hash_reader(r: impl Read) -> std::io::Result<(Hash, u64)> {
    thread_local! {
        // One buffer per thread, not one per file: a bundle of a million small files would
        // otherwise allocate and zero a quarter of a MiB a million times.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
    }
    BUF.with(|buf| {
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        read_pieces(r, &mut buf.borrow_mut(), |piece| {
            hasher.update(piece);
            total += piece.len() as u64;
        })?;
        Ok((hasher.finalize().into(), total))
    })
}

/// Hands everything `r` gives to `each`, a bufferful at a time. Blocking.
pub fn read_pieces(
    mut r: impl Read,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => each(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, content: &[u8]) -> FileEntry {
        FileEntry {
            path: BundlePath::parse(path).unwrap(),
            blob: Hash::of(content),
            size: content.len() as u64,
            mode: 0o644,
        }
    }

    #[test]
    fn pages_go_through_a_folder_in_path_order() {
        let index = FileIndex::new(
            ["a.txt", "d/x", "d/y", "d/z/1", "d-e", "d0", "manifest.json"]
                .iter()
                .map(|p| entry(p, p.as_bytes()))
                .collect(),
        )
        .unwrap();
        let paths = |(page, more): (&[FileEntry], usize)| {
            (
                page.iter()
                    .map(|f| f.path.as_str().to_owned())
                    .collect::<Vec<_>>(),
                more,
            )
        };
        assert_eq!(
            paths(index.page(Some("d"), None, 2)),
            (vec!["d/x".into(), "d/y".into()], 1)
        );
        assert_eq!(
            paths(index.page(Some("d/"), Some("d/y"), 2)),
            (vec!["d/z/1".into()], 0)
        );
        assert_eq!(
            paths(index.page(Some("d-e"), None, 5)),
            (vec!["d-e".into()], 0)
        );
        assert_eq!(
            paths(index.page(None, Some("d0"), 5)),
            (vec!["manifest.json".into()], 0)
        );
        assert_eq!(paths(index.page(Some("nothing"), None, 5)), (vec![], 0));
        assert_eq!(index.page(None, None, 3).1, 4);
    }

    #[test]
    fn id_is_independent_of_order_and_sensitive_to_content() {
        let a = FileIndex::new(vec![entry("b.csv", b"2"), entry("a/x.csv", b"1")]).unwrap();
        let b = FileIndex::new(vec![entry("a/x.csv", b"1"), entry("b.csv", b"2")]).unwrap();
        assert_eq!(a.id(), b.id());
        let c = FileIndex::new(vec![entry("a/x.csv", b"1"), entry("b.csv", b"3")]).unwrap();
        assert_ne!(a.id(), c.id());
        assert_eq!(a.files()[0].path.as_str(), "a/x.csv");
        assert_eq!(a.total_bytes(), 2);
        assert!(a.get("b.csv").is_some() && a.get("nope").is_none());
        let dup = FileIndex::new(vec![entry("a", b"1"), entry("a", b"2")]).unwrap_err();
        assert!(dup.to_string().contains("twice"));
    }

    #[test]
    fn the_canonical_form_reads_back() {
        let a = FileIndex::new(vec![
            entry("data/x.csv", b"hello"),
            entry("a file with spaces.txt", b""),
            entry("z/deep/er.bin", b"\x00\x01"),
        ])
        .unwrap();
        let back = FileIndex::from_canonical(a.canonical().as_bytes()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.id(), a.id());
        assert_eq!(FileIndex::from_canonical(b"").unwrap().files().len(), 0);
        for (text, why) in [
            (&b"644 5 abc"[..], "line 1"),
            (
                b"644 x 0000000000000000000000000000000000000000000000000000000000000000 a",
                "size",
            ),
            (
                b"999 5 0000000000000000000000000000000000000000000000000000000000000000 a",
                "mode",
            ),
            (b"644 5 zz a", "not a content id"),
            (
                b"644 5 0000000000000000000000000000000000000000000000000000000000000000 ../a",
                "'..'",
            ),
        ] {
            let e = FileIndex::from_canonical(text).unwrap_err().to_string();
            assert!(e.contains(why), "{e} should mention {why}");
        }
    }

    #[test]
    fn the_canonical_form_reads_back_in_pieces_of_any_size() {
        let a = FileIndex::new(
            (0..40)
                .map(|i| entry(&format!("d{}/f {i}.txt", i % 3), format!("{i}").as_bytes()))
                .collect(),
        )
        .unwrap();
        let mut text = Vec::new();
        a.write_canonical(&mut text).unwrap();
        assert_eq!(text, a.canonical().as_bytes());
        assert_eq!(a.id(), Hash::of(&text));
        for piece in [1, 2, 7, 99, 100, 101, text.len()] {
            let mut parser = IndexParser::default();
            for chunk in text.chunks(piece) {
                parser.feed(chunk);
            }
            assert_eq!(parser.finish().unwrap(), a, "pieces of {piece} bytes");
        }
        // A bad line is named by its number, whichever piece it arrived in.
        let mut parser = IndexParser::default();
        let mut bad = text.clone();
        bad.extend_from_slice(b"644 1 nothex x\n");
        bad.extend_from_slice(b"644 1 0000 y\n");
        for chunk in bad.chunks(13) {
            parser.feed(chunk);
        }
        let failed = parser.finish().unwrap_err().to_string();
        assert!(failed.contains("line 41"), "{failed}");
    }

    #[test]
    fn canonical_form_is_stable() {
        let a = FileIndex::new(vec![entry("data/x.csv", b"hello")]).unwrap();
        let hex = blake3::hash(b"hello").to_hex();
        assert_eq!(a.canonical(), format!("644 5 {hex} data/x.csv\n"));
    }

    #[test]
    fn paths_stay_inside_the_bundle() {
        for (p, why) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("a/../../b", "'..'"),
            ("./a", "'.'"),
            ("a//b", "empty part"),
            ("a/", "empty part"),
            ("a\nb", "control"),
            ("a\\b", "backslash"),
        ] {
            let e = BundlePath::parse(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p:?}: {e}");
        }
        assert!(BundlePath::parse("output_data/weights.csv").is_ok());
        assert!(BundlePath::parse("lr=0.1/run 1/é.txt").is_ok());
    }

    #[test]
    fn hashes_and_blob_keys() {
        let h = Hash::of(b"abc");
        let text = h.to_string();
        assert!(text.starts_with("b3:"));
        assert_eq!(text.parse::<Hash>().unwrap(), h);
        assert!("b3:xyz".parse::<Hash>().is_err());
        assert!("md5:00".parse::<Hash>().is_err());
        let key = h.blob_key();
        assert_eq!(key, format!("blobs/b3/{}/{}", &h.hex()[..2], h.hex()));
        let (streamed, n) = hash_reader(&b"abc"[..]).unwrap();
        assert_eq!((streamed, n), (h, 3));
        let index = FileIndex::new(vec![entry("a", b"1")]).unwrap();
        let bytes = rmp_serde::to_vec_named(&index).unwrap();
        assert_eq!(rmp_serde::from_slice::<FileIndex>(&bytes).unwrap(), index);
    }
}
