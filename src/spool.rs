//! Message content received in DATA: in memory while small, in a file under
//! `<data_dir>/spool` beyond a threshold, so a 60 MB message does not sit in
//! memory. The file is removed when the spool is dropped.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Spool {
    mem: Vec<u8>,
    file: Option<SpoolFile>,
    len: u64,
    threshold: usize,
    dir: PathBuf,
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
        }
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
            .join(format!("spool-{}", uuid::Uuid::new_v4().simple()));
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
}
