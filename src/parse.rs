//! Parse: a thin wrapper around mail-parser 0.11 that gives the pipeline the
//! few things it needs from a message, decoded (encoded words, quoted-printable,
//! base64, any charset mail-parser knows), plus the "new text" of a reply with
//! quoted earlier messages and the signature removed.
//!
//! `parse` never panics and always returns something: a message mail-parser
//! cannot read still yields what a raw header scan finds, with
//! [`ReasonCode::ParseFailed`].

use std::borrow::Cow;
use std::collections::HashSet;

use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use crate::config::LimitsConfig;
use crate::reason::ReasonCode;

/// What one message can make the parser do. Every cap cuts with a reason
/// code; the message itself is forwarded intact whatever was cut here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    pub mime_parts: usize,
    pub attachments: usize,
    pub header_fields: usize,
    pub reference_ids: usize,
    /// Decoded body text kept (and so classified), in bytes.
    pub text_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits::from(&LimitsConfig::default())
    }
}

impl From<&LimitsConfig> for ParseLimits {
    fn from(l: &LimitsConfig) -> Self {
        ParseLimits {
            mime_parts: l.max_mime_parts,
            attachments: l.max_attachments_per_message,
            header_fields: l.max_header_fields,
            reference_ids: l.max_reference_ids,
            text_bytes: l.max_classify_bytes,
        }
    }
}

/// An attachment as the ticket records it; its content went to the
/// callback of [`parse_with`] and is not held here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAttachment {
    pub name: Option<String>,
    /// `type/subtype`, lowercased; `application/octet-stream` when absent.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the decoded content, as the callback returned it.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedMail {
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// Ids without angle brackets.
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Header From address, as written, trimmed.
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    /// Decoded subject, "" when there is none.
    pub subject: String,
    /// Decoded text body; HTML-only mail converted to text.
    pub body: String,
    /// Body without quoted earlier messages and without the signature.
    pub new_text: String,
    pub attachments: Vec<ParsedAttachment>,
    /// Lowercased `Auto-Submitted` value.
    pub auto_submitted: Option<String>,
    /// Lowercased `Precedence` value.
    pub precedence: Option<String>,
    /// `List-Id` or `List-Unsubscribe` present.
    pub has_list_headers: bool,
    /// Looks like a vacation / out-of-office answer (Italian or English).
    pub out_of_office: bool,
    pub reasons: Vec<ReasonCode>,
    /// The message's form beyond its text (see [`MailShape`]).
    pub shape: MailShape,
}

/// What the reply and authentication rules need to know about a message's
/// form: kept apart from the text fields, and still here after the
/// pipeline has moved the attachment bytes to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailShape {
    /// Content type of the whole message, lowercased (`multipart/report`);
    /// empty when absent or unreadable.
    pub content_type: String,
    /// How many From fields the header has.
    pub from_fields: usize,
    /// How many addresses those From fields hold together.
    pub from_addresses: usize,
    /// Each attachment's content type (lowercased) and file name.
    pub attachments: Vec<(String, Option<String>)>,
}

/// Subject beginnings of out-of-office answers, lowercase.
const OOF_SUBJECT_PREFIXES: &[&str] = &[
    "risposta automatica",
    "fuori sede",
    "fuori ufficio",
    "assente dall'ufficio",
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autoresponse",
    "abwesenheitsnotiz",
];

/// Parses a raw message with the default limits; attachment contents are
/// hashed, not kept. Never panics, whatever the bytes.
pub fn parse(raw: &[u8]) -> ParsedMail {
    let mut hash_only = |bytes: &[u8]| Ok::<_, std::convert::Infallible>(sha256_hex(bytes));
    match parse_with(raw, &ParseLimits::default(), &mut hash_only) {
        Ok(mail) => mail,
        Err(never) => match never {},
    }
}

/// Parses a raw message within `limits`. Each attachment kept is handed
/// to `keep` while the parsed message still borrows it, so it is stored
/// without a copy; `keep` returns its SHA-256 hex. An error of `keep`
/// ends the parse.
pub fn parse_with<E>(
    raw: &[u8],
    limits: &ParseLimits,
    keep: &mut dyn FnMut(&[u8]) -> Result<String, E>,
) -> Result<ParsedMail, E> {
    let (window, cut) = parse_window(raw, limits);
    // mail-parser promises not to panic; the guard makes a bug there cost a
    // reason code instead of a session.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        MessageParser::default()
            .parse(window)
            .map(|msg| from_message(&msg, limits, &mut *keep))
    }));
    let mut mail = match parsed {
        Ok(Some(mail)) => mail?,
        Ok(None) | Err(_) => fallback(window, limits),
    };
    mail.reasons.extend(cut);
    Ok(mail)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The part of `raw` the parser gets. mail-parser holds a structure for
