//! Authentication of the sender: SPF (of the envelope sender, for the real
//! client address), DKIM (of the message) and DMARC (of the From domain),
//! with mail-auth.
//!
//! With `[auth] dns = "off"` (the default, and what most tests use) nothing
//! can be verified, so nothing authenticates: replies go to the envelope
//! sender and mail commands (close, reopen) are accepted only in replies to
//! our own signed Message-IDs. With `dns = "system"` an [`Authenticator`]
//! (one resolver, with its cache, for the whole process) asks the resolvers
//! of /etc/resolv.conf, or those of `auth.nameservers`.
//!
//! All the DNS work for one message is bounded by `auth.dns_timeout_secs`;
//! whatever has not finished by then is a `temperror`. A message that
//! authenticates nothing (or cannot be parsed) is never an error here: the
//! verdict just says so.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    DnsError, Error, MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::time::Instant;

use crate::config::{AuthConfig, Config, DnsMode};
use crate::envelope::Envelope;
use crate::reason::ReasonCode;

#[derive(Debug, Clone, Default)]
pub struct AuthVerdict {
    /// DMARC passed for the From domain.
    pub dmarc_pass: bool,
    /// SPF said the client may not send for the envelope sender's domain
    /// (`fail` or `softfail`); false when nothing was checked.
    pub spf_fail: bool,
    pub reasons: Vec<ReasonCode>,
    /// The method results of RFC 8601, e.g. `none` or
    /// `spf=pass ...; dkim=pass ...; dmarc=pass ...`, on one line.
    pub results: String,
}

impl AuthVerdict {
    pub fn header_line(&self, authserv_id: &str) -> String {
        format!("Authentication-Results: {}", self.header_value(authserv_id))
    }

    /// The field body of our Authentication-Results header.
    pub fn header_value(&self, authserv_id: &str) -> String {
        format!("{authserv_id}; {}", self.results)
    }

    /// What `verify` says with `dns = "off"`: nothing checked.
    pub fn unchecked() -> AuthVerdict {
        AuthVerdict::none("none (dns lookups disabled)")
    }

    fn none(results: &str) -> AuthVerdict {
        AuthVerdict {
            dmarc_pass: false,
            spf_fail: false,
            reasons: vec![ReasonCode::AuthNone],
            results: results.into(),
        }
    }

    fn temperror(why: &str) -> AuthVerdict {
        AuthVerdict {
            dmarc_pass: false,
            spf_fail: false,
            reasons: vec![ReasonCode::AuthTempError],
            results: format!(
                "spf=temperror ({why}); dkim=temperror ({why}); dmarc=temperror ({why})"
            ),
        }
    }
}

/// The DNS side of verification, built once from `[auth]` and shared by all
/// sessions (the resolver caches answers).
#[derive(Clone)]
pub struct Authenticator {
    resolver: Arc<MessageAuthenticator>,
    timeout: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `None` for `dns = "off"`. Needs no runtime; lookups run on the
    /// runtime of whoever calls [`verify`].
    pub fn new(config: &AuthConfig) -> Result<Option<Authenticator>, String> {
        if config.dns == DnsMode::Off {
            return Ok(None);
        }
        let (resolvers, mut options) = if config.nameservers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                format!("cannot read the system resolver configuration (/etc/resolv.conf): {e}")
            })?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        let timeout = config.dns_timeout();
        // One query may be retried within the overall bound.
        options.timeout = (timeout / 2).max(Duration::from_millis(500)).min(timeout);
        options.attempts = 2;
        let resolver = MessageAuthenticator::new(resolvers, options)
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Some(Authenticator {
            resolver: Arc::new(resolver),
            timeout,
        }))
    }

    /// Bound on the DNS work for one message.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Checks SPF, DKIM and DMARC. `authenticator` is `None` with `dns = "off"`.
