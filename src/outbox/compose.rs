//! Builds the raw RFC 5322 message of an automatic reply.
//!
//! mail-builder does the encoding: RFC 2047 encoded words for non-ASCII
//! header text and display names, header folding, and the body's transfer
//! encoding (7bit when it can, else quoted-printable or base64, whichever
//! is shorter).

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;

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
    let name = one_line(&d.desk.name);
    let from = Address::new_address(
        (!name.trim().is_empty()).then_some(name),
        one_line(&d.desk.reply_from),
    );
    let mut m = MessageBuilder::new()
        .from(from)
        .to(Address::new_address(None::<String>, one_line(d.to)))
        .subject(Text::new(one_line(d.subject)))
        .date(Date::now())
        .message_id(one_line(d.message_id));
    if let Some(parent) = d.in_reply_to {
        m = m.in_reply_to(one_line(parent)).references(one_line(parent));
    }
    m.header("Auto-Submitted", Raw::new("auto-replied"))
        // Asks Exchange and Outlook not to answer us with their own auto-replies.
        .header("X-Auto-Response-Suppress", Raw::new("All"))
        .header("X-Ticketgate-Ticket", Text::new(one_line(d.ticket_id)))
        .header("MIME-Version", Raw::new("1.0"))
        // text/plain; charset="utf-8", and a Content-Transfer-Encoding.
        .text_body(body_lines(d.body))
        .write_to_string()
        .expect("a message built in memory from UTF-8 text is UTF-8")
}

/// A header value on one line: mail-builder folds and encodes it, but a
/// CR or LF inside would end the header (and start another).
fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// The body with LF line ends (mail-builder writes CRLF for each) and a
/// final line end, so the message ends in CRLF.
fn body_lines(body: &str) -> String {
    let mut text = body.replace("\r\n", "\n").replace('\r', "\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{HeaderValue, MessageParser, MimeHeaders};

    fn desk() -> HelpdeskConfig {
        toml::from_str(
            "name = \"Città Servizi\"\nticket_prefix = \"PP\"\nreply_from = \"help@projectpp.it\"\n",
        )
        .unwrap()
    }

    fn draft<'a>(desk: &'a HelpdeskConfig, subject: &'a str, body: &'a str) -> Draft<'a> {
        Draft {
            desk,
            to: "mario@cliente.example",
            subject,
            body,
            message_id: "r1.PP-2026-000001@projectpp.it",
            ticket_id: "PP-2026-000001",
            in_reply_to: Some("m1@cliente.example"),
        }
    }

    fn head(raw: &str) -> &str {
        raw.split("\r\n\r\n").next().unwrap()
    }

    #[test]
    fn every_header_of_a_reply_is_there() {
        let desk = desk();
        let raw = compose(&draft(&desk, "[PP-2026-000001] Apertura", "Ciao"));
        let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
        let from = parsed.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Città Servizi"));
        assert_eq!(from.address(), Some("help@projectpp.it"));
        assert_eq!(
            parsed.to().unwrap().first().unwrap().address(),
            Some("mario@cliente.example")
        );
        assert_eq!(parsed.subject(), Some("[PP-2026-000001] Apertura"));
        assert!(parsed.date().is_some());
        assert_eq!(parsed.message_id(), Some("r1.PP-2026-000001@projectpp.it"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("m1@cliente.example"));
        assert_eq!(parsed.references().as_text(), Some("m1@cliente.example"));
        let text = |name: &str| match parsed.header(name) {
            Some(HeaderValue::Text(t)) => Some(t.to_string()),
            _ => None,
        };
        assert_eq!(text("Auto-Submitted").as_deref(), Some("auto-replied"));
        assert_eq!(text("X-Auto-Response-Suppress").as_deref(), Some("All"));
        assert_eq!(
            text("X-Ticketgate-Ticket").as_deref(),
            Some("PP-2026-000001")
        );
        assert_eq!(parsed.mime_version().as_text(), Some("1.0"));
        let ct = parsed.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("plain")));
        assert_eq!(ct.attribute("charset"), Some("utf-8"));
        // Headers the tests and the Postfix chain read line by line.
        let lines: Vec<&str> = head(&raw).split("\r\n").collect();
        assert!(lines.contains(&"In-Reply-To: <m1@cliente.example>"));
        assert!(lines.contains(&"Auto-Submitted: auto-replied"));
        assert!(lines.contains(&"Subject: [PP-2026-000001] Apertura"));
        assert!(raw.ends_with("\r\n"));
    }

    #[test]
    fn no_in_reply_to_when_answering_nothing() {
        let desk = desk();
        let mut d = draft(&desk, "x", "y");
        d.in_reply_to = None;
        let raw = compose(&d);
        assert!(!head(&raw).contains("In-Reply-To"));
        assert!(!head(&raw).contains("References"));
    }

    #[test]
    fn non_ascii_subject_round_trips_through_mail_parser() {
        let desk = desk();
        let subject = "[PP-2026-000001] Apertura ticket: perché non va è così, \
                       e la pratica è ferma da settimane: così non si può";
        let raw = compose(&draft(&desk, subject, "x"));
        assert!(head(&raw).is_ascii(), "encoded words, not raw UTF-8");
        assert!(head(&raw).split("\r\n").all(|l| l.len() <= 78), "{raw}");
        let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some(subject));
    }

    #[test]
    fn long_ascii_subject_is_folded() {
        let desk = desk();
        let subject = format!("[PP-2026-000001] {}", "parola ".repeat(30).trim_end());
        let raw = compose(&draft(&desk, &subject, "x"));
        assert!(head(&raw).split("\r\n").all(|l| l.len() <= 78), "{raw}");
        let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some(subject.as_str()));
    }

    #[test]
    fn line_breaks_in_header_values_start_no_header() {
        let desk = desk();
        let raw = compose(&draft(&desk, "a\r\nBcc: x@evil.example\nb", "x"));
        assert!(!head(&raw).split("\r\n").any(|l| l.starts_with("Bcc:")));
        let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("a  Bcc: x@evil.example b"));
    }

    #[test]
    fn body_is_encoded_short_and_decodes_back_exactly() {
        let desk = desk();
        let body = format!(
            "Gentile utente,\n\ncittà è {}\n=fine= \nultima riga",
            "x".repeat(100)
        );
        let raw = compose(&draft(&desk, "x", &body));
        assert!(raw.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
        assert!(raw.contains("citt=C3=A0 =C3=A8 "));
        assert!(raw.split("\r\n").all(|l| l.len() <= 78), "{raw}");
        assert!(!raw.replace("\r\n", "").contains('\n'), "CRLF only");
        let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
        let decoded = parsed.body_text(0).unwrap().replace("\r\n", "\n");
        assert_eq!(decoded, format!("{body}\n"));
    }

    #[test]
    fn crlf_body_has_no_bare_line_feeds() {
        let desk = desk();
        let raw = compose(&draft(&desk, "x", "uno\r\n\r\ndue è\r\n"));
        assert!(!raw.replace("\r\n", "").contains(['\r', '\n']), "{raw:?}");
        let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
        assert_eq!(
            parsed.body_text(0).unwrap().replace("\r\n", "\n"),
            "uno\n\ndue è\n"
        );
    }
}