/// every part and header field it finds, so a message made of 100,000 tiny
/// parts or fields would cost far more memory than its size: it is cut
/// before the first field or part over the cap. One linear scan; parts are
/// counted by the lines that can open one (a boundary, a Content-Type).
fn parse_window<'a>(raw: &'a [u8], limits: &ParseLimits) -> (&'a [u8], Option<ReasonCode>) {
    let mut fields = 0usize;
    let mut in_header = true;
    let mut boundaries = 0usize;
    let mut content_types = 0usize;
    let mut at = 0usize;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let start = at;
        at += line.len();
        if in_header {
            if line == b"\r\n" || line == b"\n" {
                in_header = false;
            } else if !matches!(line.first(), Some(b' ' | b'\t')) {
                fields += 1;
                if fields > limits.header_fields {
                    return (&raw[..start], Some(ReasonCode::CapHeaderFields));
                }
            }
        }
        if line.starts_with(b"--") {
            boundaries += 1;
        } else if line.len() >= 13 && line[..13].eq_ignore_ascii_case(b"content-type:") {
            content_types += 1;
        }
        if boundaries > limits.mime_parts || content_types > limits.mime_parts {
            return (&raw[..start], Some(ReasonCode::CapMimeParts));
        }
    }
    (raw, None)
}

fn from_message<E>(
    msg: &Message<'_>,
    limits: &ParseLimits,
    keep: &mut dyn FnMut(&[u8]) -> Result<String, E>,
) -> Result<ParsedMail, E> {
    let mut mail = ParsedMail {
        message_id: msg.message_id().and_then(clean_id),
        subject: msg.subject().map(clean_subject).unwrap_or_default(),
        ..ParsedMail::default()
    };
    let (in_reply_to, cut_irt) = ids(msg.in_reply_to(), limits.reference_ids);
    let (references, cut_refs) = ids(msg.references(), limits.reference_ids);
    mail.in_reply_to = in_reply_to;
    mail.references = references;
    if cut_irt || cut_refs {
        mail.reasons.push(ReasonCode::CapReferenceIds);
    }
    read_addresses(msg, &mut mail);
    read_bodies(msg, limits, &mut mail);
    read_attachments(msg, limits, keep, &mut mail)?;
    read_robot_headers(msg, &mut mail);
    mail.shape = shape_of(msg, &mail.attachments);
    if mail.message_id.is_none() {
        mail.reasons.push(ReasonCode::ParseNoMessageId);
    }
    Ok(mail)
}

fn read_addresses(msg: &Message<'_>, mail: &mut ParsedMail) {
    if let Some(addr) = msg.from().and_then(|a| a.first()) {
        mail.from = addr.address().and_then(short_text);
        mail.from_name = addr.name().and_then(short_text);
    }
    mail.reply_to = msg
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(short_text);
}

/// The text bodies, at most `limits.text_bytes` of them in all: the
/// classifier reads a window, not a 30 MB text. mail-parser lists the HTML
/// part among the text bodies when a message has no plain alternative.
fn read_bodies(msg: &Message<'_>, limits: &ParseLimits, mail: &mut ParsedMail) {
    let mut texts: Vec<String> = Vec::new();
    let mut news: Vec<String> = Vec::new();
    let mut saw_plain = false;
    let mut saw_html = false;
    let mut left = limits.text_bytes;
    let mut cut = false;
    for part in msg.text_bodies().take(limits.mime_parts) {
        let text = match &part.body {
            PartType::Text(t) => {
                saw_plain = true;
                // Leading blank lines say nothing; the window starts after.
                let (window, short) = prefix(t.trim_start(), left);
                cut |= short;
                news.push(strip_quoted(window));
                window.to_string()
            }
            PartType::Html(h) => {
                saw_html = true;
                // Markup is several times the text it carries.
                let (window, short) = prefix(h, left.saturating_mul(4));
                let (text, short_text) = prefix_owned(html_to_text(window), left);
                cut |= short || short_text;
                news.push(strip_quoted(&html_to_text(&remove_blockquotes(window))));
                text
            }
            _ => continue,
        };
        left = left.saturating_sub(text.len());
        texts.push(text);
    }
    mail.body = texts.join("\n");
    mail.new_text = news
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if saw_html && !saw_plain {
        mail.reasons.push(ReasonCode::ParseHtmlOnly);
    }
    if cut {
        mail.reasons.push(ReasonCode::CapClassifyText);
    }
}

