//! SMTP replies, always with an enhanced status code (RFC 2034/3463).

use std::fmt::Write as _;

use crate::reason::ReasonCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as `2.1.0`.
    pub enhanced: String,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: enhanced.to_string(),
            lines: vec![text.into()],
        }
    }

    pub fn multiline(code: u16, enhanced: &str, lines: Vec<String>) -> Reply {
        Reply {
            code,
            enhanced: enhanced.to_string(),
            lines,
        }
    }

    /// What a refusal was, by its enhanced status code; `None` for a
    /// positive reply.
    pub fn refusal_reason(&self) -> Option<ReasonCode> {
        if self.code < 400 {
            return None;
        }
        let mut parts = self.enhanced.split('.').skip(1);
        let (subject, detail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        Some(match (subject, detail) {
            ("1", _) => ReasonCode::RefusedAddress,
            ("2", "2") | ("3", "4") => ReasonCode::RefusedSize,
            ("2", _) => ReasonCode::RefusedMailbox,
            ("5", "3") | ("4", "5") => ReasonCode::RefusedRecipients,
            ("5", _) => ReasonCode::RefusedProtocol,
            ("6", _) => ReasonCode::RefusedContent,
            ("7", _) if self.code == 421 => ReasonCode::RefusedBusy,
            ("7", _) => ReasonCode::RefusedPolicy,
            ("4", "2") | ("4", "7") => ReasonCode::RefusedTimeout,
            ("4", _) => ReasonCode::RefusedNetwork,
            ("3", "2") => ReasonCode::RefusedBusy,
            ("3", _) => ReasonCode::RefusedLocal,
            _ => ReasonCode::RefusedOther,
        })
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The reply as sent on the wire, CRLF terminated.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            // A code of 354 or a greeting carries no enhanced code by RFC 2034.
            if self.enhanced.is_empty() {
                let _ = write!(out, "{}{}{}\r\n", self.code, sep, line);
            } else {
                let _ = write!(out, "{}{}{} {}\r\n", self.code, sep, self.enhanced, line);
            }
        }
        if self.lines.is_empty() {
            let _ = write!(out, "{} {}\r\n", self.code, self.enhanced);
        }
        out
    }

    /// One line for logs: `250 2.0.0 Ok: queued as ABC`.
    pub fn summary(&self) -> String {
        let text = self.lines.join(" / ");
        if self.enhanced.is_empty() {
            format!("{} {}", self.code, text)
        } else {
            format!("{} {} {}", self.code, self.enhanced, text)
        }
    }

    /// Builds a reply from a next hop's lines, keeping its enhanced code if it
    /// gave one, adding a generic one otherwise.
    pub fn from_next_hop(code: u16, lines: &[String]) -> Reply {
        let mut enhanced = None;
        let mut texts = Vec::with_capacity(lines.len());
        for line in lines {
            let (maybe_code, rest) = split_enhanced(line);
            if let Some(c) = maybe_code {
                enhanced.get_or_insert(c);
                texts.push(rest.to_string());
            } else {
                texts.push(line.clone());
            }
        }
        let enhanced = enhanced.unwrap_or_else(|| default_enhanced(code).to_string());
        Reply::multiline(code, &enhanced, texts)
    }
}

/// Splits `2.1.5 Ok` into (`2.1.5`, `Ok`) when the line starts with one.
fn split_enhanced(line: &str) -> (Option<String>, &str) {
    let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
    let parts: Vec<&str> = first.split('.').collect();
    let valid = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        (Some(first.to_string()), rest)
    } else {
        (None, line)
    }
}

fn default_enhanced(code: u16) -> &'static str {
    match code / 100 {
        2 => "2.0.0",
        3 => "",
        4 => "4.0.0",
        _ => "5.0.0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_named_by_its_enhanced_code() {
        let table = [
            (250, "2.0.0", None),
            (501, "5.1.3", Some(ReasonCode::RefusedAddress)),
            (550, "5.1.1", Some(ReasonCode::RefusedAddress)),
            (552, "5.3.4", Some(ReasonCode::RefusedSize)),
            (452, "4.5.3", Some(ReasonCode::RefusedRecipients)),
            (500, "5.5.1", Some(ReasonCode::RefusedProtocol)),
            (554, "5.6.0", Some(ReasonCode::RefusedContent)),
            (550, "5.7.0", Some(ReasonCode::RefusedPolicy)),
            (421, "4.7.0", Some(ReasonCode::RefusedBusy)),
            (421, "4.4.2", Some(ReasonCode::RefusedTimeout)),
            (451, "4.4.1", Some(ReasonCode::RefusedNetwork)),
            (451, "4.3.2", Some(ReasonCode::RefusedBusy)),
            (451, "4.3.0", Some(ReasonCode::RefusedLocal)),
            (550, "5.2.1", Some(ReasonCode::RefusedMailbox)),
            (554, "", Some(ReasonCode::RefusedOther)),
        ];
        for (code, enhanced, want) in table {
            let reply = Reply::new(code, enhanced, "x");
            assert_eq!(reply.refusal_reason(), want, "{code} {enhanced}");
        }
    }

    #[test]
    fn multiline_reply_uses_dash_then_space() {
        let r = Reply::multiline(250, "2.0.0", vec!["a".into(), "b".into()]);
        assert_eq!(r.to_wire(), "250-2.0.0 a\r\n250 2.0.0 b\r\n");
    }

    #[test]
    fn next_hop_enhanced_code_is_kept_and_missing_one_added() {
        let r = Reply::from_next_hop(550, &["5.1.1 <x@y>: User unknown".into()]);
        assert_eq!(r.to_wire(), "550 5.1.1 <x@y>: User unknown\r\n");
        let r = Reply::from_next_hop(452, &["Too many".into()]);
        assert_eq!(r.to_wire(), "452 4.0.0 Too many\r\n");
    }
}
