//! Maildir delivery for trying ticketgate with nothing else running.
//! A message is written to `tmp/`, fsynced, then renamed into `new/`, so a
//! reader never sees half a message and a `250` means it is on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

use super::{HopError, Outgoing};
use crate::wire::reply::Reply;

pub struct MaildirHop {
    dir: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl MaildirHop {
    pub fn open(dir: &Path) -> Result<MaildirHop, HopError> {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.P{}Q{}.ticketgate",
            now.as_secs(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = self.dir.join("tmp").join(&name);
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut reader = msg.reader().await?;
        let mut chunk = Vec::new();
        while reader.next_chunk(&mut chunk).await? > 0 {
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        drop(file);
        let new = self.dir.join("new").join(&name);
        tokio::fs::rename(&tmp, &new).await?;
        std::fs::File::open(self.dir.join("new"))?.sync_all()?;
        Ok(Reply::new(250, "2.0.0", format!("Ok: queued as {name}")))
    }
}