/// At most `max` bytes of `s`, cut on a char boundary; and whether it cut.
fn prefix(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

fn prefix_owned(mut s: String, max: usize) -> (String, bool) {
    let (kept, cut) = prefix(&s, max);
    let len = kept.len();
    s.truncate(len);
    (s, cut)
}

fn read_attachments<E>(
    msg: &Message<'_>,
    limits: &ParseLimits,
    keep: &mut dyn FnMut(&[u8]) -> Result<String, E>,
    mail: &mut ParsedMail,
) -> Result<(), E> {
    for (i, part) in msg.attachments().enumerate() {
        if i >= limits.attachments {
            mail.reasons.push(ReasonCode::CapAttachments);
            break;
        }
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_else(|| match &part.body {
                PartType::Message(_) => "message/rfc822".to_string(),
                PartType::Text(_) => "text/plain".to_string(),
                PartType::Html(_) => "text/html".to_string(),
                _ => "application/octet-stream".to_string(),
            });
        let contents = part.contents();
        mail.attachments.push(ParsedAttachment {
            name: part
                .attachment_name()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            content_type,
            size: contents.len() as u64,
            sha256: keep(contents)?,
        });
    }
    Ok(())
}

fn read_robot_headers(msg: &Message<'_>, mail: &mut ParsedMail) {
    let header = |name: &str| -> Option<String> {
        let h = msg.header(name)?;
        let text: Cow<'_, str> = match h {
            HeaderValue::Text(t) => Cow::Borrowed(t.as_ref()),
            HeaderValue::TextList(l) => {
                Cow::Owned(l.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(", "))
            }
            _ => Cow::Borrowed(msg.header_raw(name).unwrap_or("")),
        };
        Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    mail.auto_submitted = header("Auto-Submitted").map(|s| s.to_lowercase());
    mail.precedence = header("Precedence").map(|s| s.to_lowercase());
    mail.has_list_headers =
        msg.header("List-Id").is_some() || msg.header("List-Unsubscribe").is_some();
    let has_autoreply_header =
        msg.header("X-Autoreply").is_some() || msg.header("X-Autorespond").is_some();
    mail.out_of_office = detect_out_of_office(
        has_autoreply_header,
        mail.auto_submitted.as_deref(),
        &mail.subject,
    );
}

/// The message's [`MailShape`]. Every From field counts, not only the first
/// one mail-parser reports: a second From is how a forger hides.
fn shape_of(msg: &Message<'_>, attachments: &[ParsedAttachment]) -> MailShape {
    let content_type = msg
        .root_part()
        .content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_string(),
        })
        .unwrap_or_default()
        .to_ascii_lowercase();
    let froms: Vec<&HeaderValue<'_>> = msg
        .headers()
        .iter()
        .filter(|h| matches!(h.name, mail_parser::HeaderName::From))
        .map(|h| &h.value)
        .collect();
    let from_addresses = froms
        .iter()
        .map(|v| match v {
            HeaderValue::Address(mail_parser::Address::List(l)) => l.len(),
            HeaderValue::Address(mail_parser::Address::Group(g)) => {
                g.iter().map(|g| g.addresses.len()).sum()
            }
            _ => 0,
        })
        .sum();
    MailShape {
        content_type,
        from_fields: froms.len(),
        from_addresses,
        attachments: attachments
            .iter()
            .map(|a| (a.content_type.clone(), a.name.clone()))
            .collect(),
    }
}

/// Out-of-office detection. What is reliable:
/// - `X-Autoreply` / `X-Autorespond` (many vacation programs, Postfix-era tools);
/// - `Auto-Submitted: auto-replied` (RFC 3834; Gmail vacation, Sieve vacation);
/// - the subject of the answer: Exchange and Outlook send
///   `Automatic reply:` / `Risposta automatica:` with `Auto-Submitted:
///   auto-generated`, which alone would also match bounces and robots, so the
///   subject decides there.
///
/// `X-Auto-Response-Suppress` is deliberately not used: Outlook puts it on
/// ordinary mail and meeting answers too.
fn detect_out_of_office(has_header: bool, auto_submitted: Option<&str>, subject: &str) -> bool {
    if has_header {
        return true;
    }
    if auto_submitted.is_some_and(|v| v.starts_with("auto-replied")) {
        return true;
    }
    let subject = subject.trim_start().to_lowercase();
    OOF_SUBJECT_PREFIXES.iter().any(|p| subject.starts_with(p))
}

