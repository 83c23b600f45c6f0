//! EHLO / HELO.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::smtp::reply::Reply;
use crate::smtp::session::{Session, State};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn handle_ehlo(&mut self, host: String, extended: bool) {
        if host.is_empty() {
            self.reply(Reply::new(501, "5.5.4", "Syntax: EHLO hostname"));
            return;
        }
        // RFC 5321 §4.1.4: EHLO in a transaction resets it.
        self.abort_transaction().await;
        self.state = State::Ready;
        self.esmtp = extended;
        if self.client.helo.is_none() || !self.is_trusted_upstream() {
            self.client.helo = Some(host.clone());
        }
        self.helo = Some(host);
        let hostname = self.shared.config.server.hostname.clone();
        if !extended {
            self.reply(Reply::new(250, "", hostname));
            return;
        }
        let mut lines = vec![
            hostname,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.shared.config.limits.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.is_trusted_upstream() {
            lines.push("XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT".to_string());
            lines.push("XCLIENT NAME ADDR PROTO HELO PORT LOGIN".to_string());
        }
        self.reply(Reply::multiline(250, "", lines));
    }
}
