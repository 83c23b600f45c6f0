//! The SMTP envelope as it leaves us: addresses written back in RFC 5321
//! form (a local part quoted where it needs it) and the ESMTP parameters we
//! pass on. smtp-proto hands us addresses with their quotes removed, so an
//! address written back as it came would let `"x> NOTIFY=NEVER"@a` become a
//! parameter in the next hop's command.

use thiserror::Error;

/// One message's envelope as the front end received it.
pub struct Envelope<'a> {
    pub session: &'a str,
    pub client: &'a ClientInfo,
    pub from: &'a str,
    pub rcpts: &'a [String],
}

/// Client details passed on with XFORWARD so the next hop (and SPF) sees
/// the real client, not us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub addr: Option<String>,
    pub name: Option<String>,
    pub helo: Option<String>,
    pub proto: Option<String>,
    pub ident: Option<String>,
    pub source: Option<String>,
    pub port: Option<String>,
}

/// An address as a person is known by: lowercase, without angle brackets,
/// and without the BATV tag a sending MTA puts on the envelope sender
/// (`prvs=1234abcdef=mario@example.com` is `mario@example.com`), so the
/// envelope sender and the From of the same person compare equal.
pub fn canonical_address(addr: &str) -> String {
    let addr = addr
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase();
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return addr;
    };
    match strip_batv(local) {
        Some(core) => format!("{core}@{domain}"),
        None => addr,
    }
}

/// The local part under a BATV `prvs=TAG=local` tag (TAG: key digit, three
/// day digits, six hex digits), if it has one.
fn strip_batv(local: &str) -> Option<&str> {
    let rest = local.strip_prefix("prvs=")?;
    let (tag, core) = rest.split_once('=')?;
    let is_tag = tag.len() == 10
        && tag[..4].bytes().all(|b| b.is_ascii_digit())
        && tag[4..].bytes().all(|b| b.is_ascii_hexdigit());
    (is_tag && !core.is_empty()).then_some(core)
}

/// MAIL FROM parameters carried to the next hop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub eight_bit: bool,
    pub smtputf8: bool,
    /// DSN (RFC 3461): `RET=FULL` or `RET=HDRS`.
    pub ret: Option<DsnRet>,
    /// DSN envelope id, decoded from xtext.
    pub envid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnRet {
    Full,
    Hdrs,
}

/// RCPT TO parameters carried to the next hop (DSN only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=` keywords in RFC 3461 order (NEVER alone, or any of
    /// SUCCESS, FAILURE, DELAY).
    pub notify: Vec<&'static str>,
    /// `ORCPT=rfc822;...`, the address decoded from xtext.
    pub orcpt: Option<String>,
}

