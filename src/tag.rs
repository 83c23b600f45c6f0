//! Tags: our `X-Ticketgate-*` headers go on top of the message; copies of
//! them that came with the message are removed first, so no sender can
//! forge them. The body is not touched.

use crate::ticket::{Action, Ticket};

pub const PREFIX: &str = "x-ticketgate-";

/// The headers of DESIGN §4 for one ticket.
pub fn ticket_headers(ticket: &Ticket, action: Action) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("X-Ticketgate-Ticket", ticket.id.clone()),
        ("X-Ticketgate-Action", action.as_str().to_string()),
        ("X-Ticketgate-Helpdesk", ticket.helpdesk.clone()),
        ("X-Ticketgate-Queue", ticket.queue.clone()),
        (
            "X-Ticketgate-Sector",
            ticket.sector.clone().unwrap_or_default(),
        ),
        ("X-Ticketgate-Urgency", ticket.urgency.as_str().to_string()),
    ];
    if let Some(contract) = &ticket.contract {
        h.push(("X-Ticketgate-Contract", contract.clone()));
    }
    h.push(("X-Ticketgate-Status", ticket.status.as_str().to_string()));
    h
}

/// Our header fields in wire form, to go on top of the message.
pub fn header_block(headers: &[(&str, String)]) -> Vec<u8> {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(sanitize(value).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head
}

/// Whether a header field name is one of ours (`X-Ticketgate-*`, any case).
pub fn is_our_name(name: &str) -> bool {
    is_our_header(name.as_bytes())
}

fn is_our_header(line: &[u8]) -> bool {
    line.len() >= PREFIX.len() && line[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
}

/// Whether an `Authentication-Results` value claims `authserv_id`: its
/// first token, after white space and comments (RFC 8601 §2.2). A value
/// whose token we cannot see within what we looked at counts as a claim:
/// removing a field padded to hide its id costs nothing.
pub fn claims_authserv_id(value: &[u8], authserv_id: &str, complete: bool) -> bool {
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let token_end = value[i..]
        .iter()
        .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .map(|p| i + p);
    match token_end {
        Some(end) => value[i..end].eq_ignore_ascii_case(authserv_id.as_bytes()),
        None if complete => value[i..].eq_ignore_ascii_case(authserv_id.as_bytes()),
        None => true,
    }
}

/// A field that leaves a message on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forged {
    /// One of our `X-Ticketgate-*` fields, which only we write.
    Tag,
    /// An `Authentication-Results` field carrying our authserv-id
    /// (RFC 8601 §5).
    AuthResults,
}

/// The one rule for what is forged, for the SMTP front end's scan of the
/// spooled header section and the milter's header events alike. A
/// `value` that is not `complete` (a field longer than what was kept) is
/// judged on its start.
pub fn forged(name: &[u8], value: &[u8], authserv_id: &str, complete: bool) -> Option<Forged> {
    let name = name.trim_ascii();
    if is_our_header(name) {
        Some(Forged::Tag)
    } else if name.eq_ignore_ascii_case(b"authentication-results")
        && claims_authserv_id(value, authserv_id, complete)
    {
        Some(Forged::AuthResults)
    } else {
        None
    }
}

/// What leaves a message's header section on its way out: forged
/// `X-Ticketgate-*` fields and `Authentication-Results` fields that carry
/// our authserv-id. Byte ranges of the message as received, sorted,
/// adjacent ones merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderCuts {
    pub cuts: Vec<std::ops::Range<u64>>,
    pub forged_tags: usize,
    pub forged_auth_results: usize,
    /// More separate ranges than [`MAX_CUTS`]: the message is refused.
    pub too_many: bool,
}

/// Separate ranges a message may make us cut. Only forged fields make
/// them, and an honest message has none.
pub const MAX_CUTS: usize = 1000;

/// Bytes of a field kept to decide what it is.
const FIELD_PREFIX: usize = 1024;

/// Finds the fields to cut in a header section of any size, fed in chunks
/// as the spool is read: linear, and holding at most the first KiB of one
/// field at a time.
pub struct HeaderScanner {
    authserv_id: String,
    pos: u64,
    at_line_start: bool,
    /// The field being read: where it starts and its first bytes.
    field: Option<(u64, Vec<u8>)>,
    done: bool,
    out: HeaderCuts,
}

impl HeaderScanner {
    pub fn new(authserv_id: &str) -> HeaderScanner {
        HeaderScanner {
            authserv_id: authserv_id.to_string(),
            pos: 0,
            at_line_start: true,
            field: None,
            done: false,
            out: HeaderCuts::default(),
        }
    }

