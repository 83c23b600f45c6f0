//! RFC 3834 §2: when not to answer automatically.

use crate::parse::ParsedMail;
use crate::reason::ReasonCode;

/// Why no automatic reply may go to this message's sender, if so.
/// `is_own` tells our own addresses (a reply to ourselves would loop).
pub fn suppression(
    mail: &ParsedMail,
    envelope_from: &str,
    is_own: impl Fn(&str) -> bool,
) -> Option<ReasonCode> {
    if let Some(v) = &mail.auto_submitted
        && !v.trim().eq_ignore_ascii_case("no")
    {
        return Some(ReasonCode::ReplySuppressedAutoSubmitted);
    }
    if let Some(p) = &mail.precedence
        && matches!(p.trim(), "bulk" | "junk" | "list")
    {
        return Some(ReasonCode::ReplySuppressedPrecedence);
    }
    if mail.has_list_headers {
        return Some(ReasonCode::ReplySuppressedList);
    }
    let local = envelope_from
        .split('@')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if envelope_from.is_empty() || matches!(local.as_str(), "mailer-daemon" | "postmaster") {
        return Some(ReasonCode::ReplySuppressedNullSender);
    }
    let from_is_own = mail.from.as_deref().is_some_and(&is_own);
    if is_own(envelope_from) || from_is_own {
        return Some(ReasonCode::ReplySuppressedOwnAddress);
    }
    None
}