/// Longest header line RFC 5322 allows; an id or address longer than that
/// is not one, and would only make every ticket that keeps it larger.
const MAX_FIELD_TEXT: usize = 998;

fn clean_id(id: &str) -> Option<String> {
    let id = id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!id.is_empty() && id.len() <= MAX_FIELD_TEXT).then(|| id.to_string())
}

/// A header text we keep (an address, a display name), within bounds.
fn short_text(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| prefix(s, MAX_FIELD_TEXT).0.to_string())
}

/// The ids of a References / In-Reply-To field, each once, at most `cap`:
/// the first (the thread's root) and the latest ones, as RFC 5322 §3.6.4
/// suggests when trimming. Returns whether ids were dropped.
fn ids(value: &HeaderValue<'_>, cap: usize) -> (Vec<String>, bool) {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |s: &str| {
        // A malformed header may hold several ids in one text.
        for piece in s.split(|c: char| c.is_whitespace() || c == ',') {
            if let Some(id) = clean_id(piece)
                && seen.insert(id.clone())
            {
                all.push(id);
            }
        }
    };
    match value {
        HeaderValue::Text(t) => push(t),
        HeaderValue::TextList(l) => l.iter().for_each(|t| push(t)),
        _ => {}
    }
    let cut = all.len() > cap;
    (trim_ids(all, cap), cut)
}

fn trim_ids(mut all: Vec<String>, cap: usize) -> Vec<String> {
    if all.len() <= cap {
        return all;
    }
    if cap == 0 {
        return Vec::new();
    }
    let latest = all.split_off(all.len() - (cap - 1));
    all.truncate(1);
    all.extend(latest);
    all
}

fn clean_subject(s: &str) -> String {
    // Unfolded and without control characters, so it is safe in a header;
    // and of a size a subject has, whatever the field held.
    let (s, _) = prefix(s, 4 * MAX_FIELD_TEXT);
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn html_to_text(html: &str) -> String {
    mail_parser::decoders::html::html_to_text(html)
}

/// Removes `<blockquote ...>...</blockquote>` elements (nested ones too),
/// which is how HTML mailers quote earlier messages. Linear, allocation-light.
fn remove_blockquotes(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut depth = 0usize;
    let mut pos = 0usize;
    let mut copy_from = 0usize;
    while let Some(rel) = lower[pos..].find('<') {
        let at = pos + rel;
        let rest = &lower[at..];
        if rest.starts_with("<blockquote") {
            if depth == 0 {
                out.push_str(&html[copy_from..at]);
            }
            depth += 1;
            pos = at + 1;
        } else if rest.starts_with("</blockquote") {
            pos = at + 1;
            if depth > 0 {
                depth -= 1;
                if depth == 0 {
                    let end = lower[at..]
                        .find('>')
                        .map(|e| at + e + 1)
                        .unwrap_or(lower.len());
                    copy_from = end;
                    pos = end;
                }
            }
        } else {
            pos = at + 1;
        }
    }
    if depth == 0 {
        out.push_str(&html[copy_from..]);
    }
    out
}

/// The text a sender wrote in this message: lines quoted with `>` are
/// dropped; everything from an attribution line ("Il giorno ... ha scritto:",
/// "On ... wrote:"), an "Original Message" separator, an Outlook header block
/// ("Da: ... Inviato: ...") or a signature separator ("-- ") on is cut.
pub fn strip_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if is_cut_line(&lines, i) {
            break;
        }
        if line.trim_start().starts_with('>') {
            continue;
        }
        kept.push(line.trim_end());
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    // One cut, not one shift per leading blank line: a body of a million
    // empty lines made this quadratic.
    let first = kept
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(kept.len());
    kept[first..].join("\n")
}

