//! MAIL and RCPT. Both are passed to the next hop as they arrive, so its
//! verdict on each recipient reaches our client (before-queue proxy mode).

use smtp_proto::{
    MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8,
    MailFrom, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
    RcptTo,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::envelope::{DsnRet, RcptParams, smtp_path};
use crate::forward::{HopError, MailParams, NextHopConn};
use crate::smtp::session::{Session, State, Transaction};
use crate::wire::reply::Reply;

/// The SIZE parameter of a MAIL line, read here rather than trusted from
/// the parser: smtp-proto 0.2 wraps a long digit string around to a small
/// number, which would let an oversized declaration through.
fn declared_size(line: &[u8]) -> Result<Option<u128>, ()> {
    let text = String::from_utf8_lossy(line);
    let Some(value) = text.split_ascii_whitespace().skip(2).find_map(|p| {
        p.get(..5)
            .filter(|k| k.eq_ignore_ascii_case("SIZE="))
            .map(|_| &p[5..])
    }) else {
        return Ok(None);
    };
    if value.is_empty() || value.len() > 30 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    value.parse::<u128>().map(Some).map_err(|_| ())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn handle_mail(&mut self, from: MailFrom<String>, line: &[u8]) {
        match self.state {
            State::Connected => {
                return self.reply(Reply::new(503, "5.5.1", "Send EHLO or HELO first"));
            }
            State::Transaction(_) => {
                return self.reply(Reply::new(503, "5.5.1", "Nested MAIL command"));
            }
            State::Ready => {}
        }
        let max = self.shared.config.limits.max_message_size;
        let declared = match declared_size(line) {
            Ok(size) => size,
            Err(()) => return self.reply(Reply::new(501, "5.5.4", "Invalid SIZE parameter")),
        };
        if declared.is_some_and(|size| size > max as u128) {
            return self.reply(Reply::new(
                552,
                "5.3.4",
                format!("Message size exceeds fixed limit of {max} bytes"),
            ));
        }
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return self.reply(Reply::new(555, "5.5.4", "BODY=BINARYMIME not supported"));
        }
        if smtp_path(&from.address).is_err() {
            return self.reply(Reply::new(501, "5.1.7", "Bad sender address syntax"));
        }
        let params = mail_params(&from, declared);
        let reply = match self.hop_mail(&from.address, &params).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "next hop failed at MAIL");
                self.hop = None;
                e.to_reply()
            }
        };
        if reply.is_positive() {
            self.state = State::Transaction(Transaction {
                from: from.address,
                params,
                rcpts: Vec::new(),
            });
        }
        self.reply(reply);
    }

    async fn hop_mail(&mut self, from: &str, params: &MailParams) -> Result<Reply, HopError> {
        let hop = self.connected_hop().await?;
        hop.mail(from, params).await
    }

    /// The next hop connection, opened on first use and given the client's
    /// XFORWARD details when they changed.
    pub(super) async fn connected_hop(&mut self) -> Result<&mut NextHopConn, HopError> {
        self.open_hop().await?;
        let hop = self.hop.as_mut().expect("hop is connected");
        if self.hop_needs_xforward {
            hop.xforward(&self.client).await?;
            self.hop_needs_xforward = false;
        }
        Ok(hop)
    }

    /// The next hop connection, opened if there is none yet.
    pub(super) async fn open_hop(&mut self) -> Result<&mut NextHopConn, HopError> {
        if self.hop.is_none() {
            let config = &self.shared.config;
            let hop = NextHopConn::connect(
                &config.server.next_hop,
                &config.server.hostname,
                config.limits.next_hop_timeout(),
            )
            .await?;
            self.hop_needs_xforward = true;
            return Ok(self.hop.insert(hop));
        }
        Ok(self.hop.as_mut().expect("hop is connected"))
    }

    pub(super) async fn handle_rcpt(&mut self, to: RcptTo<String>) {
        let max = self.shared.config.limits.max_recipients;
        let State::Transaction(txn) = &self.state else {
            return self.reply(Reply::new(503, "5.5.1", "Send MAIL first"));
        };
        if txn.rcpts.len() >= max {
            return self.reply(Reply::new(
                452,
                "4.5.3",
                format!("Too many recipients (limit {max})"),
            ));
        }
        if to.address.is_empty() {
            return self.reply(Reply::new(501, "5.1.3", "Empty recipient address"));
        }
        if smtp_path(&to.address).is_err() {
            return self.reply(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
        }
        let params = rcpt_params(&to);
        let result = match self.hop.as_mut() {
            Some(hop) => hop.rcpt(&to.address, &params).await,
            None => Err(HopError::Closed),
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(session = %self.id, error = %e, "next hop failed at RCPT");
                self.hop = None;
                self.state = State::Ready;
                e.to_reply()
            }
        };
        if reply.is_positive()
            && let State::Transaction(txn) = &mut self.state
        {
            txn.rcpts.push(to.address);
        }
        self.reply(reply);
    }
}

fn mail_params(from: &MailFrom<String>, declared: Option<u128>) -> MailParams {
    let ret = if from.flags & MAIL_RET_FULL != 0 {
        Some(DsnRet::Full)
    } else if from.flags & MAIL_RET_HDRS != 0 {
        Some(DsnRet::Hdrs)
    } else {
        None
    };
    MailParams {
        size: declared.map(|s| s as u64),
        eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
        smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
        ret,
        envid: from.env_id.clone(),
    }
}

fn rcpt_params(to: &RcptTo<String>) -> RcptParams {
    let notify = if to.flags & RCPT_NOTIFY_NEVER != 0 {
        vec!["NEVER"]
    } else {
        [
            (RCPT_NOTIFY_SUCCESS, "SUCCESS"),
            (RCPT_NOTIFY_FAILURE, "FAILURE"),
            (RCPT_NOTIFY_DELAY, "DELAY"),
        ]
        .into_iter()
        .filter(|(bit, _)| to.flags & bit != 0)
        .map(|(_, word)| word)
        .collect()
    };
    RcptParams {
        notify,
        orcpt: to.orcpt.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::declared_size;

    #[test]
    fn size_parameter_is_read_without_wrapping() {
        assert_eq!(declared_size(b"MAIL FROM:<a@b> SIZE=1000"), Ok(Some(1000)));
        assert_eq!(
            declared_size(b"MAIL FROM:<a@b> BODY=8BITMIME size=7"),
            Ok(Some(7))
        );
        assert_eq!(declared_size(b"MAIL FROM:<a@b>"), Ok(None));
        assert_eq!(
            declared_size(b"MAIL FROM:<a@b> SIZE=99999999999999999999999999"),
            Ok(Some(99999999999999999999999999))
        );
        assert_eq!(declared_size(b"MAIL FROM:<a@b> SIZE=-1"), Err(()));
        assert_eq!(declared_size(b"MAIL FROM:<a@b> SIZE="), Err(()));
    }
}