/// Returns within the authenticator's timeout (plus a little for the
/// hashing), whatever the DNS does; never fails.
pub async fn verify(
    config: &Config,
    authenticator: Option<&Authenticator>,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> AuthVerdict {
    let Some(auth) = authenticator else {
        return match config.auth.dns {
            DnsMode::Off => AuthVerdict::unchecked(),
            DnsMode::System => AuthVerdict::none("none (dns resolver unavailable)"),
        };
    };
    let input = Input {
        hostname: config.server.hostname.clone(),
        ip: envelope.client.addr.as_deref().and_then(client_ip),
        helo: envelope
            .client
            .helo
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or("unknown")
            .to_string(),
        from: envelope.from.to_string(),
        message: message.to_vec(),
    };
    let deadline = Instant::now() + auth.timeout;
    // Own task: a panic in the verification code costs a temperror, not
    // the session; the guard stops it if our caller goes away.
    let mut task = AbortOnDrop(tokio::spawn(check(auth.resolver.clone(), input, deadline)));
    let verdict = match tokio::time::timeout_at(deadline + Duration::from_secs(1), &mut task.0)
        .await
    {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(e)) => {
            tracing::error!(session = envelope.session, error = %e, "authentication checks failed");
            AuthVerdict::temperror("internal error")
        }
        Err(_) => AuthVerdict::temperror("timeout"),
    };
    tracing::debug!(session = envelope.session, results = %verdict.results, "authentication");
    verdict
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Input {
    hostname: String,
    ip: Option<IpAddr>,
    helo: String,
    /// Envelope sender; empty for the null sender.
    from: String,
    message: Vec<u8>,
}

async fn check(
    resolver: Arc<MessageAuthenticator>,
    input: Input,
    deadline: Instant,
) -> AuthVerdict {
    // RFC 7208 2.4: for the null sender, check postmaster@HELO.
    let sender = if input.from.is_empty() {
        format!("postmaster@{}", input.helo)
    } else {
        input.from.clone()
    };
    let mail_from_domain = sender
        .rsplit_once('@')
        .map_or(input.helo.as_str(), |(_, d)| d)
        .to_ascii_lowercase();
    let parsed = AuthenticatedMessage::parse(&input.message);

    let (spf, dkim) = tokio::join!(
        verify_spf(&resolver, &input, &sender, &mail_from_domain, deadline),
        verify_dkim(&resolver, parsed.as_ref(), deadline),
    );
    let header_from = parsed
        .as_ref()
        .and_then(|m| m.from.first().cloned())
        .unwrap_or_default();
    let dmarc = match &parsed {
        None => DmarcOutput::default(),
        Some(msg) => {
            let params = DmarcParameters::new(msg, &dkim, &mail_from_domain, &spf);
            verify_dmarc(&resolver, params, &header_from, deadline).await
        }
    };

    let results = method_results(
        &input.hostname,
        input.ip,
        &input.from,
        &input.helo,
        &spf,
        &dkim,
        &header_from,
        &dmarc,
    );
    let dmarc_status = dmarc_status(&dmarc);
    AuthVerdict {
        dmarc_pass: dmarc_status == Status::Pass,
        spf_fail: matches!(spf.result(), SpfResult::Fail | SpfResult::SoftFail),
        reasons: reasons(dmarc_status, &spf, &dkim),
        results,
    }
}

/// SPF of `sender` for the client address; without an address there is
/// nothing to check.
async fn verify_spf(
    resolver: &MessageAuthenticator,
    input: &Input,
    sender: &str,
    mail_from_domain: &str,
    deadline: Instant,
) -> SpfOutput {
    let Some(ip) = input.ip else {
        return SpfOutput::new(mail_from_domain.to_string()).with_result(SpfResult::None);
    };
    let params = SpfParameters::verify_mail_from(ip, &input.helo, &input.hostname, sender);
    match tokio::time::timeout_at(deadline, resolver.verify_spf(params)).await {
        Ok(output) => output,
        Err(_) => SpfOutput::new(mail_from_domain.to_string()).with_result(SpfResult::TempError),
    }
}

/// Every DKIM signature of the message; on timeout each one is a
/// temperror, so the results still name them.
async fn verify_dkim<'x>(
    resolver: &MessageAuthenticator,
    parsed: Option<&'x AuthenticatedMessage<'x>>,
    deadline: Instant,
) -> Vec<DkimOutput<'x>> {
    let Some(msg) = parsed else {
        return Vec::new();
    };
    match tokio::time::timeout_at(deadline, resolver.verify_dkim(msg)).await {
        Ok(outputs) => outputs
            .into_iter()
            .map(|o| body_hash_fails(msg, o))
            .collect(),
        Err(_) => msg
            .dkim_headers
            .iter()
            .map(|h| DkimOutput::temp_err(timeout_error()).with_signature(&h.header))
            .collect(),
    }
}