fn is_cut_line(lines: &[&str], i: usize) -> bool {
    let raw = lines[i];
    if raw == "-- " || raw == "--" || raw == "-- \r" {
        return true;
    }
    let line = raw.trim();
    let lower = line.to_lowercase();
    if lower.is_empty() {
        return false;
    }
    // "-----Original Message-----", "----- Messaggio originale -----"
    if lower.starts_with("---")
        && (lower.contains("original message")
            || lower.contains("messaggio originale")
            || lower.contains("forwarded message")
            || lower.contains("messaggio inoltrato"))
    {
        return true;
    }
    // Attribution lines, possibly wrapped over two lines.
    let is_attribution = |l: &str| {
        let l = l.trim_end();
        l.ends_with("ha scritto:") || l.ends_with("wrote:") || l.ends_with("scrive:")
    };
    let starts_attribution = lower.starts_with("il ")
        || lower.starts_with("in data ")
        || lower.starts_with("on ")
        || lower.starts_with("am ");
    if starts_attribution && is_attribution(&lower) {
        return true;
    }
    if starts_attribution
        && let Some(next) = lines.get(i + 1)
        && is_attribution(&next.trim().to_lowercase())
    {
        return true;
    }
    // Outlook: an optional "_____" line, then "Da:" / "From:" followed within
    // a few lines by "Inviato:" / "Sent:" / "Data:" / "Date:".
    if lower.len() >= 10 && lower.chars().all(|c| c == '_') {
        if let Some(next) = lines[i + 1..].iter().find(|l| !l.trim().is_empty()) {
            let n = next.trim().to_lowercase();
            if n.starts_with("da:") || n.starts_with("from:") {
                return true;
            }
        }
        return false;
    }
    if lower.starts_with("da:") || lower.starts_with("from:") {
        return lines[i + 1..].iter().take(4).any(|l| {
            let l = l.trim().to_lowercase();
            l.starts_with("inviato:")
                || l.starts_with("sent:")
                || l.starts_with("data:")
                || l.starts_with("date:")
                || l.starts_with("inviato il:")
        });
    }
    false
}

/// Best effort when mail-parser gives up: unfold the header block, pick the
/// few headers we use, and keep the rest as the body.
fn fallback(raw: &[u8], limits: &ParseLimits) -> ParsedMail {
    let text = String::from_utf8_lossy(raw).replace('\0', " ");
    let (head, body) = split_head(&text);
    let headers = unfold_headers(head);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    // The same reading of ids as for a parsed message, so a reply threads
    // alike whichever parser read it.
    let reference_ids = |name: &str| {
        get(name).map_or_else(Vec::new, |v| {
            ids(&HeaderValue::Text(v.into()), limits.reference_ids).0
        })
    };
    let mut mail = ParsedMail {
        reasons: vec![ReasonCode::ParseFailed],
        ..ParsedMail::default()
    };
    if let Some(subject) = get("subject") {
        mail.subject = decode_words(&subject);
    }
    if let Some(from) = get("from") {
        mail.from = short_text(angle_address(&from));
    }
    mail.message_id = get("message-id").and_then(|v| clean_id(&v));
    mail.in_reply_to = reference_ids("in-reply-to");
    mail.references = reference_ids("references");
    mail.auto_submitted = get("auto-submitted").map(|s| s.to_lowercase());
    mail.precedence = get("precedence").map(|s| s.to_lowercase());
    mail.has_list_headers = get("list-id").is_some() || get("list-unsubscribe").is_some();
    mail.out_of_office = detect_out_of_office(
        get("x-autoreply").is_some() || get("x-autorespond").is_some(),
        mail.auto_submitted.as_deref(),
        &mail.subject,
    );
    let (body, cut) = prefix(body, limits.text_bytes);
    if cut {
        mail.reasons.push(ReasonCode::CapClassifyText);
    }
    mail.body = body.to_string();
    mail.new_text = strip_quoted(body);
    if mail.message_id.is_none() {
        mail.reasons.push(ReasonCode::ParseNoMessageId);
    }
    mail
}

/// The header block and the body, split at the first empty line; with
/// none, all of it is body.
fn split_head(text: &str) -> (&str, &str) {
    match text
        .find("\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| text.find("\n\n").map(|i| (i, 2)))
    {
        Some((i, n)) => (&text[..i], &text[i + n..]),
        None => ("", text),
    }
}

/// Header fields as (lowercase name, unfolded value), in order; lines that
/// are neither a field nor a continuation are dropped.
fn unfold_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    headers
}

/// The address between the last angle brackets of a From field, else the
/// field as written.
fn angle_address(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from,
    }
}

