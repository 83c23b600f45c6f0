//! Maildir delivery for trying ticketgate with nothing else running (the
//! next hop, and the outbox's reply relay). A message is written to
//! `tmp/`, fsynced, then renamed into `new/`, so a reader never sees half a
//! message and a `250` means it is on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

use super::{HopError, Outgoing};
use crate::wire::reply::Reply;

pub struct MaildirHop {
    dir: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Makes `dir` a Maildir (its `tmp`, `new` and `cur`) if it is not one.
pub fn create(dir: &Path) -> std::io::Result<()> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// A message being written to `tmp/` of a Maildir.
pub struct Delivery {
    dir: PathBuf,
    name: String,
    pub file: tokio::fs::File,
}

impl Delivery {
    /// Starts a message under a name unique to this process and moment.
    pub async fn begin(dir: &Path) -> std::io::Result<Delivery> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.P{}Q{}.ticketgate",
            now.as_secs(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let file = tokio::fs::File::create(dir.join("tmp").join(&name)).await?;
        Ok(Delivery {
            dir: dir.to_path_buf(),
            name,
            file,
        })
    }

    /// Makes the message durable and visible in `new/`; returns its name.
    pub async fn commit(self) -> std::io::Result<String> {
        self.file.sync_all().await?;
        drop(self.file);
        let tmp = self.dir.join("tmp").join(&self.name);
        tokio::fs::rename(&tmp, self.dir.join("new").join(&self.name)).await?;
        std::fs::File::open(self.dir.join("new"))?.sync_all()?;
        Ok(self.name)
    }
}

impl MaildirHop {
    pub fn open(dir: &Path) -> Result<MaildirHop, HopError> {
        create(dir)?;
        Ok(MaildirHop {
            dir: dir.to_path_buf(),
        })
    }

    pub fn mail(&mut self, _from: &str) -> Reply {
        Reply::new(250, "2.1.0", "Ok")
    }

    pub fn rcpt(&mut self, _to: &str) -> Reply {
        Reply::new(250, "2.1.5", "Ok")
    }

    pub fn rset(&mut self) -> Reply {
        Reply::new(250, "2.0.0", "Ok")
    }

    pub async fn deliver(&mut self, msg: &Outgoing<'_>) -> Result<Reply, HopError> {
        let mut delivery = Delivery::begin(&self.dir).await?;
        let mut reader = msg.reader().await?;
        let mut chunk = Vec::new();
        while reader.next_chunk(&mut chunk).await? > 0 {
            delivery.file.write_all(&chunk).await?;
        }
        let name = delivery.commit().await?;
        Ok(Reply::new(250, "2.0.0", format!("Ok: queued as {name}")))
    }
}
