//! SPF, DKIM and DMARC through `auth::verify`, against a DNS server this
//! test runs on 127.0.0.1 (never the internet).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_parser::decoders::base64::base64_decode;
use ticketgate::auth::{self, AuthVerdict, Authenticator};
use ticketgate::config::Config;
use ticketgate::forward::ClientInfo;
use ticketgate::pipeline::Envelope;
use ticketgate::reason::ReasonCode;

// The ed25519 example key of RFC 8463.
const ED25519_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

const GOOD_IP: &str = "192.0.2.10";
const BAD_IP: &str = "198.51.100.1";

// ---------------------------------------------------------------- DNS ----

enum Record {
    A(Ipv4Addr),
    Txt(String),
}

/// A tiny authoritative UDP DNS server: A and TXT answers from a map,
/// NXDOMAIN for names it does not know. Runs on a thread for the rest of
/// the test process.
fn start_dns(records: HashMap<String, Vec<Record>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = answer(&records, &buf[..len]) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    addr
}

/// A server that reads nothing and answers nothing.
fn start_silent_dns() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

const TYPE_A: u16 = 1;
const TYPE_TXT: u16 = 16;

fn answer(records: &HashMap<String, Vec<Record>>, query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) == 0 {
        return None;
    }
    // The question: labels, then type and class.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in questions
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    if query.len() < question_end {
        return None;
    }
    let name = labels.join(".");

    let known = records.get(&name);
    let rdatas: Vec<Vec<u8>> = known
        .into_iter()
        .flatten()
        .filter_map(|r| match (r, qtype) {
            (Record::A(ip), TYPE_A) => Some(ip.octets().to_vec()),
            (Record::Txt(text), TYPE_TXT) => {
                let mut rdata = Vec::new();
                for chunk in text.as_bytes().chunks(255) {
                    rdata.push(chunk.len() as u8);
                    rdata.extend_from_slice(chunk);
                }
                Some(rdata)
            }
            _ => None,
        })
        .collect();
    let rcode: u16 = if known.is_some() { 0 } else { 3 };

    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[0..2]); // id
    let rd = u16::from_be_bytes([query[2], query[3]]) & 0x0100;
    let flags: u16 = 0x8000 | 0x0400 | rd | 0x0080 | rcode; // QR AA RD RA
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes()); // qdcount
    reply.extend_from_slice(&(rdatas.len() as u16).to_be_bytes());
    reply.extend_from_slice(&0u16.to_be_bytes()); // nscount
    reply.extend_from_slice(&0u16.to_be_bytes()); // arcount
    reply.extend_from_slice(&query[12..question_end]);
    for rdata in rdatas {
        reply.extend_from_slice(&[0xc0, 0x0c]); // name: the question's
        reply.extend_from_slice(&qtype.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes()); // IN
        reply.extend_from_slice(&300u32.to_be_bytes());
        reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        reply.extend_from_slice(&rdata);
    }
    Some(reply)
}

fn example_zone() -> HashMap<String, Vec<Record>> {
    let mut zone: HashMap<String, Vec<Record>> = HashMap::new();
    let mut add = |name: &str, r: Record| zone.entry(name.to_string()).or_default().push(r);
    add(
        "example.com",
        Record::Txt(format!("v=spf1 ip4:{GOOD_IP} -all")),
    );
    add("example.com", Record::A(Ipv4Addr::new(192, 0, 2, 80)));
    add(
        "mail.example.com",
        Record::Txt(format!("v=spf1 ip4:{GOOD_IP} -all")),
    );
    add("mail.example.com", Record::A(GOOD_IP.parse().unwrap()));
    add(
        "sel._domainkey.example.com",
        Record::Txt(format!("v=DKIM1; k=ed25519; p={ED25519_PUBLIC}")),
    );
    add(
        "_dmarc.example.com",
        Record::Txt("v=DMARC1; p=reject".into()),
    );
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