/// Decodes RFC 2047 encoded words by letting mail-parser read a one-header
/// message; the text as is when that fails.
fn decode_words(value: &str) -> String {
    let synthetic = format!("Subject: {value}\r\n\r\n");
    let decoded = std::panic::catch_unwind(|| {
        MessageParser::default()
            .parse(synthetic.as_bytes())
            .and_then(|m| m.subject().map(str::to_string))
    });
    match decoded {
        Ok(Some(s)) => clean_subject(&s),
        _ => clean_subject(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(s: &str) -> Vec<u8> {
        s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn plain_message() {
        let m = parse(&crlf(
            "From: \"Mario Rossi\" <Mario.Rossi@Cliente.IT>\n\
             To: nuovocaso@projectpp.it\n\
             Reply-To: <assistenza@cliente.it>\n\
             Subject: Stampa fatture bloccata\n\
             Message-ID: <abc123@cliente.it>\n\
             In-Reply-To: <x1@projectpp.it>\n\
             References: <x0@projectpp.it> <x1@projectpp.it>\n\
             \n\
             Buongiorno, la stampa delle fatture si blocca.\n",
        ));
        assert_eq!(m.message_id.as_deref(), Some("abc123@cliente.it"));
        assert_eq!(m.from.as_deref(), Some("Mario.Rossi@Cliente.IT"));
        assert_eq!(m.from_name.as_deref(), Some("Mario Rossi"));
        assert_eq!(m.reply_to.as_deref(), Some("assistenza@cliente.it"));
        assert_eq!(m.in_reply_to, vec!["x1@projectpp.it"]);
        assert_eq!(m.references, vec!["x0@projectpp.it", "x1@projectpp.it"]);
        assert_eq!(m.subject, "Stampa fatture bloccata");
        assert!(m.body.contains("si blocca"));
        assert!(m.reasons.is_empty(), "{:?}", m.reasons);
        assert!(!m.out_of_office);
        assert!(!m.has_list_headers);
    }

    #[test]
    fn quoted_printable_body() {
        let m = parse(&crlf(
            "From: a@b.it\nSubject: qp\nMessage-ID: <q@b.it>\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\n\
             La contabilit=C3=A0 non si apre, perch=C3=A9 manca l'archivio =\n\
             del 2025.\n",
        ));
        assert_eq!(
            m.body.trim(),
            "La contabilità non si apre, perché manca l'archivio del 2025."
        );
    }

    #[test]
    fn base64_body() {
        // "Il modulo ISEE è bloccato." in UTF-8
        let m = parse(&crlf(
            "From: a@b.it\nSubject: b64\nMessage-ID: <b@b.it>\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: base64\n\n\
             SWwgbW9kdWxvIElTRUUgw6ggYmxvY2NhdG8u\n",
        ));
        assert_eq!(m.body.trim(), "Il modulo ISEE è bloccato.");
    }

    #[test]
    fn iso_8859_1_body_and_subject() {
        let mut raw = crlf(
            "From: a@b.it\nSubject: =?ISO-8859-1?Q?Contabilit=E0_IVA_urgente?=\nMessage-ID: <i@b.it>\n\
             Content-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: 8bit\n\n",
        );
        raw.extend_from_slice(b"Non funziona la liquidazione, perch\xe9?\r\n");
        let m = parse(&raw);
        assert_eq!(m.subject, "Contabilità IVA urgente");
        assert!(m.body.contains("perché?"), "{}", m.body);
    }

    #[test]
    fn windows_1252_body() {
        let mut raw = crlf(
            "From: a@b.it\nSubject: cp1252\nMessage-ID: <w@b.it>\n\
             Content-Type: text/plain; charset=windows-1252\n\n",
        );
        raw.extend_from_slice(b"Il costo \x80 100 \x93virgolette\x94\r\n");
        let m = parse(&raw);
        assert!(m.body.contains("€ 100 “virgolette”"), "{}", m.body);
    }

    #[test]
    fn utf8_encoded_word_subject() {
        let m = parse(&crlf(
            "From: a@b.it\nSubject: =?UTF-8?B?UHJvYmxlbWEgZGljaGlhcmF0aXZvIDczMCDigJMgdXJnZW50ZQ==?=\n\
             Message-ID: <u@b.it>\n\nciao\n",
        ));
        assert_eq!(m.subject, "Problema dichiarativo 730 – urgente");
    }

    #[test]
    fn html_only() {
        let m = parse(&crlf(
            "From: a@b.it\nSubject: html\nMessage-ID: <h@b.it>\n\
             Content-Type: text/html; charset=utf-8\n\n\
             <html><body><p>Il programma <b>Mago4</b> non parte.</p>\
             <blockquote>Vecchio messaggio critico</blockquote></body></html>\n",
        ));
        assert!(m.reasons.contains(&ReasonCode::ParseHtmlOnly));
        assert!(m.body.contains("Mago4"), "{}", m.body);
        assert!(!m.body.contains("<b>"));
        assert!(m.new_text.contains("Mago4"));
        assert!(!m.new_text.contains("critico"), "{}", m.new_text);
    }

    #[test]
    fn alternative_prefers_plain_and_not_html_only() {
        let m = parse(&crlf(
            "From: a@b.it\nSubject: alt\nMessage-ID: <alt@b.it>\n\
             Content-Type: multipart/alternative; boundary=\"XX\"\n\n\
             --XX\nContent-Type: text/plain; charset=utf-8\n\ntesto semplice\n\
             --XX\nContent-Type: text/html; charset=utf-8\n\n<p>testo html</p>\n--XX--\n",
        ));
        assert!(!m.reasons.contains(&ReasonCode::ParseHtmlOnly));
        assert_eq!(m.body.trim(), "testo semplice");
    }

    #[test]
    fn attachments() {
        let m = parse(&crlf(
            "From: a@b.it\nSubject: allegato\nMessage-ID: <att@b.it>\n\
             Content-Type: multipart/mixed; boundary=\"B1\"\n\n\
             --B1\nContent-Type: text/plain; charset=utf-8\n\nVedi schermata.\n\
             --B1\nContent-Type: image/PNG; name=\"schermata.png\"\n\
             Content-Disposition: attachment; filename=\"schermata.png\"\n\
             Content-Transfer-Encoding: base64\n\niVBORw0KGgo=\n\
             --B1\nContent-Type: application/pdf\n\
             Content-Disposition: attachment; filename=\"=?UTF-8?Q?fattura_n=C2=B0_12.pdf?=\"\n\
             Content-Transfer-Encoding: base64\n\nJVBERi0xLjQ=\n--B1--\n",
        ));
        assert_eq!(m.body.trim(), "Vedi schermata.");
        assert_eq!(m.attachments.len(), 2, "{:?}", m.attachments);
        assert_eq!(m.attachments[0].name.as_deref(), Some("schermata.png"));
        assert_eq!(m.attachments[0].content_type, "image/png");
        assert_eq!(m.attachments[0].sha256, sha256_hex(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(m.attachments[0].size, 8);
        assert_eq!(m.attachments[1].name.as_deref(), Some("fattura n° 12.pdf"));
        assert_eq!(m.attachments[1].content_type, "application/pdf");
        assert_eq!(m.attachments[1].sha256, sha256_hex(b"%PDF-1.4"));
    }

    #[test]
    fn quoted_text_removed() {
        let body = "Ho ancora il problema, vedi sotto.\n\
                    > riga citata critico\n\
                    Altra riga nuova.\n\
                    \n\
                    Il giorno lun 2 mar 2026 alle ore 10:15 Supporto <nuovocaso@projectpp.it>\n\
                    ha scritto:\n\
                    testo vecchio mago\n";
        assert_eq!(
            strip_quoted(body),
            "Ho ancora il problema, vedi sotto.\nAltra riga nuova."
        );
        assert_eq!(
            strip_quoted("Nuovo\nOn Mon, Mar 2, 2026 at 10:15 AM Bob <b@x.it> wrote:\n> old"),
            "Nuovo"
        );
        assert_eq!(
            strip_quoted("Nuovo\n-----Messaggio originale-----\nDa: x\nvecchio"),
            "Nuovo"
        );
        assert_eq!(
            strip_quoted("Nuovo\n-----Original Message-----\nFrom: x\nold"),
            "Nuovo"
        );
        assert_eq!(
            strip_quoted(
                "Nuovo\n________________________________\nDa: Supporto <s@x.it>\nInviato: lunedì 2 marzo 2026 10:15\nA: io\nOggetto: R: vecchio\n\nvecchio"
            ),
            "Nuovo"
        );
        assert_eq!(
            strip_quoted("Nuovo\nDa: Supporto <s@x.it>\nInviato: lunedì\nOggetto: x\nvecchio"),
            "Nuovo"
        );
        assert_eq!(
            strip_quoted("Testo\n-- \nMario Rossi\nTel 0123 mago"),
            "Testo"
        );
        // "Da:" in ordinary prose is not an Outlook block.
        assert_eq!(
            strip_quoted("Da: ieri non stampa\nniente"),
            "Da: ieri non stampa\nniente"
        );
        let m = parse(&crlf(&format!(
            "From: a@b.it\nSubject: re\nMessage-ID: <r@b.it>\n\n{body}"
        )));
        assert!(m.body.contains("testo vecchio"));
        assert!(!m.new_text.contains("vecchio"));
        assert!(!m.new_text.contains("critico"));
    }

    #[test]
    fn robots_and_out_of_office() {
        let m = parse(&crlf(
            "From: a@b.it\nSubject: Risposta automatica: Problema stampa\nMessage-ID: <o@b.it>\n\
             Auto-Submitted: Auto-Generated\n\nSono fuori sede.\n",
        ));
        assert!(m.out_of_office);
        assert_eq!(m.auto_submitted.as_deref(), Some("auto-generated"));
        let m = parse(&crlf(
            "From: a@b.it\nSubject: Re: Problema\nMessage-ID: <o2@b.it>\n\
             Auto-Submitted: auto-replied\nPrecedence: Bulk\n\nIn vacanza.\n",
        ));
        assert!(m.out_of_office);
        assert_eq!(m.precedence.as_deref(), Some("bulk"));
        let m = parse(&crlf(
            "From: a@b.it\nSubject: Problema\nMessage-ID: <o3@b.it>\nX-Autoreply: yes\n\nx\n",
        ));
        assert!(m.out_of_office);
        let m = parse(&crlf(
            "From: a@b.it\nSubject: News\nMessage-ID: <l@b.it>\nList-Id: <news.b.it>\n\nx\n",
        ));
        assert!(m.has_list_headers);
        assert!(!m.out_of_office);
    }

    #[test]
    fn no_message_id() {
        let m = parse(b"From: a@b.it\r\nSubject: x\r\n\r\nbody\r\n");
        assert_eq!(m.reasons, vec![ReasonCode::ParseNoMessageId]);
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\0\0\0\0".to_vec(),
            b"\r\n\r\n".to_vec(),
            b"::::\n\n".to_vec(),
            (0u8..=255).collect(),
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            b"Subject: =?utf-8?B?====?=\r\nContent-Type: multipart/mixed; boundary=\r\n\r\n--\r\n"
                .to_vec(),
            b"Subject: =?x-unknown?Q?=FF=FE?=\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n"
                .to_vec(),
        ];
        // Deep multipart nesting.
        let mut deep = String::from("Subject: deep\r\n");
        for i in 0..2000 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        deep.push_str("Content-Type: text/plain\r\n\r\nfondo\r\n");
        inputs.push(deep.into_bytes());
        // Deep message/rfc822 nesting.
        let mut nested = String::from("Subject: n\r\n");
        for _ in 0..500 {
            nested.push_str("Content-Type: message/rfc822\r\n\r\nSubject: n\r\n");
        }
        inputs.push(nested.into_bytes());
        // Deep blockquotes in HTML.
        let html = format!(
            "Subject: h\r\nContent-Type: text/html\r\n\r\n{}x{}",
            "<blockquote>".repeat(10000),
            "</blockquote>".repeat(3)
        );
        inputs.push(html.into_bytes());
        for input in &inputs {
            let _ = parse(input);
            for cut in [1, 7, 50] {
                if input.len() > cut {
                    let _ = parse(&input[..input.len() - cut]);
                }
            }
        }
    }

    #[test]
    fn unparseable_still_reads_what_it_can() {
        let m = fallback(
            b"Subject: =?UTF-8?Q?Contabilit=C3=A0?=\r\nFrom: X <x@y.it>\r\n\r\ncorpo\r\n",
            &ParseLimits::default(),
        );
        assert_eq!(m.subject, "Contabilità");
        assert_eq!(m.from.as_deref(), Some("x@y.it"));
        assert!(m.reasons.contains(&ReasonCode::ParseFailed));
        assert_eq!(m.body.trim(), "corpo");
        let m = parse(b"\x00\x01\x02 no headers here");
        assert!(
            m.reasons.contains(&ReasonCode::ParseFailed)
                || !m.body.is_empty()
                || m.subject.is_empty()
        );
    }
}
