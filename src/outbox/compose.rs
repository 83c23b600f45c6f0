//! Builds the raw RFC 5322 message of an automatic reply.

use crate::config::HelpdeskConfig;

pub struct Draft<'a> {
    pub desk: &'a HelpdeskConfig,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub message_id: &'a str,
    pub ticket_id: &'a str,
    /// The operator's message this answers.
    pub in_reply_to: Option<&'a str>,
}

pub fn compose(d: &Draft<'_>) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let mut m = String::with_capacity(d.body.len() + 1024);
    push(
        &mut m,
        "From",
        &format!("{} <{}>", encode_word(&d.desk.name), d.desk.reply_from),
    );
    push(&mut m, "To", &format!("<{}>", d.to));
    push(&mut m, "Subject", &encode_word(d.subject));
    push(&mut m, "Date", &date);
    push(&mut m, "Message-ID", &format!("<{}>", d.message_id));
    if let Some(parent) = d.in_reply_to {
        push(&mut m, "In-Reply-To", &format!("<{parent}>"));
        push(&mut m, "References", &format!("<{parent}>"));
    }
    push(&mut m, "Auto-Submitted", "auto-replied");
    // Asks Exchange and Outlook not to answer us with their own auto-replies.
    push(&mut m, "X-Auto-Response-Suppress", "All");
    push(&mut m, "X-Ticketgate-Ticket", d.ticket_id);
    push(&mut m, "MIME-Version", "1.0");
    push(&mut m, "Content-Type", "text/plain; charset=utf-8");
    push(&mut m, "Content-Transfer-Encoding", "quoted-printable");
    m.push_str("\r\n");
    m.push_str(&quoted_printable(d.body));
    m
}

fn push(m: &mut String, name: &str, value: &str) {
    let clean: String = value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    m.push_str(name);
    m.push_str(": ");
    m.push_str(&clean);
    m.push_str("\r\n");
}

/// RFC 2047 B-encoding when the text is not plain ASCII.
pub fn encode_word(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    use std::fmt::Write;
    // Split on character boundaries so no encoded word exceeds 75 octets.
    let mut out = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            out.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    out.push(chunk);
    let mut s = String::new();
    for (i, part) in out.iter().enumerate() {
        if i > 0 {
            s.push_str("\r\n ");
        }
        let _ = write!(s, "=?UTF-8?B?{}?=", base64_encode(part.as_bytes()));
    }
    s
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 2045 quoted-printable with CRLF line ends and soft breaks at 76.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.replace("\r\n", "\n").split('\n') {
        let mut width = 0;
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let plain = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece = if plain {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qp_encodes_accents_and_keeps_lines_short() {
        let qp = quoted_printable(&format!("città è {}", "x".repeat(100)));
        assert!(qp.starts_with("citt=C3=A0 =C3=A8 "));
        assert!(qp.lines().all(|l| l.len() <= 76));
    }

    #[test]
    fn encoded_word_round_trips_through_mail_parser() {
        let subject = encode_word("[PP-2026-000001] Apertura ticket: perché non va è così");
        let raw = format!("Subject: {subject}\r\n\r\nx\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some("[PP-2026-000001] Apertura ticket: perché non va è così")
        );
    }
}
