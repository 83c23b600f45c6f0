//! Issue 16, fifth case: machine-made mail never gets an automatic reply,
//! even without `Auto-Submitted`. The real reports that the mail-auth crate
//! ships (tests/fixtures/mail-auth/, see its README) go through the server
//! to nuovocaso@ with the shipped config: each is ticketed and forwarded,
//! says why it was not answered, and the relay receives nothing.

mod common;

use std::time::Duration;

use common::*;
use ticketgate::reason::ReasonCode;

const NUOVOCASO: &str = "nuovocaso@projectpp.it";

/// The message as SMTP carries it: the fixtures have LF line ends, and two
/// of them no line end after the last line.
fn fixture(name: &str) -> Vec<u8> {
    let raw = std::fs::read(repo_path(&format!("tests/fixtures/mail-auth/{name}"))).unwrap();
    let mut text = String::from_utf8(raw).unwrap().replace("\r\n", "\n");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.replace('\n', "\r\n").into_bytes()
}

fn samples() -> Vec<(&'static str, ReasonCode)> {
    let report = ReasonCode::ReplySuppressedReport;
    let dmarc = ReasonCode::ReplySuppressedDmarcReport;
    vec![
        ("arf/001.eml", report),
        ("arf/002.eml", report),
        ("arf/003.eml", report),
        ("arf/004.eml", report),
        ("arf/005.eml", report),
        ("dmarc-feedback/100.eml", dmarc),
        ("dmarc-feedback/101.eml", dmarc),
        (
            "dmarc-feedback/102.eml",
            ReasonCode::ReplySuppressedAutoSubmitted,
        ),
        ("dmarc-feedback/103.eml", dmarc),
        ("dmarc-feedback/104.eml", dmarc),
        ("tlsrpt/rpt01.eml", report),
        ("tlsrpt/rpt02.eml", report),
    ]
}

async fn send(addr: std::net::SocketAddr, envelope_from: &str, data: &[u8]) -> String {
    let mut c = Client::greeted(addr).await;
    let reply = c.send_mail(envelope_from, &[NUOVOCASO], &wire(data)).await;
    c.cmd("QUIT", 221).await;
    reply
}

/// The envelope sender is an ordinary address, so what is recognised is
/// the message itself.
#[tokio::test]
async fn the_twelve_mail_auth_reports_get_no_reply() {
    let (dg, hop, relay) = desk_gate_with_sinks(|_| {}).await;
    for (i, (name, why)) in samples().into_iter().enumerate() {
        let data = fixture(name);
        let reply = send(dg.gate.addr, "reports@sender.example", &data).await;
        assert!(reply.starts_with("250"), "{name}: {reply}");
        let fwd = &hop.messages()[i];
        assert!(fwd.data.ends_with(&data), "{name}: forwarded intact");
        let id = header(&fwd.data, "X-Ticketgate-Ticket").expect("ticketed");
        let t = dg.desks.store().get(&id).await.unwrap().unwrap();
        assert!(t.replies.is_empty(), "{name}: {:?}", t.replies);
        assert!(t.reasons.contains(&why), "{name}: {:?}", t.reasons);
    }
    assert_eq!(hop.messages().len(), 12);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(relay.messages().is_empty(), "{:?}", relay.messages());
}

/// Robot senders by address, whatever the message looks like; an
/// ordinary sender next to them is answered, so the rig does reply.
#[tokio::test]
async fn robot_senders_get_no_reply_and_people_do() {
    let (dg, hop, relay) = desk_gate_with_sinks(|_| {}).await;
    let body = "La stampa delle fatture si blocca con errore 55 dopo il primo documento.";
    let cases = [
        ("noreply@banca.example", "bounces+77@banca.example"),
        (
            "No-Reply <no-reply@fornitore.example>",
            "no-reply@fornitore.example",
        ),
        ("MAILER-DAEMON@mx.example", "relay@mx.example"),
        (
            "Dmarc Reports <dmarc-reports@isp.example>",
            "reports@isp.example",
        ),
        (
            "Mario Rossi <mario@cliente.example>",
            "mario@cliente.example",
        ),
    ];
    for (i, (from, envelope)) in cases.iter().enumerate() {
        let msg = format!(
            "From: {from}\r\nTo: {NUOVOCASO}\r\nSubject: Stampa fatture bloccata\r\nMessage-ID: <robot-{i}@x.example>\r\n\r\n{body}\r\n"
        );
        let reply = send(dg.gate.addr, envelope, msg.as_bytes()).await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    let tickets = dg.desks.store().list().await.unwrap();
    assert_eq!(tickets.len(), 5);
    assert_eq!(hop.messages().len(), 5);
    for t in &tickets {
        let person = t.requester == "mario@cliente.example";
        assert_eq!(t.replies.len(), usize::from(person), "{t:?}");
        assert_eq!(
            t.reasons.contains(&ReasonCode::ReplySuppressedRobotSender),
            !person,
            "{}: {:?}",
            t.requester,
            t.reasons
        );
    }
    assert!(eventually(|| relay.messages().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let sent = relay.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rcpts, vec!["mario@cliente.example"]);
}
