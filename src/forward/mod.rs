//! The next hop: an SMTP server (one connection per client session, as
//! Postfix's before-queue proxy expects) or, for a first trial, a Maildir.

mod maildir;
mod smtp;

use std::time::Duration;

use thiserror::Error;

use crate::config::NextHop;
use crate::smtp::reply::Reply;
use crate::spool::Spool;

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

/// Client details passed on with XFORWARD so the next hop (and SPF) sees
/// the real client, not us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub addr: Option<String>,
    pub name: Option<String>,
    pub helo: Option<String>,
    pub proto: Option<String>,
    pub ident: Option<String>,
    pub source: Option<String>,
    pub port: Option<String>,
}

/// Envelope parameters carried to the next hop on MAIL FROM.
#[derive(Debug, Clone, Default)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
}

/// A message as it leaves: `head` replaces the first `skip` bytes of the
/// spooled content (our tags in, forged tags out); the rest is sent as is.
pub struct Outgoing<'a> {
    pub head: &'a [u8],
    pub skip: u64,
    pub spool: &'a Spool,
}

impl Outgoing<'_> {
    pub fn pass_through(spool: &Spool) -> Outgoing<'_> {
        Outgoing {
            head: &[],
            skip: 0,
            spool,
        }
    }

    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.spool.len().saturating_sub(self.skip)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn reader(&self) -> std::io::Result<OutgoingReader<'_>> {
        Ok(OutgoingReader {
            head: (!self.head.is_empty()).then_some(self.head),
            spool: self.spool.reader().await?,
            to_skip: self.skip,
        })
    }
}

/// Reads an `Outgoing` message chunk by chunk.
pub struct OutgoingReader<'a> {
    head: Option<&'a [u8]>,
    spool: crate::spool::SpoolReader<'a>,
    to_skip: u64,
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
            if self.spool.next_chunk(buf).await? == 0 {
                return Ok(0);
            }
            let cut = self.to_skip.min(buf.len() as u64) as usize;
            self.to_skip -= cut as u64;
            if cut < buf.len() {
                buf.drain(..cut);
                return Ok(buf.len());
            }
        }
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

    pub async fn rcpt(&mut self, to: &str) -> Result<Reply, HopError> {
        match self {
            NextHopConn::Smtp(s) => s.rcpt(to).await,
            NextHopConn::Maildir(m) => Ok(m.rcpt(to)),
        }
    }

    pub async fn data(&mut self, msg: &Outgoing<'_>) -> Result<Reply, HopError> {
        match self {
            NextHopConn::Smtp(s) => s.data(msg).await,
            NextHopConn::Maildir(m) => m.deliver(msg).await,
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
