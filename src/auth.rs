//! Authentication of the sender. With `[auth] dns = "off"` (the default,
//! and what tests use) nothing can be verified, so nothing authenticates:
//! replies go to the envelope sender and mail commands (close, reopen)
//! are accepted only in replies to our own signed Message-IDs.

use crate::config::{Config, DnsMode};
use crate::pipeline::Envelope;
use crate::reason::ReasonCode;

#[derive(Debug, Clone, Default)]
pub struct AuthVerdict {
    /// DMARC passed for the From domain.
    pub dmarc_pass: bool,
    pub reasons: Vec<ReasonCode>,
    /// The method results of RFC 8601, e.g. `none` or `dmarc=pass ...`.
    pub results: String,
}

impl AuthVerdict {
    pub fn header_line(&self, authserv_id: &str) -> String {
        format!("Authentication-Results: {authserv_id}; {}", self.results)
    }
}

pub async fn verify(config: &Config, _envelope: &Envelope<'_>, _message: &[u8]) -> AuthVerdict {
    match config.auth.dns {
        DnsMode::Off => AuthVerdict {
            dmarc_pass: false,
            reasons: vec![ReasonCode::AuthNone],
            results: "none (dns lookups disabled)".into(),
        },
        // Rejected by config validation until DNS verification lands.
        DnsMode::System => AuthVerdict {
            dmarc_pass: false,
            reasons: vec![ReasonCode::AuthNone],
            results: "none".into(),
        },
    }
}
