//! EHLO / HELO.

use tokio::io::{AsyncRead, AsyncWrite};

use std::time::Duration;

use crate::smtp::session::{Session, State};
use crate::wire::reply::Reply;

const EHLO_PROBE: Duration = Duration::from_secs(5);

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
        if self.hop_offers_dsn().await {
            lines.push("DSN".to_string());
        }
        if self.is_trusted_upstream() {
            lines.push("XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT".to_string());
            lines.push("XCLIENT NAME ADDR PROTO HELO PORT LOGIN".to_string());
        }
        self.reply(Reply::multiline(250, "", lines));
    }

    /// DSN is offered only when the next hop takes it, or we would have to
    /// drop the parameters our client relies on. The hop is connected here
    /// to learn that; a hop that cannot be reached now is asked again at
    /// MAIL, and DSN is not offered.
    async fn hop_offers_dsn(&mut self) -> bool {
        // A next hop that does not answer costs EHLO a few seconds at
        // most; MAIL waits the full next-hop timeout.
        let probe = tokio::time::timeout(EHLO_PROBE, self.open_hop()).await;
        match probe {
            Ok(Ok(hop)) => hop.offers_dsn(),
            Ok(Err(e)) => {
                tracing::debug!(session = %self.id, error = %e, "next hop not reachable at EHLO");
                false
            }
            Err(_) => false,
        }
    }
}