impl RcptParams {
    pub fn is_empty(&self) -> bool {
        self.notify.is_empty() && self.orcpt.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AddressError {
    #[error("address has no domain")]
    NoDomain,
    #[error("address contains a control character")]
    ControlCharacter,
    #[error("address domain is neither a domain name nor an address literal")]
    BadDomain,
}

/// The address as a reverse- or forward-path, without the angle brackets:
/// the local part as a dot-atom when it is one, else as a quoted string.
/// `""` (the null sender) stays empty.
pub fn smtp_path(addr: &str) -> Result<String, AddressError> {
    if addr.is_empty() {
        return Ok(String::new());
    }
    let (local, domain) = addr.rsplit_once('@').ok_or(AddressError::NoDomain)?;
    if addr.chars().any(|c| c.is_control()) {
        return Err(AddressError::ControlCharacter);
    }
    // smtp-proto unquotes what it reads anywhere in the path: a domain is
    // written back as it came, so it must be one (a fuzzed
    // `<l"M>R"@e"@le.> NOTIFY=NEVER"org>` left `le.> NOTIFY=NEVERorg`).
    if !is_domain(domain) {
        return Err(AddressError::BadDomain);
    }
    if is_dot_atom(local) {
        return Ok(addr.to_string());
    }
    let mut out = String::with_capacity(addr.len() + 4);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"@");
    out.push_str(domain);
    Ok(out)
}

/// RFC 5321 Domain (labels of letters, digits and hyphens; U-labels with
/// SMTPUTF8; one trailing dot, as MTAs accept) or an IPv4 or IPv6 address
/// literal (a general literal routes nowhere: refused).
fn is_domain(domain: &str) -> bool {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return is_address_literal(literal);
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

/// `192.0.2.1` or `IPv6:2001:db8::1`; fuzzing found `[0]` written back
/// as it came, an address no next hop reads.
fn is_address_literal(literal: &str) -> bool {
    if literal.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    match literal.split_once(':') {
        Some((tag, ip)) if tag.eq_ignore_ascii_case("IPv6") => {
            ip.parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => false,
    }
}

/// RFC 5321 Dot-string: atoms of atext (UTF-8 allowed, RFC 6531) joined by
/// single dots.
fn is_dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// An address as the MTA compares it: quotes gone (smtp-proto already took
/// them off), lowercase, no trailing dot on the domain, and the extension
/// after a recipient delimiter removed (`nuovocaso+urgente@` is
/// `nuovocaso@`), like Postfix's `recipient_delimiter`. Each char of
/// `delimiters` is one delimiter.
pub fn canonical(addr: &str, delimiters: &str) -> String {
    let addr = addr
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return addr.to_lowercase();
    };
    let local = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or(local);
    let base = match local.find(|c: char| delimiters.contains(c)) {
        // Postfix leaves a local part that starts with the delimiter alone.
        Some(at) if at > 0 => &local[..at],
        _ => local,
    };
    let domain = domain.trim_end_matches('.');
    format!("{base}@{domain}").to_lowercase()
}

/// RFC 3461 xtext, for ENVID, ORCPT and XFORWARD values.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_parts_that_are_not_atoms_are_quoted() {
        assert_eq!(smtp_path("a.b@x.it").unwrap(), "a.b@x.it");
        assert_eq!(
            smtp_path("mario rossi@example.org").unwrap(),
            "\"mario rossi\"@example.org"
        );
        assert_eq!(
            smtp_path("x> NOTIFY=NEVER@example.org").unwrap(),
            "\"x> NOTIFY=NEVER\"@example.org"
        );
        assert_eq!(smtp_path("a\"b\\c@x").unwrap(), "\"a\\\"b\\\\c\"@x");
        assert_eq!(smtp_path("a..b@x").unwrap(), "\"a..b\"@x");
        assert_eq!(smtp_path("a@b@x").unwrap(), "\"a@b\"@x");
        assert_eq!(smtp_path("").unwrap(), "");
        assert_eq!(smtp_path("èlla@x.it").unwrap(), "èlla@x.it");
        assert_eq!(smtp_path("a\tb@x"), Err(AddressError::ControlCharacter));
        assert_eq!(smtp_path("nodomain"), Err(AddressError::NoDomain));
    }

    #[test]
    fn a_domain_that_is_not_one_is_refused_not_written_back() {
        // Found by fuzz/smtp_command: smtp-proto unquotes a whole path.
        for addr in [
            "x@le.> NOTIFY=NEVERorg",
            "x@a b",
            "x@a>b",
            "x@",
            "x@.",
            "x@a..b",
            "x@[1.2.3.4",
            "x@[a]b]",
            "x@[0]",
            "x@[300.1.1.1]",
            "x@[IPv6:zz]",
            "x@[tag:general]",
            "x@a\"b",
        ] {
            assert_eq!(smtp_path(addr), Err(AddressError::BadDomain), "{addr}");
        }
        for addr in [
            "x@example.org.",
            "x@[192.0.2.1]",
            "x@[IPv6:2001:db8::1]",
            "x@xn--caf-dma.example",
            "x@café.example",
            "x@a-b.c1",
        ] {
            assert!(smtp_path(addr).is_ok(), "{addr}");
        }
    }

    #[test]
    fn canonical_form_follows_the_mta() {
        assert_eq!(
            canonical("NuovoCaso+urgente@ProjectPP.it.", "+"),
            "nuovocaso@projectpp.it"
        );
        assert_eq!(
            canonical("\"nuovocaso\"@projectpp.it", "+"),
            "nuovocaso@projectpp.it"
        );
        assert_eq!(canonical("a-b+c@x", "+-"), "a@x");
        assert_eq!(canonical("+only@x", "+"), "+only@x");
        assert_eq!(canonical("a+b@x", ""), "a+b@x");
    }

    #[test]
    fn xtext_escapes_plus_equals_and_space() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
