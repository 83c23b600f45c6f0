//! Message content received in DATA: in memory while small, in a file under
//! `<data_dir>/spool` beyond a threshold, so a 60 MB message does not sit in
//! memory. The file is removed when the spool is dropped, and leftovers of
//! a crash by [`remove_leftovers`] at start.
//!
//! While the bytes stream in, a [`Fingerprint`] hashes them: the identity
//! of a message that has no Message-ID, whatever its size.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FILE_PREFIX: &str = "spool-";

pub struct Spool {
    mem: Vec<u8>,
    file: Option<SpoolFile>,
    len: u64,
    threshold: usize,
    dir: PathBuf,
    fingerprint: Fingerprint,
}

struct SpoolFile {
    path: PathBuf,
    writer: tokio::io::BufWriter<tokio::fs::File>,
}

impl Spool {
    pub fn new(dir: &Path, threshold: usize) -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
            threshold,
            dir: dir.to_path_buf(),
            fingerprint: Fingerprint::default(),
        }
    }

    /// The message's identity so far (hex SHA-256, see [`Fingerprint`]).
    pub fn identity(&self) -> String {
        self.fingerprint.hex()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_on_disk(&self) -> bool {
        self.file.is_some()
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.len += bytes.len() as u64;
        self.fingerprint.update(bytes);
        if let Some(f) = &mut self.file {
            return f.writer.write_all(bytes).await;
        }
        self.mem.extend_from_slice(bytes);
        if self.mem.len() > self.threshold {
            self.move_to_disk().await?;
        }
        Ok(())
    }

    async fn move_to_disk(&mut self) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let path = self
            .dir
            .join(format!("{FILE_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let mut writer = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        writer.write_all(&self.mem).await?;
        self.mem = Vec::new();
        self.file = Some(SpoolFile { path, writer });
        Ok(())
    }

    /// Flushes buffered writes; call before reading.
    pub async fn finish(&mut self) -> std::io::Result<()> {
        if let Some(f) = &mut self.file {
            f.writer.flush().await?;
        }
        Ok(())
    }

    /// The first `n` bytes (fewer if the message is shorter).
    pub async fn head(&self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut reader = self.reader().await?;
        let mut out = Vec::with_capacity(n.min(self.len as usize));
        let mut chunk = Vec::new();
        while out.len() < n && reader.next_chunk(&mut chunk).await? > 0 {
            let take = (n - out.len()).min(chunk.len());
            out.extend_from_slice(&chunk[..take]);
        }
        Ok(out)
    }

    /// The whole content, or `None` when it is larger than `max`.
    pub async fn read_all(&self, max: usize) -> std::io::Result<Option<Vec<u8>>> {
        if self.len > max as u64 {
            return Ok(None);
        }
        self.head(max).await.map(Some)
    }

    pub async fn reader(&self) -> std::io::Result<SpoolReader<'_>> {
        Ok(match &self.file {
            None => SpoolReader::Mem(&self.mem, 0),
            Some(f) => SpoolReader::File(tokio::fs::File::open(&f.path).await?),
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(&f.path);
        }
    }
}

/// Removes the spool files a killed process left behind. Call it before
/// any session starts: every file in the directory is then a leftover.
pub fn remove_leftovers(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(FILE_PREFIX));
        if ours && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Header fields that hops add or rewrite on every delivery attempt:
/// trace (RFC 5321 §4.4), delivery and authentication results, filter
/// verdicts. Lowercase.
const VOLATILE_FIELDS: &[&str] = &[
    "received",
    "return-path",
    "delivered-to",
    "x-original-to",
    "x-received",
    "received-spf",
    "authentication-results",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "x-virus-scanned",
];
const VOLATILE_PREFIXES: &[&str] = &["x-spam-"];
/// Longer than any volatile name: a longer name is kept without looking.
const MAX_NAME: usize = 64;

fn is_volatile(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
    VOLATILE_FIELDS.contains(&name.as_str())
        || VOLATILE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// SHA-256 of a message as it streams in, leaving out the volatile header
/// fields (with their continuation lines): two delivery attempts of one
/// message hash alike although each hop stamped them differently.
#[derive(Clone, Default)]
pub struct Fingerprint {
    sha: Sha256,
    state: FieldState,
    /// The current field's name so far, up to [`MAX_NAME`].
    name: Vec<u8>,
    skip: bool,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum FieldState {
    #[default]
    LineStart,
    Name,
    Value,
    /// A CR at the start of a header line: the blank line, if LF follows.
    BlankCr,
    Body,
}

impl Fingerprint {
    pub fn update(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            i += self.step(&bytes[i..]);
        }
    }

    /// Consumes a prefix of `rest` (possibly none, after a state change).
    fn step(&mut self, rest: &[u8]) -> usize {
        match self.state {
            FieldState::Body => {
                self.sha.update(rest);
                rest.len()
            }
            FieldState::LineStart => self.line_start(rest[0]),
            FieldState::BlankCr => {
                if rest[0] == b'\n' {
                    self.sha.update(b"\r\n");
                    self.state = FieldState::Body;
                    return 1;
                }
                // A stray CR opening a line: part of a malformed field.
                self.keep_line(b"\r");
                0
            }
            FieldState::Name => self.name_byte(rest[0]),
            FieldState::Value => self.value(rest),
        }
    }

    fn line_start(&mut self, b: u8) -> usize {
        match b {
            // A continuation line belongs to the field before it.
            b' ' | b'\t' => self.state = FieldState::Value,
            b'\r' => {
                self.state = FieldState::BlankCr;
                return 1;
            }
            b'\n' => {
                self.sha.update(b"\n");
                self.state = FieldState::Body;
                return 1;
            }
            _ => {
                self.name.clear();
                self.state = FieldState::Name;
            }
        }
        0
    }

    fn name_byte(&mut self, b: u8) -> usize {
        if b == b':' {
            self.skip = is_volatile(&self.name);
            if !self.skip {
                self.sha.update(&self.name);
                self.sha.update(b":");
            }
            self.name.clear();
            self.state = FieldState::Value;
            return 1;
        }
        if b == b'\n' || self.name.len() >= MAX_NAME {
            let name = std::mem::take(&mut self.name);
            self.keep_line(&name);
            return 0;
        }
        self.name.push(b);
        1
    }

    /// Continues the current line as part of a field that is kept.
    fn keep_line(&mut self, pending: &[u8]) {
        self.skip = false;
        self.sha.update(pending);
        self.state = FieldState::Value;
    }

    fn value(&mut self, rest: &[u8]) -> usize {
        let (line, ends) = match rest.iter().position(|&b| b == b'\n') {
            Some(p) => (&rest[..=p], true),
            None => (rest, false),
        };
        if !self.skip {
            self.sha.update(line);
        }
        if ends {
            self.state = FieldState::LineStart;
        }
        line.len()
    }

    pub fn hex(&self) -> String {
        hex::encode(self.sha.clone().finalize())
    }
}

pub enum SpoolReader<'a> {
    Mem(&'a [u8], usize),
    File(tokio::fs::File),
}

const CHUNK: usize = 64 * 1024;

impl SpoolReader<'_> {
    /// Replaces `buf` with the next chunk; returns its length, 0 at the end.
    pub async fn next_chunk(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        buf.clear();
        match self {
            SpoolReader::Mem(data, pos) => {
                let end = (*pos + CHUNK).min(data.len());
                buf.extend_from_slice(&data[*pos..end]);
                *pos = end;
            }
            SpoolReader::File(f) => {
                buf.resize(CHUNK, 0);
                let n = f.read(buf).await?;
                buf.truncate(n);
            }
        }
        Ok(buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_content_goes_to_disk_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(dir.path(), 10);
        spool.write(b"0123456789").await.unwrap();
        assert!(!spool.is_on_disk());
        spool.write(b"abcdef").await.unwrap();
        assert!(spool.is_on_disk());
        spool.finish().await.unwrap();
        assert_eq!(
            spool.read_all(100).await.unwrap().unwrap(),
            b"0123456789abcdef"
        );
        assert_eq!(spool.head(3).await.unwrap(), b"012");
        assert!(spool.read_all(5).await.unwrap().is_none());
        drop(spool);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    fn fingerprint(chunks: &[&[u8]]) -> String {
        let mut f = Fingerprint::default();
        for c in chunks {
            f.update(c);
        }
        f.hex()
    }

    const MESSAGE: &[u8] =
        b"From: a@example.org\r\nSubject: stampa\r\n\r\nbody\r\nReceived: in body\r\n";

    #[test]
    fn trace_fields_do_not_change_the_identity() {
        let plain = fingerprint(&[MESSAGE]);
        let stamped = [
            b"Received: from mx1 (mx1 [192.0.2.1])\r\n\tby gate; Mon, 1 Dec 2026 10:00:00 +0000\r\nReturn-Path: <a@example.org>\r\nX-Spam-Score: 1.2\r\n".as_slice(),
            MESSAGE,
        ]
        .concat();
        assert_eq!(fingerprint(&[&stamped]), plain);
        // Byte by byte, as a slow client might send it.
        let bytes: Vec<&[u8]> = stamped.chunks(1).collect();
        assert_eq!(fingerprint(&bytes), plain);
    }

    #[test]
    fn content_and_kept_fields_change_the_identity() {
        let plain = fingerprint(&[MESSAGE]);
        let other_body = b"From: a@example.org\r\nSubject: stampa\r\n\r\nbody!\r\n";
        let other_subject =
            b"From: a@example.org\r\nSubject: stampe\r\n\r\nbody\r\nReceived: in body\r\n";
        let folded_kept =
            b"From: a@example.org\r\nSubject: stampa\r\n more\r\n\r\nbody\r\nReceived: in body\r\n";
        // A trace field in the body is content.
        let body_trace = b"From: a@example.org\r\nSubject: stampa\r\n\r\nbody\r\n";
        for other in [&other_body[..], other_subject, folded_kept, body_trace] {
            assert_ne!(fingerprint(&[other]), plain);
        }
    }

    #[tokio::test]
    async fn the_identity_covers_what_went_to_disk_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut small = Spool::new(dir.path(), 1 << 20);
        let mut large = Spool::new(dir.path(), 4);
        for s in [&mut small, &mut large] {
            s.write(b"Received: x\r\n").await.unwrap();
            s.write(MESSAGE).await.unwrap();
        }
        assert!(large.is_on_disk());
        assert_eq!(small.identity(), large.identity());
        assert_eq!(small.identity(), fingerprint(&[MESSAGE]));
    }

    #[test]
    fn leftovers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spool-0123"), b"x").unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"x").unwrap();
        assert_eq!(remove_leftovers(dir.path()), 1);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["keep.txt"]);
    }
}
