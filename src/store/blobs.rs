//! Content-addressed files: `<dir>/blobs/<sha256 hex>`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::durable::sync_dir;
use super::error::StoreError;

const TMP_PREFIX: &str = ".tmp-";

/// True for exactly 64 lowercase hex digits: the only names blobs get.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Path of a blob. A name that is not a SHA-256 hex string never maps
/// outside the blobs directory: it gets a name no blob can have.
pub(crate) fn blob_path(blobs: &Path, sha256: &str) -> PathBuf {
    if is_sha256_hex(sha256) {
        blobs.join(sha256)
    } else {
        blobs.join(".invalid-blob-name")
    }
}

/// Writes the blob durably (temp file, fsync, rename, directory fsync) and
/// returns its hex SHA-256. Idempotent: an existing complete file is kept
/// (and the directory is synced again so its entry is durable).
pub(crate) fn put_blob(blobs: &Path, bytes: &[u8]) -> Result<String, StoreError> {
    let sha = hex::encode(Sha256::digest(bytes));
    let path = blobs.join(&sha);
    if let Ok(meta) = fs::metadata(&path)
        && meta.is_file()
        && meta.len() == bytes.len() as u64
    {
        // Its age is what the retention sweep reads: a blob used again is
        // young again.
        touch(&path).map_err(|e| StoreError::io("blob touch", e))?;
        sync_dir(blobs).map_err(|e| StoreError::io("blob dir fsync", e))?;
        return Ok(sha);
    }
    let tmp = blobs.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
    let written = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io("blob write", e));
    }
    sync_dir(blobs).map_err(|e| StoreError::io("blob dir fsync", e))?;
    Ok(sha)
}

fn touch(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_modified(std::time::SystemTime::now())
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f: File = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Removes temp files left by a crash in the middle of `put_blob`.
pub(crate) fn clean_temp(blobs: &Path) {
    let Ok(entries) = fs::read_dir(blobs) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TMP_PREFIX))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}
