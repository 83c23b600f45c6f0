//! SPF, DKIM and DMARC through `auth::verify`, against a DNS server this
//! test runs on 127.0.0.1 (never the internet).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_parser::decoders::base64::base64_decode;
use ticketgate::auth::{self, AuthVerdict, Authenticator};
use ticketgate::config::Config;
use ticketgate::envelope::ClientInfo;
use ticketgate::envelope::Envelope;
use ticketgate::reason::ReasonCode;

// The ed25519 example key of RFC 8463.
const ED25519_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

const GOOD_IP: &str = "192.0.2.10";
const BAD_IP: &str = "198.51.100.1";

// ---------------------------------------------------------------- DNS ----

#[path = "support/dns.rs"]
mod dns;
use dns::{Record, Zone, add, example_com, start_dns};

/// A server that reads nothing and answers nothing.
fn start_silent_dns() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

fn example_zone() -> Zone {
    let mut zone = example_com(GOOD_IP);
    let spf = format!("v=spf1 ip4:{GOOD_IP} -all");
    add(&mut zone, "mail.example.com", Record::Txt(spf));
    add(
        &mut zone,
        "mail.example.com",
        Record::A(GOOD_IP.parse().unwrap()),
    );
    let dkim = format!("v=DKIM1; k=ed25519; p={ED25519_PUBLIC}");
    add(&mut zone, "sel._domainkey.example.com", Record::Txt(dkim));
    zone
}

// ------------------------------------------------------------- helpers ----

fn config(dns: &str, nameserver: Option<SocketAddr>, timeout_secs: u64) -> Config {
    let nameservers = nameserver
        .map(|a| format!("nameservers = [\"{a}\"]\n"))
        .unwrap_or_default();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nnext_hop = \"127.0.0.1:25\"\ndata_dir = \"/nonexistent\"\nhostname = \"gate.test\"\n\
         [auth]\ndns = \"{dns}\"\ndns_timeout_secs = {timeout_secs}\n{nameservers}"
    );
    let config = Config::parse(Path::new("auth_dns.toml"), &text).unwrap();
    ticketgate::config::validate(Path::new("auth_dns.toml"), &config).unwrap();
    config
}

fn message() -> String {
    "From: Alice <alice@example.com>\r\n\
     To: support@desk.test\r\n\
     Subject: The printer is on fire\r\n\
     Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n\
     Message-ID: <fire-1@example.com>\r\n\
     \r\n\
     Hello,\r\n\
     the printer on the second floor is on fire.\r\n"
        .to_string()
}

fn signed(message: &str) -> String {
    let key = Ed25519Key::from_seed_and_public_key(
        &base64_decode(ED25519_SEED.as_bytes()).unwrap(),
        &base64_decode(ED25519_PUBLIC.as_bytes()).unwrap(),
    )
    .unwrap();
    let signature = DkimSigner::from_key(key)
        .domain("example.com")
        .selector("sel")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(message.as_bytes())
        .unwrap();
    format!("{}{message}", signature.to_header())
}

struct Case<'a> {
    ip: Option<&'a str>,
    helo: &'a str,
    from: &'a str,
}

async fn run(
    config: &Config,
    auth: Option<&Authenticator>,
    case: Case<'_>,
    message: &str,
) -> AuthVerdict {
    let client = ClientInfo {
        addr: case.ip.map(str::to_string),
        helo: Some(case.helo.to_string()),
        ..Default::default()
    };
    let rcpts = ["support@desk.test".to_string()];
    let envelope = Envelope {
        session: "auth-dns",
        client: &client,
        from: case.from,
        rcpts: &rcpts,
    };
    let verdict = auth::verify(config, auth, &envelope, message.as_bytes()).await;
    println!("{}", verdict.header_line("gate.test"));
    assert!(!verdict.results.contains(['\r', '\n']));
    verdict
}

