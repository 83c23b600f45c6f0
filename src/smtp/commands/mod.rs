//! One file per verb (or family of verbs). `dispatch` parses a command line
//! with smtp-proto and hands it to its handler.

mod data;
mod ehlo;
mod envelope;
mod xforward;

use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncRead, AsyncWrite};

use super::session::{Flow, Session, State};
use crate::wire::reply::Reply;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn dispatch(&mut self, line: &[u8]) -> Flow {
        let verb = first_word(line);
        if verb.eq_ignore_ascii_case(b"XFORWARD") {
            let reply = self.handle_xforward(&line[verb.len()..]);
            self.reply(reply);
            return Flow::Continue;
        }
        if verb.eq_ignore_ascii_case(b"XCLIENT") {
            let reply = self.handle_xclient(&line[verb.len()..]).await;
            self.reply(reply);
            return Flow::Continue;
        }
        let mut framed = Vec::with_capacity(line.len() + 2);
        framed.extend_from_slice(line);
        framed.extend_from_slice(b"\r\n");
        let request = match Request::parse(&mut framed.iter()) {
            Ok(request) => request.into_owned(),
            Err(e) => {
                self.reply(protocol_error_reply(&e));
                return Flow::Continue;
            }
        };
        match request {
            Request::Ehlo { host } => self.handle_ehlo(host, true).await,
            Request::Helo { host } => self.handle_ehlo(host, false).await,
            Request::Mail { from } => self.handle_mail(from, line).await,
            Request::Rcpt { to } => self.handle_rcpt(to).await,
            Request::Data => return self.handle_data().await,
            Request::Rset => self.handle_rset().await,
            Request::Noop { .. } => self.reply(Reply::new(250, "2.0.0", "Ok")),
            Request::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                return Flow::Quit;
            }
            Request::Vrfy { .. } | Request::Expn { .. } => {
                self.reply(Reply::new(502, "5.5.1", "Command not implemented"))
            }
            Request::StartTls => self.reply(Reply::new(502, "5.5.1", "STARTTLS not offered")),
            Request::Bdat { .. } => self.reply(Reply::new(502, "5.5.1", "CHUNKING not offered")),
            Request::Auth { .. } => self.reply(Reply::new(502, "5.5.1", "AUTH not offered")),
            other => self.reply(Reply::new(
                502,
                "5.5.1",
                format!("{} not implemented", other.name()),
            )),
        }
        Flow::Continue
    }

    async fn handle_rset(&mut self) {
        self.abort_transaction().await;
        self.reply(Reply::new(250, "2.0.0", "Ok"));
    }

    /// Ends the current transaction here and at the next hop.
    pub(super) async fn abort_transaction(&mut self) {
        if let State::Transaction(_) = self.state {
            self.state = State::Ready;
            if let Some(hop) = self.hop.as_mut()
                && hop.rset().await.is_err()
            {
                self.hop = None;
            }
        }
    }
}

fn first_word(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(line.len());
    &line[..end]
}

fn protocol_error_reply(e: &ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand => Reply::new(500, "5.5.1", "Unknown command"),
        ProtoError::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "Bad recipient address syntax")
        }
        ProtoError::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
        ProtoError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
        }
        ProtoError::UnsupportedParameter { param } => {
            Reply::new(555, "5.5.4", format!("Unsupported parameter {param}"))
        }
        ProtoError::NeedsMoreData { .. }
        | ProtoError::ResponseTooLong
        | ProtoError::InvalidResponse { .. } => Reply::new(500, "5.5.2", "Syntax error"),
    }
}