/// DMARC of the From domain; on timeout a temperror for that domain.
async fn verify_dmarc(
    resolver: &MessageAuthenticator,
    params: DmarcParameters<'_>,
    header_from: &str,
    deadline: Instant,
) -> DmarcOutput {
    let dmarc = match tokio::time::timeout_at(deadline, resolver.verify_dmarc(params)).await {
        Ok(output) => output,
        Err(_) => match header_from.rsplit_once('@') {
            Some((_, domain)) => DmarcOutput::new(domain.to_ascii_lowercase())
                .with_spf_result(DmarcResult::TempError(timeout_error()))
                .with_dkim_result(DmarcResult::TempError(timeout_error())),
            None => DmarcOutput::default(),
        },
    };
    // mail-auth leaves both results at `none` when a policy exists but no
    // identifier passed; RFC 7489 calls that `fail`.
    if dmarc.dmarc_record().is_some()
        && *dmarc.spf_result() == DmarcResult::None
        && *dmarc.dkim_result() == DmarcResult::None
    {
        return dmarc.with_spf_result(DmarcResult::Fail(Error::NotAligned));
    }
    dmarc
}

/// The reason codes of the three checks, each once, DMARC's first.
fn reasons(dmarc: Status, spf: &SpfOutput, dkim: &[DkimOutput<'_>]) -> Vec<ReasonCode> {
    let mut reasons = Vec::new();
    let mut add = |r: ReasonCode| {
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    };
    add(match dmarc {
        Status::Pass => ReasonCode::AuthDmarcPass,
        Status::Fail => ReasonCode::AuthDmarcFail,
        Status::TempError => ReasonCode::AuthTempError,
        Status::None => ReasonCode::AuthNone,
    });
    match spf.result() {
        SpfResult::Pass => add(ReasonCode::AuthSpfPass),
        SpfResult::Fail | SpfResult::SoftFail => add(ReasonCode::AuthSpfFail),
        SpfResult::TempError => add(ReasonCode::AuthTempError),
        SpfResult::Neutral | SpfResult::PermError | SpfResult::None => {}
    }
    if dkim.iter().any(|d| *d.result() == DkimResult::Pass) {
        add(ReasonCode::AuthDkimPass);
    } else if dkim
        .iter()
        .any(|d| matches!(d.result(), DkimResult::Fail(_)))
    {
        add(ReasonCode::AuthDkimFail);
    }
    if dkim
        .iter()
        .any(|d| matches!(d.result(), DkimResult::TempError(_)))
    {
        add(ReasonCode::AuthTempError);
    }
    reasons
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pass,
    Fail,
    TempError,
    None,
}

/// The DMARC result as the header states it (mail-auth's rule): pass when
/// an aligned SPF or DKIM identifier passed.
fn dmarc_status(dmarc: &DmarcOutput) -> Status {
    let status = |r: &DmarcResult| match r {
        DmarcResult::Pass => Status::Pass,
        DmarcResult::Fail(_) | DmarcResult::PermError(_) => Status::Fail,
        DmarcResult::TempError(_) => Status::TempError,
        DmarcResult::None => Status::None,
    };
    let (spf, dkim) = (status(dmarc.spf_result()), status(dmarc.dkim_result()));
    if spf == Status::Pass || dkim == Status::Pass {
        Status::Pass
    } else if spf != Status::None {
        spf
    } else {
        dkim
    }
}

/// mail-auth calls a body that does not match its signature's hash
/// `neutral`; RFC 6376 6.3 makes that a PERMFAIL, `fail` in RFC 8601.
fn body_hash_fails<'x>(
    msg: &'x AuthenticatedMessage<'x>,
    output: DkimOutput<'x>,
) -> DkimOutput<'x> {
    let body_hash = Error::Dkim(DkimError::FailedBodyHashMatch);
    if *output.result() != DkimResult::Neutral(body_hash.clone()) {
        return output;
    }
    let signed = output.signature().and_then(|sig| {
        msg.dkim_headers
            .iter()
            .find(|h| std::ptr::eq(&h.header, sig))
    });
    match signed {
        Some(h) => DkimOutput::fail(body_hash).with_signature(&h.header),
        None => output,
    }
}

fn timeout_error() -> Error {
    Error::Dns(DnsError::Resolver("timeout".into()))
}