fn setup() -> (Config, Authenticator) {
    let dns = start_dns(example_zone());
    let config = config("system", Some(dns), 5);
    let auth = Authenticator::new(&config.auth)
        .unwrap()
        .expect("dns = system");
    (config, auth)
}

// --------------------------------------------------------------- tests ----

#[tokio::test]
async fn signed_mail_with_aligned_from_passes_dmarc_by_dkim() {
    let (config, auth) = setup();
    // From an address SPF does not allow: DKIM alone carries DMARC.
    let case = Case {
        ip: Some(BAD_IP),
        helo: "mail.example.com",
        from: "alice@example.com",
    };
    let v = run(&config, Some(&auth), case, &signed(&message())).await;
    assert!(v.dmarc_pass, "{}", v.results);
    assert!(v.results.contains("dkim=pass"), "{}", v.results);
    assert!(v.results.contains("header.d=example.com"), "{}", v.results);
    assert!(v.results.contains("dmarc=pass"), "{}", v.results);
    assert!(v.results.contains("spf=fail"), "{}", v.results);
    assert!(v.results.contains("policy.dmarc=reject"), "{}", v.results);
    assert!(v.reasons.contains(&ReasonCode::AuthDmarcPass));
    assert!(v.reasons.contains(&ReasonCode::AuthDkimPass));
    assert!(v.reasons.contains(&ReasonCode::AuthSpfFail));
    let header = v.header_line("gate.test");
    assert!(
        header.starts_with("Authentication-Results: gate.test; spf=fail"),
        "{header}"
    );
}

#[tokio::test]
async fn tampered_body_fails_dkim_and_dmarc_unless_spf_aligns() {
    let (config, auth) = setup();
    let tampered = signed(&message()).replace("on fire", "fine");

    let case = Case {
        ip: Some(BAD_IP),
        helo: "mail.example.com",
        from: "alice@example.com",
    };
    let v = run(&config, Some(&auth), case, &tampered).await;
    assert!(!v.dmarc_pass, "{}", v.results);
    assert!(v.results.contains("dkim=fail"), "{}", v.results);
    assert!(v.results.contains("dmarc=fail"), "{}", v.results);
    assert!(v.reasons.contains(&ReasonCode::AuthDmarcFail));
    assert!(v.reasons.contains(&ReasonCode::AuthDkimFail));
    assert!(!v.reasons.contains(&ReasonCode::AuthDmarcPass));

    // Same message from an address the sender domain's SPF allows.
    let case = Case {
        ip: Some(GOOD_IP),
        helo: "mail.example.com",
        from: "alice@example.com",
    };
    let v = run(&config, Some(&auth), case, &tampered).await;
    assert!(v.results.contains("dkim=fail"), "{}", v.results);
    assert!(v.results.contains("spf=pass"), "{}", v.results);
    assert!(v.results.contains("dmarc=pass"), "{}", v.results);
    assert!(v.dmarc_pass);
}

#[tokio::test]
async fn unsigned_mail_from_an_allowed_address_passes_by_aligned_spf() {
    let (config, auth) = setup();
    let case = Case {
        ip: Some(GOOD_IP),
        helo: "mail.example.com",
        from: "bob@example.com",
    };
    let v = run(&config, Some(&auth), case, &message()).await;
    assert!(v.dmarc_pass, "{}", v.results);
    assert!(v.results.contains("spf=pass"), "{}", v.results);
    assert!(
        v.results.contains("smtp.mailfrom=bob@example.com"),
        "{}",
        v.results
    );
    assert!(v.results.contains("dkim=none"), "{}", v.results);
    assert!(v.results.contains("dmarc=pass"), "{}", v.results);
    assert!(v.reasons.contains(&ReasonCode::AuthSpfPass));
    assert!(v.reasons.contains(&ReasonCode::AuthDmarcPass));

    // XFORWARD spelling of an IPv4-mapped address.
    let case = Case {
        ip: Some("IPv6:::ffff:192.0.2.10"),
        helo: "mail.example.com",
        from: "bob@example.com",
    };
    let v = run(&config, Some(&auth), case, &message()).await;
    assert!(v.dmarc_pass, "{}", v.results);
}

