//! The next hop: an SMTP server (one connection per client session, as
//! Postfix's before-queue proxy expects) or, for a first trial, a Maildir.

pub mod maildir;
mod smtp;

use std::ops::Range;
use std::time::Duration;

use thiserror::Error;

use crate::config::NextHop;
use crate::envelope::ClientInfo;
use crate::spool::Spool;
use crate::wire::reply::Reply;

pub use maildir::MaildirHop;
pub use smtp::SmtpHop;

#[derive(Debug, Error)]
pub enum HopError {
    #[error("next hop {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("next hop timed out")]
    Timeout,
    #[error("next hop closed the connection")]
    Closed,
    #[error("next hop sent an invalid reply: {0}")]
    Protocol(String),
    #[error("address cannot be passed on: {0}")]
    Address(#[from] crate::envelope::AddressError),
    #[error("next hop i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl HopError {
    /// What our client is told: the message stays with it, to retry later.
    pub fn to_reply(&self) -> Reply {
        Reply::new(
            451,
            "4.4.1",
            format!("Next hop not available, try again later ({self})"),
        )
    }
}

pub use crate::envelope::{MailParams, RcptParams};

/// A message as it leaves: `head` (our tags) goes on top, the `cuts`
/// (forged fields, sorted byte ranges of the spooled content) are left
/// out, the rest is sent as is.
pub struct Outgoing<'a> {
    pub head: &'a [u8],
    pub cuts: &'a [Range<u64>],
    pub spool: &'a Spool,
}

impl Outgoing<'_> {
    pub fn pass_through(spool: &Spool) -> Outgoing<'_> {
        Outgoing {
            head: &[],
            cuts: &[],
            spool,
        }
    }

    pub fn len(&self) -> u64 {
        let cut: u64 = self.cuts.iter().map(|c| c.end - c.start).sum();
        self.head.len() as u64 + self.spool.len().saturating_sub(cut)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn reader(&self) -> std::io::Result<OutgoingReader<'_>> {
        Ok(OutgoingReader {
            head: (!self.head.is_empty()).then_some(self.head),
            spool: self.spool.reader().await?,
            cuts: self.cuts,
            pos: 0,
        })
    }
}

/// Reads an `Outgoing` message chunk by chunk.
pub struct OutgoingReader<'a> {
    head: Option<&'a [u8]>,
    spool: crate::spool::SpoolReader<'a>,
    /// Cuts not yet passed.
    cuts: &'a [Range<u64>],
    /// Offset in the spooled content of the next chunk.
    pos: u64,
}

impl OutgoingReader<'_> {
    /// Replaces `buf` with the next bytes; returns 0 at the end.
    pub async fn next_chunk(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if let Some(head) = self.head.take() {
            buf.clear();
            buf.extend_from_slice(head);
            return Ok(buf.len());
        }
        loop {
            let n = self.spool.next_chunk(buf).await?;
            if n == 0 {
                return Ok(0);
            }
            let start = self.pos;
            self.pos += n as u64;
            self.cut_chunk(buf, start);
            if !buf.is_empty() {
                return Ok(buf.len());
            }
        }
    }

    /// Removes from `buf` (content from offset `start`) what the cuts
    /// cover, in place.
    fn cut_chunk(&mut self, buf: &mut Vec<u8>, start: u64) {
        let end = start + buf.len() as u64;
        let mut kept = 0usize;
        let mut at = start;
        while at < end {
            match self.cuts.first() {
                Some(c) if c.end <= at => self.cuts = &self.cuts[1..],
                Some(c) if c.start <= at => at = c.end.min(end),
                next => {
                    let stop = next.map_or(end, |c| c.start.min(end));
                    let (from, to) = ((at - start) as usize, (stop - start) as usize);
                    buf.copy_within(from..to, kept);
                    kept += to - from;
                    at = stop;
                }
            }
        }
        buf.truncate(kept);
    }
}

pub enum NextHopConn {
    Smtp(Box<SmtpHop>),
    Maildir(MaildirHop),
}

impl NextHopConn {
    pub async fn connect(
        hop: &NextHop,
        helo: &str,
        timeout: Duration,
    ) -> Result<NextHopConn, HopError> {
        match hop {
            NextHop::Smtp(addr) => Ok(NextHopConn::Smtp(Box::new(
                SmtpHop::connect(addr, helo, timeout).await?,
            ))),
            NextHop::Maildir(dir) => Ok(NextHopConn::Maildir(MaildirHop::open(dir)?)),
        }
    }

    pub async fn xforward(&mut self, info: &ClientInfo) -> Result<(), HopError> {
        match self {
            NextHopConn::Smtp(s) => s.xforward(info).await,
            NextHopConn::Maildir(_) => Ok(()),
        }
    }

    pub async fn mail(&mut self, from: &str, params: &MailParams) -> Result<Reply, HopError> {
        match self {
            NextHopConn::Smtp(s) => s.mail(from, params).await,
            NextHopConn::Maildir(m) => Ok(m.mail(from)),
        }
    }

    pub async fn rcpt(&mut self, to: &str, params: &RcptParams) -> Result<Reply, HopError> {
        match self {
            NextHopConn::Smtp(s) => s.rcpt(to, params).await,
            NextHopConn::Maildir(m) => Ok(m.rcpt(to)),
        }
    }

    pub async fn data(&mut self, msg: &Outgoing<'_>) -> Result<Reply, HopError> {
        match self {
            NextHopConn::Smtp(s) => s.data(msg).await,
            NextHopConn::Maildir(m) => m.deliver(msg).await,
        }
    }

    /// Whether the next hop takes DSN parameters (RFC 3461), so we may
    /// offer them to our client.
    pub fn offers_dsn(&self) -> bool {
        match self {
            NextHopConn::Smtp(s) => s.offers_dsn(),
            NextHopConn::Maildir(_) => false,
        }
    }

    pub async fn rset(&mut self) -> Result<Reply, HopError> {
        match self {
            NextHopConn::Smtp(s) => s.rset().await,
            NextHopConn::Maildir(m) => Ok(m.rset()),
        }
    }

    pub async fn quit(self) {
        if let NextHopConn::Smtp(s) = self {
            s.quit().await;
        }
    }
}
