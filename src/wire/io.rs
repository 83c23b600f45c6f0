//! Buffered reading of SMTP command lines with a length limit and a
//! deadline. A deadline, not a timeout per read: a client that sends one
//! byte just before each timeout would otherwise hold a line open for ever.

use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with CRLF.
pub const MAX_COMMAND_LINE: usize = 512;

#[derive(Debug)]
pub enum ReadError {
    Timeout,
    Closed,
    Io(std::io::Error),
}

pub enum Line {
    /// The line without its line ending.
    Complete(Vec<u8>),
    /// Longer than the limit; the rest up to the next LF was discarded.
    TooLong,
}

pub struct SmtpIo<S> {
    stream: S,
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
    /// Each write must complete within this: a client that stops reading
    /// must not hold its session (and slot) for ever.
    write_timeout: Duration,
}

const READ_CHUNK: usize = 16 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpIo<S> {
    pub fn new(stream: S) -> Self {
        SmtpIo {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            out: Vec::with_capacity(512),
            write_timeout: Duration::from_secs(300),
        }
    }

    pub fn set_write_timeout(&mut self, timeout: Duration) {
        self.write_timeout = timeout;
    }

    /// Bytes received and not yet consumed: the client pipelined them.
    pub fn has_buffered_input(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Queues a reply; it is sent by `flush`, so pipelined replies go out
    /// in one write (RFC 2920).
    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        let write = async {
            if !self.out.is_empty() {
                self.stream.write_all(&self.out).await?;
                self.out.clear();
            }
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client does not read our replies",
            )),
        }
    }

    /// Flushes unless more pipelined commands are already waiting.
    pub async fn flush_if_idle(&mut self) -> std::io::Result<()> {
        if self.has_buffered_input() {
            Ok(())
        } else {
            self.flush().await
        }
    }

    /// Reads more bytes. Cancel-safe: `read_buf` appends only what arrived,
    /// so a shutdown racing this read loses nothing.
    async fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ_CHUNK);
        match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Reads one line of at most `limit` octets including CRLF; the whole
    /// line must have arrived by `deadline`.
    pub async fn read_line(&mut self, limit: usize, deadline: Instant) -> Result<Line, ReadError> {
        let mut too_long = false;
        loop {
            let pending = &self.buf[self.start..];
            if let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let line_len = pos + 1;
                let result = if too_long || line_len > limit {
                    Line::TooLong
                } else {
                    let mut line = pending[..pos].to_vec();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    Line::Complete(line)
                };
                self.start += line_len;
                return Ok(result);
            }
            if pending.len() > limit {
                // Drop what we have, remember the line is too long, keep
                // reading to the LF so memory stays bounded.
                too_long = true;
                self.start = self.buf.len();
            }
            self.fill(deadline).await?;
        }
    }

    /// Hands buffered bytes (at least one read's worth) to `consume`, which
    /// returns how many it used; used by DATA, which has its own framing.
    pub async fn read_chunk<F>(
        &mut self,
        deadline: Instant,
        mut consume: F,
    ) -> Result<(), ReadError>
    where
        F: FnMut(&[u8]) -> usize,
    {
        if !self.has_buffered_input() {
            self.fill(deadline).await?;
        }
        let used = consume(&self.buf[self.start..]);
        self.start += used;
        Ok(())
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }
}
