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

/// The rewritten start of a message: `head` replaces its first `skip`
/// bytes. `start` is the beginning of the message (at least its header
/// section when that fits in memory).
pub struct Rewrite {
    pub head: Vec<u8>,
    pub skip: u64,
    pub removed_forged: usize,
}

pub fn rewrite(start: &[u8], headers: &[(&str, String)]) -> Rewrite {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(sanitize(value).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let Some(section_len) = header_section_len(start) else {
        // The header section does not end within what we have: prepend
        // only, never cut a header we cannot see the end of.
        return Rewrite {
            head,
            skip: 0,
            removed_forged: 0,
        };
    };
    let mut removed = 0;
    let mut dropping = false;
    for line in split_lines(&start[..section_len]) {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            dropping = is_our_header(line);
            if dropping {
                removed += 1;
            }
        }
        if !dropping {
            head.extend_from_slice(line);
        }
    }
    Rewrite {
        head,
        skip: section_len as u64,
        removed_forged: removed,
    }
}

/// Whether a header field name is one of ours (`X-Ticketgate-*`, any case).
pub fn is_our_name(name: &str) -> bool {
    is_our_header(name.as_bytes())
}

fn is_our_header(line: &[u8]) -> bool {
    line.len() >= PREFIX.len() && line[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
}

/// Length of the header lines, up to and including the CRLF of the last
/// header (the empty line after it is body separator and stays).
fn header_section_len(msg: &[u8]) -> Option<usize> {
    if msg.starts_with(b"\r\n") {
        return Some(0);
    }
    if let Some(pos) = msg.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(pos + 2);
    }
    // A message that is only headers.
    msg.ends_with(b"\r\n").then_some(msg.len())
}

/// Lines with their CRLF.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split_inclusive(|&b| b == b'\n')
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
        let r = rewrite(msg, &[("X-Ticketgate-Ticket", "PP-2026-000001".into())]);
        assert_eq!(r.removed_forged, 2);
        assert_eq!(
            r.head,
            b"X-Ticketgate-Ticket: PP-2026-000001\r\nSubject: a\r\nFrom: b\r\n"
        );
        let mut out = r.head.clone();
        out.extend_from_slice(&msg[r.skip as usize..]);
        assert_eq!(
            out,
            b"X-Ticketgate-Ticket: PP-2026-000001\r\nSubject: a\r\nFrom: b\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn values_cannot_inject_lines() {
        let r = rewrite(b"\r\nbody", &[("X-Ticketgate-Queue", "a\r\nBcc: x".into())]);
        assert_eq!(r.head, b"X-Ticketgate-Queue: a  Bcc: x\r\n");
        assert_eq!(r.skip, 0);
    }
}