    /// True once the empty line that ends the header section was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.done {
                return;
            }
            self.step(b);
            self.pos += 1;
        }
    }

    fn step(&mut self, b: u8) {
        if self.at_line_start {
            match b {
                b' ' | b'\t' => {}
                b'\r' | b'\n' => {
                    self.end_field(self.pos);
                    self.done = true;
                    return;
                }
                _ => {
                    self.end_field(self.pos);
                    self.field = Some((self.pos, Vec::new()));
                }
            }
        }
        if let Some((_, prefix)) = &mut self.field
            && prefix.len() < FIELD_PREFIX
        {
            prefix.push(b);
        }
        self.at_line_start = b == b'\n';
    }

    fn end_field(&mut self, end: u64) {
        let Some((start, prefix)) = self.field.take() else {
            return;
        };
        let complete = prefix.len() < FIELD_PREFIX;
        let Some(colon) = prefix.iter().position(|&b| b == b':') else {
            return;
        };
        let (name, value) = (&prefix[..colon], &prefix[colon + 1..]);
        match forged(name, value, &self.authserv_id, complete) {
            Some(Forged::Tag) => self.out.forged_tags += 1,
            Some(Forged::AuthResults) => self.out.forged_auth_results += 1,
            None => return,
        }
        self.cut(start..end);
    }

    fn cut(&mut self, range: std::ops::Range<u64>) {
        let count = self.out.cuts.len();
        match self.out.cuts.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ if count >= MAX_CUTS => self.out.too_many = true,
            _ => self.out.cuts.push(range),
        }
    }

    /// The cuts; a message that ends inside its header section has its
    /// last field judged too.
    pub fn finish(mut self) -> HeaderCuts {
        if !self.done {
            self.end_field(self.pos);
        }
        self.out
    }
}

/// Scans a message held whole in memory.
pub fn scan(message: &[u8], authserv_id: &str) -> HeaderCuts {
    let mut scanner = HeaderScanner::new(authserv_id);
    scanner.feed(message);
    scanner.finish()
}

/// `message` without the cut ranges, for tests and in-memory callers.
pub fn apply_cuts(message: &[u8], cuts: &[std::ops::Range<u64>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut from = 0usize;
    for c in cuts {
        out.extend_from_slice(&message[from..c.start as usize]);
        from = c.end as usize;
    }
    out.extend_from_slice(&message[from..]);
    out
}

/// Header values come from the config and the classifier; a line break in
/// one would let it end our header and start another.
fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_headers_and_their_continuations_are_removed() {
        let msg = b"Subject: a\r\nX-Ticketgate-Ticket: PP-2026-999999\r\n\tfolded\r\nx-ticketgate-action: closed\r\nFrom: b\r\n\r\nbody\r\n";
        let cuts = scan(msg, "gate.test");
        assert_eq!(cuts.forged_tags, 2);
        assert_eq!(cuts.cuts.len(), 1, "adjacent fields make one cut");
        let mut out = header_block(&[("X-Ticketgate-Ticket", "PP-2026-000001".into())]);
        out.extend_from_slice(&apply_cuts(msg, &cuts.cuts));
        assert_eq!(
            out,
            b"X-Ticketgate-Ticket: PP-2026-000001\r\nSubject: a\r\nFrom: b\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn only_our_authserv_id_is_removed() {
        let msg = b"Authentication-Results: other.example; spf=pass\r\n\
Authentication-Results: (comment) GATE.test;\r\n dkim=pass\r\n\
Subject: x\r\n\
Authentication-Results: gate.test.evil; spf=pass\r\n\r\n\
Authentication-Results: gate.test; in the body\r\n";
        let cuts = scan(msg, "gate.test");
        assert_eq!(cuts.forged_auth_results, 1);
        let out = apply_cuts(msg, &cuts.cuts);
        assert_eq!(
            out,
            b"Authentication-Results: other.example; spf=pass\r\nSubject: x\r\n\
Authentication-Results: gate.test.evil; spf=pass\r\n\r\n\
Authentication-Results: gate.test; in the body\r\n"
        );
    }

    #[test]
    fn a_field_padded_to_hide_its_authserv_id_is_removed() {
        let mut msg = b"Authentication-Results: (".to_vec();
        msg.extend(std::iter::repeat_n(b'x', 5000));
        msg.extend_from_slice(b") gate.test; dkim=pass\r\n\r\nbody\r\n");
        assert_eq!(scan(&msg, "gate.test").forged_auth_results, 1);
    }

    #[test]
    fn scanning_in_pieces_equals_scanning_whole() {
        let mut msg = Vec::new();
        for i in 0..4000 {
            msg.extend_from_slice(format!("X-Pad-{i}: padding\r\n").as_bytes());
        }
        msg.extend_from_slice(b"X-Ticketgate-Status: closed\r\n\r\nX-Ticketgate-Body: stays\r\n");
        let whole = scan(&msg, "gate.test");
        let mut pieces = HeaderScanner::new("gate.test");
        for chunk in msg.chunks(7) {
            pieces.feed(chunk);
        }
        assert_eq!(pieces.finish(), whole);
        assert_eq!(whole.forged_tags, 1);
        let out = apply_cuts(&msg, &whole.cuts);
        assert!(out.ends_with(b"padding\r\n\r\nX-Ticketgate-Body: stays\r\n"));
    }

    #[test]
    fn separate_forged_fields_past_the_bound_are_flagged() {
        let mut msg = Vec::new();
        for _ in 0..=MAX_CUTS {
            msg.extend_from_slice(b"X-Ticketgate-Status: closed\r\nX-Pad: 1\r\n");
        }
        let cuts = scan(&msg, "gate.test");
        assert!(cuts.too_many);
        assert_eq!(cuts.cuts.len(), MAX_CUTS);
    }

    #[test]
    fn values_cannot_inject_lines() {
        let head = header_block(&[("X-Ticketgate-Queue", "a\r\nBcc: x".into())]);
        assert_eq!(head, b"X-Ticketgate-Queue: a  Bcc: x\r\n");
    }
}
