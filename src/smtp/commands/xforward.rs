//! XFORWARD and XCLIENT (Postfix extensions): the upstream tells us who the
//! real client is, which SPF and the logs need. Accepted only from the
//! configured trusted upstreams, or any client could claim any address.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::envelope::ClientInfo;
use crate::smtp::session::{Session, State};
use crate::wire::reply::Reply;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn handle_xforward(&mut self, args: &[u8]) -> Reply {
        if !self.is_trusted_upstream() {
            return Reply::new(550, "5.7.0", "XFORWARD not authorized");
        }
        if matches!(self.state, State::Transaction(_)) {
            return Reply::new(503, "5.5.1", "XFORWARD not allowed in a mail transaction");
        }
        match apply_attributes(&mut self.client, args) {
            Ok(()) => {
                self.hop_needs_xforward = true;
                Reply::new(250, "2.0.0", "Ok")
            }
            Err(reply) => reply,
        }
    }

    /// XCLIENT replaces the client identity and restarts the session with a
    /// new greeting, as Postfix's smtpd does.
    pub(super) async fn handle_xclient(&mut self, args: &[u8]) -> Reply {
        if !self.is_trusted_upstream() {
            return Reply::new(550, "5.7.0", "XCLIENT not authorized");
        }
        if matches!(self.state, State::Transaction(_)) {
            return Reply::new(503, "5.5.1", "XCLIENT not allowed in a mail transaction");
        }
        if let Err(reply) = apply_attributes(&mut self.client, args) {
            return reply;
        }
        self.hop_needs_xforward = true;
        self.state = State::Connected;
        self.helo = None;
        self.greeting()
    }
}

fn apply_attributes(client: &mut ClientInfo, args: &[u8]) -> Result<(), Reply> {
    let text = std::str::from_utf8(args)
        .map_err(|_| Reply::new(501, "5.5.4", "Invalid attribute encoding"))?;
    let mut any = false;
    for pair in text.split_ascii_whitespace() {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(Reply::new(501, "5.5.4", format!("Bad attribute: {pair}")));
        };
        let value = decode_xtext(value)
            .ok_or_else(|| Reply::new(501, "5.5.4", format!("Bad xtext in {name}")))?;
        // Postfix sends these when it does not know a value.
        let value = match value.as_str() {
            "[UNAVAILABLE]" | "[TEMPUNAVAIL]" => None,
            _ => Some(value),
        };
        let slot = match name.to_ascii_uppercase().as_str() {
            "NAME" => &mut client.name,
            "ADDR" => &mut client.addr,
            "PORT" => &mut client.port,
            "PROTO" => &mut client.proto,
            "HELO" => &mut client.helo,
            "IDENT" => &mut client.ident,
            "SOURCE" => &mut client.source,
            "LOGIN" | "DESTADDR" | "DESTPORT" => continue,
            _ => {
                return Err(Reply::new(
                    501,
                    "5.5.4",
                    format!("Unknown attribute {name}"),
                ));
            }
        };
        *slot = value.map(|v| v.strip_prefix("IPV6:").map(str::to_string).unwrap_or(v));
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(Reply::new(
            501,
            "5.5.4",
            "Syntax: XFORWARD attribute=value ...",
        ))
    }
}

fn decode_xtext(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'+' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_decoded_and_unavailable_dropped() {
        let mut c = ClientInfo::default();
        apply_attributes(
            &mut c,
            b" NAME=[UNAVAILABLE] ADDR=192.0.2.7 HELO=mx+2Eexample.org",
        )
        .unwrap();
        assert_eq!(c.addr.as_deref(), Some("192.0.2.7"));
        assert_eq!(c.helo.as_deref(), Some("mx.example.org"));
        assert_eq!(c.name, None);
    }

    #[test]
    fn unknown_attribute_is_refused() {
        let mut c = ClientInfo::default();
        assert_eq!(apply_attributes(&mut c, b" FOO=1").unwrap_err().code, 501);
    }
}