#[tokio::test]
async fn unsigned_mail_from_elsewhere_fails_dmarc() {
    let (config, auth) = setup();
    let case = Case {
        ip: Some(BAD_IP),
        helo: "mail.example.com",
        from: "bob@example.com",
    };
    let v = run(&config, Some(&auth), case, &message()).await;
    assert!(!v.dmarc_pass, "{}", v.results);
    assert!(v.results.contains("spf=fail"), "{}", v.results);
    assert!(v.results.contains("dmarc=fail"), "{}", v.results);
    assert!(v.reasons.contains(&ReasonCode::AuthDmarcFail));
    assert!(v.reasons.contains(&ReasonCode::AuthSpfFail));

    // Without a client address SPF cannot be checked at all.
    let case = Case {
        ip: None,
        helo: "mail.example.com",
        from: "bob@example.com",
    };
    let v = run(&config, Some(&auth), case, &message()).await;
    assert!(!v.dmarc_pass, "{}", v.results);
    assert!(v.results.starts_with("spf=none"), "{}", v.results);
    assert!(v.results.contains("dmarc=fail"), "{}", v.results);

    // A From domain without any DMARC record: none, not fail.
    let other = message().replace("alice@example.com", "alice@elsewhere.test");
    let case = Case {
        ip: Some(BAD_IP),
        helo: "mail.example.com",
        from: "bob@elsewhere.test",
    };
    let v = run(&config, Some(&auth), case, &other).await;
    assert!(!v.dmarc_pass);
    assert!(v.results.contains("dmarc=none"), "{}", v.results);
    assert!(v.reasons.contains(&ReasonCode::AuthNone));
}

#[tokio::test]
async fn null_sender_is_checked_as_postmaster_at_helo() {
    let (config, auth) = setup();
    let case = Case {
        ip: Some(GOOD_IP),
        helo: "mail.example.com",
        from: "",
    };
    let v = run(&config, Some(&auth), case, &message()).await;
    assert!(v.results.contains("spf=pass"), "{}", v.results);
    assert!(
        v.results.contains("postmaster@mail.example.com"),
        "{}",
        v.results
    );
    assert!(v.results.contains("smtp.mailfrom=<>"), "{}", v.results);
}

#[tokio::test]
async fn silent_dns_gives_a_verdict_within_the_timeout() {
    let (_socket, dns) = start_silent_dns();
    let config = config("system", Some(dns), 1);
    let auth = Authenticator::new(&config.auth).unwrap().unwrap();
    let started = Instant::now();
    let case = Case {
        ip: Some(GOOD_IP),
        helo: "mail.example.com",
        from: "alice@example.com",
    };
    let v = run(&config, Some(&auth), case, &signed(&message())).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(2500), "took {elapsed:?}");
    assert!(!v.dmarc_pass);
    assert!(!v.reasons.contains(&ReasonCode::AuthDmarcPass));
    assert!(
        v.reasons.contains(&ReasonCode::AuthTempError),
        "{:?}",
        v.reasons
    );
    assert!(v.results.contains("spf=temperror"), "{}", v.results);
    assert!(v.results.contains("dkim=temperror"), "{}", v.results);
    assert!(v.results.contains("dmarc=temperror"), "{}", v.results);
}

#[tokio::test]
async fn dns_off_verifies_nothing() {
    let config = config("off", None, 5);
    let auth = Authenticator::new(&config.auth).unwrap();
    assert!(auth.is_none());
    let case = Case {
        ip: Some(GOOD_IP),
        helo: "mail.example.com",
        from: "alice@example.com",
    };
    let v = run(&config, auth.as_ref(), case, &signed(&message())).await;
    assert!(!v.dmarc_pass);
    assert_eq!(v.reasons, vec![ReasonCode::AuthNone]);
    assert_eq!(v.results, "none (dns lookups disabled)");
}