/// `spf=...; dkim=...; dmarc=...` on one line, written by mail-auth's
/// `AuthenticationResults` where it can.
#[allow(clippy::too_many_arguments)]
fn method_results(
    hostname: &str,
    ip: Option<IpAddr>,
    from: &str,
    helo: &str,
    spf: &SpfOutput,
    dkim: &[DkimOutput<'_>],
    header_from: &str,
    dmarc: &DmarcOutput,
) -> String {
    let mut parts = Vec::with_capacity(3);
    parts.push(match ip {
        Some(ip) => methods_of(
            hostname,
            AuthenticationResults::new(hostname).with_spf_mailfrom_result(spf, ip, from, helo),
        ),
        None => {
            let mut s = format!(
                "spf=none ({}: client address unknown) smtp.mailfrom=",
                pvalue_text(hostname)
            );
            if from.is_empty() {
                s.push_str("<>");
            } else {
                push_pvalue(&mut s, from);
            }
            s
        }
    });
    parts.push(if dkim.is_empty() {
        "dkim=none".to_string()
    } else {
        methods_of(
            hostname,
            AuthenticationResults::new(hostname).with_dkim_results(dkim, header_from),
        )
    });
    parts.push(methods_of(
        hostname,
        AuthenticationResults::new(hostname).with_dmarc_result(dmarc),
    ));
    parts.join("; ")
}

/// The method results of a mail-auth header (`host;\r\n\tspf=...`),
/// unfolded.
fn methods_of(hostname: &str, results: AuthenticationResults<'_>) -> String {
    let text = results.to_string();
    let text = text.strip_prefix(hostname).unwrap_or(&text);
    let unfolded: String = text
        .replace(";\r\n\t", "; ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    unfolded
        .trim_start_matches([';', ' '])
        .trim_end()
        .to_string()
}

/// A value safe inside a comment: no parentheses, backslashes or controls.
fn pvalue_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || "()\\".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// An RFC 8601 pvalue: bare when it is a token (or local@domain of
/// tokens), a quoted string otherwise.
fn push_pvalue(out: &mut String, value: &str) {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let bare = !value.is_empty()
        && value.split('@').count() <= 2
        && value.chars().all(|c| atext(c) || c == '@');
    if bare {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                let _ = write!(out, "\\{c}");
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The client address as Postfix passes it (XFORWARD `ADDR`: `192.0.2.1`,
/// `IPv6:2001:db8::1`, or `[UNAVAILABLE]`).
fn client_ip(addr: &str) -> Option<IpAddr> {
    let addr = addr.trim();
    let addr = match addr.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ipv6:") => &addr[5..],
        _ => addr,
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    addr.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{ClientInfo, canonical_address};

    fn config(dns: &str, extra: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:25\"\ndata_dir = \"/nonexistent\"\nhostname = \"gate.test\"\n[auth]\ndns = \"{dns}\"\n{extra}"
        );
        Config::parse(std::path::Path::new("test.toml"), &text).unwrap()
    }

    fn envelope<'a>(client: &'a ClientInfo, from: &'a str) -> Envelope<'a> {
        Envelope {
            session: "t",
            client,
            from,
            rcpts: &[],
        }
    }

    #[test]
    fn addresses_compare_without_case_and_batv_tag() {
        let c = canonical_address;
        assert_eq!(c(" <Mario@Cliente.Example> "), "mario@cliente.example");
        assert_eq!(
            c("prvs=1234abcdef=mario@cliente.example"),
            "mario@cliente.example"
        );
        assert_eq!(
            c("PRVS=0123ABCDEF=Mario@cliente.example"),
            "mario@cliente.example"
        );
        // Not a BATV tag: kept as written.
        assert_eq!(c("prvs=12=mario@x.example"), "prvs=12=mario@x.example");
        assert_eq!(
            c("prvs=1234abcdef=@x.example"),
            "prvs=1234abcdef=@x.example"
        );
        assert_eq!(
            c("prvs=1234abcdeg=a@x.example"),
            "prvs=1234abcdeg=a@x.example"
        );
        assert_eq!(c(""), "");
        assert_eq!(c("no-at-sign"), "no-at-sign");
    }

    #[test]
    fn client_addresses_as_postfix_sends_them() {
        assert_eq!(client_ip("192.0.2.10"), Some("192.0.2.10".parse().unwrap()));
        assert_eq!(
            client_ip("IPv6:2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            client_ip("ipv6:2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            client_ip("::ffff:192.0.2.10"),
            Some("192.0.2.10".parse().unwrap())
        );
        assert_eq!(
            client_ip("[192.0.2.10]"),
            Some("192.0.2.10".parse().unwrap())
        );
        assert_eq!(client_ip("[UNAVAILABLE]"), None);
        assert_eq!(client_ip(""), None);
        assert_eq!(client_ip("ipv6"), None);
        assert_eq!(client_ip("é"), None);
    }

    #[test]
    fn pvalues_are_quoted_when_needed() {
        let p = |v: &str| {
            let mut s = String::new();
            push_pvalue(&mut s, v);
            s
        };
        assert_eq!(p("a.b@example.com"), "a.b@example.com");
        assert_eq!(p("a b@example.com"), "\"a b@example.com\"");
        assert_eq!(p("a\"b\\@x"), "\"a\\\"b\\\\@x\"");
        assert_eq!(p("a@b@c"), "\"a@b@c\"");
        assert_eq!(p("x\r\ny"), "\"x  y\"");
    }

    #[test]
    fn dmarc_without_a_record_is_none_and_unfolded() {
        let dmarc = DmarcOutput::new("example.com".into());
        let text = methods_of(
            "gate.test",
            AuthenticationResults::new("gate.test").with_dmarc_result(&dmarc),
        );
        assert_eq!(text, "dmarc=none header.from=example.com policy.dmarc=none");
        assert_eq!(dmarc_status(&dmarc), Status::None);
        let failed = dmarc.with_spf_result(DmarcResult::Fail(Error::NotAligned));
        assert_eq!(dmarc_status(&failed), Status::Fail);
        let passed = failed.with_dkim_result(DmarcResult::Pass);
        assert_eq!(dmarc_status(&passed), Status::Pass);
    }

    #[tokio::test]
    async fn dns_off_authenticates_nothing() {
        let config = config("off", "");
        assert!(Authenticator::new(&config.auth).unwrap().is_none());
        let client = ClientInfo::default();
        let v = verify(
            &config,
            None,
            &envelope(&client, "a@example.com"),
            b"From: a@example.com\r\n\r\nx",
        )
        .await;
        assert!(!v.dmarc_pass);
        assert_eq!(v.reasons, vec![ReasonCode::AuthNone]);
        assert_eq!(v.results, "none (dns lookups disabled)");
        assert_eq!(
            v.header_line("gate.test"),
            "Authentication-Results: gate.test; none (dns lookups disabled)"
        );
    }

    #[test]
    fn nameservers_and_timeout_are_read() {
        let config = config(
            "system",
            "nameservers = [\"127.0.0.1:5353\"]\ndns_timeout_secs = 3",
        );
        assert_eq!(
            config.auth.nameservers,
            vec!["127.0.0.1:5353".parse().unwrap()]
        );
        assert_eq!(config.auth.dns_timeout(), Duration::from_secs(3));
        let auth = Authenticator::new(&config.auth)
            .unwrap()
            .expect("dns = system");
        assert_eq!(auth.timeout(), Duration::from_secs(3));
    }

    /// Whatever the bytes, a verdict and no panic. The resolver points at a
    /// closed local port: every lookup fails at once.
    #[tokio::test]
    async fn any_bytes_give_a_verdict() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = config(
            "system",
            &format!("nameservers = [\"127.0.0.1:{port}\"]\ndns_timeout_secs = 1"),
        );
        let auth = Authenticator::new(&config.auth).unwrap().unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\r\n\r\n".to_vec(),
            b"From:\r\n\r\n".to_vec(),
            b"From: <@>\r\nDKIM-Signature: v=1; a=rsa-sha256; d=; s=; b=; bh=\r\n\r\n".to_vec(),
            b"DKIM-Signature: \xff\xfe\r\nFrom: a@b\r\n".to_vec(),
        ];
        for len in [1usize, 17, 300, 4096] {
            let bytes = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            inputs.push(bytes);
        }
        let clients = [
            ClientInfo::default(),
            ClientInfo {
                addr: Some("192.0.2.1".into()),
                helo: Some("\u{0}(x)".into()),
                ..Default::default()
            },
        ];
        for input in &inputs {
            for client in &clients {
                for from in ["", "a@b", "\"weird\" <x>@@"] {
                    let started = std::time::Instant::now();
                    let v = verify(&config, Some(&auth), &envelope(client, from), input).await;
                    assert!(!v.dmarc_pass);
                    assert!(!v.reasons.is_empty());
                    assert!(!v.results.contains(['\r', '\n']), "{}", v.results);
                    assert!(started.elapsed() < Duration::from_secs(3));
                }
            }
        }
    }
}
