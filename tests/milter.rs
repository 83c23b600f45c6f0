//! Milter mode in process: an MTA written here (its packets built by hand,
//! not with ticketgate's codec) talks to the milter listener of a gate with
//! the shipped helpdesks and a real store. Asserts what the MTA is told to
//! do with the message, what the store holds and what replies go out.
//! Real Postfix in front of the milter: tests/postfix/run.sh (mode C).

mod common;

use std::time::Duration;

use common::*;
use ticketgate::control::{Op, Request, Response as ControlResponse};
use ticketgate::ticket::{Status, Ticket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What Postfix 3.7 offers by default: protocol 6, every action, every
/// protocol step flag.
const POSTFIX_ACTIONS: u32 = 0x1ff;
const POSTFIX_PROTOCOL: u32 = 0x1f_ffff;

struct Mta {
    stream: TcpStream,
    /// Protocol flags the milter chose: steps it will not answer.
    protocol: u32,
}

const NR_CONNECT: u32 = 0x1000;
const NR_HELO: u32 = 0x2000;
const NR_MAIL: u32 = 0x4000;
const NR_RCPT: u32 = 0x8000;

/// A milter reply: its command byte and data.
#[derive(Debug, Clone, PartialEq)]
struct Reply(u8, Vec<u8>);

impl Reply {
    fn code(&self) -> char {
        self.0 as char
    }
    /// Name and value of an `i` (insert) or `m` (change) header action.
    fn header(&self) -> (u32, String, String) {
        let index = u32::from_be_bytes(self.1[..4].try_into().unwrap());
        let mut parts = self.1[4..].split(|&b| b == 0);
        let name = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
        let value = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
        (index, name, value)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(self.1.strip_suffix(&[0]).unwrap_or(&self.1)).into_owned()
    }
}

fn packet(code: u8, data: &[u8]) -> Vec<u8> {
    let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(code);
    p.extend_from_slice(data);
    p
}

fn strings(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

impl Mta {
    async fn connect(addr: std::net::SocketAddr) -> Mta {
        Mta::connect_offering(addr, POSTFIX_PROTOCOL).await
    }

    /// Negotiates, offering these protocol flags, then connect and HELO.
    async fn connect_offering(addr: std::net::SocketAddr, offered: u32) -> Mta {
        let mut mta = Mta {
            stream: TcpStream::connect(addr).await.unwrap(),
            protocol: 0,
        };
        let mut optneg = 6u32.to_be_bytes().to_vec();
        optneg.extend(POSTFIX_ACTIONS.to_be_bytes());
        optneg.extend(offered.to_be_bytes());
        let r = mta.call(b'O', &optneg).await;
        assert_eq!(r.code(), 'O');
        mta.protocol = u32::from_be_bytes(r.1[8..12].try_into().unwrap());
        assert_eq!(mta.protocol & !offered, 0, "only flags we offered");
        let mut conn = strings(&[b"client.example.org"]);
        conn.push(b'4');
        conn.extend(40000u16.to_be_bytes());
        conn.extend(strings(&[b"192.0.2.7"]));
        mta.step(b'C', &conn, NR_CONNECT).await;
        mta.step(b'H', &strings(&[b"client.example.org"]), NR_HELO)
            .await;
        mta
    }

    /// An envelope step: answered `continue`, unless the milter asked
    /// not to answer it.
    async fn step(&mut self, code: u8, data: &[u8], no_reply: u32) {
        if self.protocol & no_reply != 0 {
            self.send(code, data).await;
        } else {
            assert_eq!(self.call(code, data).await.code(), 'c');
        }
    }

    async fn send(&mut self, code: u8, data: &[u8]) {
        self.stream.write_all(&packet(code, data)).await.unwrap();
    }

    async fn read(&mut self) -> Option<Reply> {
        let mut len = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(20), self.stream.read_exact(&mut len))
            .await
            .expect("a milter reply within 20 s");
        if read.is_err() {
            return None;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.unwrap();
        let data = body.split_off(1);
        Some(Reply(body[0], data))
    }

    async fn call(&mut self, code: u8, data: &[u8]) -> Reply {
        self.send(code, data).await;
        self.read().await.expect("a reply")
    }

    /// MAIL and RCPTs (each answered `continue`), with a queue-id macro.
    async fn envelope(&mut self, from: &str, rcpts: &[&str]) {
        self.send(b'D', &[&b"M"[..], &strings(&[b"i", b"4XkTEST1"])].concat())
            .await;
        let mail = strings(&[format!("<{from}>").as_bytes(), b"SIZE=100"]);
        self.step(b'M', &mail, NR_MAIL).await;
        for rcpt in rcpts {
            let rcpt = strings(&[format!("<{rcpt}>").as_bytes()]);
            self.step(b'R', &rcpt, NR_RCPT).await;
        }
    }

    /// Headers, body and end of message; returns the replies to the end
    /// of message (header actions, then the verdict).
    async fn content(&mut self, headers: &[(&str, &str)], body: &str) -> Vec<Reply> {
        for (name, value) in headers {
            let r = self
                .call(b'L', &strings(&[name.as_bytes(), value.as_bytes()]))
                .await;
            assert_eq!(r.code(), 'c', "reply to header {name}");
        }
        assert_eq!(self.call(b'N', b"").await.code(), 'c');
        assert_eq!(self.call(b'B', body.as_bytes()).await.code(), 'c');
        self.send(b'E', b"").await;
        let mut replies = Vec::new();
        loop {
            let r = self.read().await.expect("end-of-message replies");
            let last = matches!(r.code(), 'a' | 'c' | 't' | 'r' | 'y');
            replies.push(r);
            if last {
                return replies;
            }
        }
    }
}

struct Rig {
    dg: DeskGate,
    milter: std::net::SocketAddr,
    relay: Sink,
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

impl Rig {
    async fn tickets(&self) -> Vec<Ticket> {
        let request = Request {
            op: Op::List {
                status: None,
                helpdesk: None,
                all: false,
            },
            actor: None,
        };
        match ticketgate::control::call(&self.dg.control, &request)
            .await
            .unwrap()
        {
            ControlResponse::Tickets { tickets } => tickets,
            other => panic!("list: {other:?}"),
        }
    }
}

const BODY_MAGO: &str = "Buongiorno,\r\nda stamattina Mago4 non stampa piu' le fatture elettroniche:\r\nil programma si chiude con un errore di memoria.\r\nContratto: 4711\r\n";

fn mago_headers(msgid: &str) -> Vec<(&'static str, String)> {
    vec![
        ("From", "Mario Rossi <mario.rossi@example.org>".into()),
        ("To", "nuovocaso@projectpp.it".into()),
        ("Subject", "Mago4 non stampa le fatture, urgente".into()),
        ("Message-ID", format!("<{msgid}>")),
        ("Date", "Mon, 23 Nov 2026 10:00:00 +0100".into()),
        ("X-Ticketgate-Ticket", "PP-1999-000001".into()),
        ("Content-Type", "text/plain; charset=utf-8".into()),
    ]
}

fn as_refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[tokio::test]
async fn helpdesk_mail_is_ticketed_tagged_and_answered() {
    let rig = rig().await;
    let mut mta = Mta::connect(rig.milter).await;
    mta.envelope("mario.rossi@example.org", &["nuovocaso@projectpp.it"])
        .await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'c', "DATA: ours, go on");
    let headers = mago_headers("mago-1@example.org");
    let replies = mta.content(&as_refs(&headers), BODY_MAGO).await;

    assert_eq!(replies.last().unwrap().code(), 'a', "{replies:?}");
    let deletes: Vec<_> = replies.iter().filter(|r| r.code() == 'm').collect();
    assert_eq!(deletes.len(), 1, "{replies:?}");
    assert_eq!(
        deletes[0].header(),
        (1, "X-Ticketgate-Ticket".into(), String::new())
    );
    let inserted: Vec<(String, String)> = replies
        .iter()
        .filter(|r| r.code() == 'i')
        .map(|r| {
            let (index, name, value) = r.header();
            assert_eq!(index, 0);
            (name, value)
        })
        .collect();
    let tag = |n: &str| {
        inserted
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {n} in {inserted:?}"))
    };
    let id = tag("X-Ticketgate-Ticket");
    assert!(id.starts_with("PP-"), "{id}");
    assert_eq!(tag("X-Ticketgate-Action"), "created");
    assert_eq!(tag("X-Ticketgate-Sector"), "gestionale");
    assert_eq!(tag("X-Ticketgate-Urgency"), "urgente");
    assert_eq!(tag("X-Ticketgate-Contract"), "4711");
    assert!(tag("Authentication-Results").starts_with("gate.test;"));
    // Inserted at the top one by one: sent last first, so the message
    // reads in our order.
    assert_eq!(inserted.last().unwrap().0, "X-Ticketgate-Ticket");

    let tickets = rig.tickets().await;
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].id, id);
    assert_eq!(tickets[0].sector.as_deref(), Some("gestionale"));
    assert!(
        tickets[0].messages[0].raw_sha256.is_some(),
        "the message as Postfix gave it is kept"
    );
    // The confirmation goes out once the MTA has the accept.
    assert!(
        eventually(|| rig.relay.received.lock().unwrap().len() == 1).await,
        "one confirmation"
    );
    let reply = rig.relay.received.lock().unwrap()[0].data.clone();
    assert!(String::from_utf8_lossy(&reply).contains(&id));
    assert_eq!(
        rig.relay.received.lock().unwrap()[0].rcpts,
        vec!["mario.rossi@example.org".to_string()]
    );
}

#[tokio::test]
async fn an_mta_that_wants_every_answer_gets_every_answer() {
    let rig = rig().await;
    // Protocol 2 style: no "no reply" flags on offer.
    let mut mta = Mta::connect_offering(rig.milter, 0).await;
    assert_eq!(mta.protocol, 0);
    mta.envelope("a@example.org", &["someone@example.net"])
        .await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'a');
}

#[tokio::test]
async fn other_mail_is_accepted_at_data_and_left_alone() {
    let rig = rig().await;
    let mut mta = Mta::connect(rig.milter).await;
    mta.envelope(
        "a@example.org",
        &["someone@example.net", "other@example.com"],
    )
    .await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'a');
    // A new message on the same connection is judged afresh.
    mta.envelope("mario.rossi@example.org", &["nuovocaso@projectpp.it"])
        .await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'c');
    mta.send(b'A', b"").await;
    mta.envelope("a@example.org", &["someone@example.net"])
        .await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'a');
    assert!(rig.tickets().await.is_empty());
}

#[tokio::test]
async fn store_unavailable_is_a_temporary_failure_with_our_text() {
    let rig = rig().await;
    rig.dg.desks.store().clone().close().await;
    let mut mta = Mta::connect(rig.milter).await;
    mta.envelope("mario.rossi@example.org", &["nuovocaso@projectpp.it"])
        .await;
    mta.call(b'T', b"").await;
    let headers = mago_headers("mago-2@example.org");
    let replies = mta.content(&as_refs(&headers), BODY_MAGO).await;
    assert_eq!(replies.len(), 1, "no header changes: {replies:?}");
    assert_eq!(replies[0].code(), 'y');
    assert_eq!(
        replies[0].text(),
        "451 4.3.0 Ticket store unavailable, try again later"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rig.relay.received.lock().unwrap().is_empty(),
        "no reply for a refused message"
    );
}

#[tokio::test]
async fn a_retry_after_a_lost_verdict_lands_on_the_same_ticket() {
    let rig = rig().await;
    let headers = mago_headers("mago-3@example.org");
    // First attempt: the MTA goes away before reading our verdict (as if
    // its milter timeout fired), so it will try again.
    {
        let mut mta = Mta::connect(rig.milter).await;
        mta.envelope("mario.rossi@example.org", &["nuovocaso@projectpp.it"])
            .await;
        mta.call(b'T', b"").await;
        for (name, value) in as_refs(&headers) {
            mta.call(b'L', &strings(&[name.as_bytes(), value.as_bytes()]))
                .await;
        }
        mta.call(b'N', b"").await;
        mta.call(b'B', BODY_MAGO.as_bytes()).await;
        mta.send(b'E', b"").await;
    }
    assert!(eventually_async(|| async { rig.tickets_now().await.len() == 1 }).await);
    let mut mta = Mta::connect(rig.milter).await;
    mta.envelope("mario.rossi@example.org", &["nuovocaso@projectpp.it"])
        .await;
    mta.call(b'T', b"").await;
    let replies = mta.content(&as_refs(&headers), BODY_MAGO).await;
    assert_eq!(replies.last().unwrap().code(), 'a');
    let tickets = rig.tickets().await;
    assert_eq!(tickets.len(), 1, "one ticket for two attempts");
    assert_eq!(tickets[0].status, Status::Open);
    assert!(
        eventually(|| rig.relay.received.lock().unwrap().len() == 1).await,
        "one confirmation"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.relay.received.lock().unwrap().len(), 1, "and not two");
}

impl Rig {
    /// The store's tickets, read directly (not through the control socket).
    async fn tickets_now(&self) -> Vec<Ticket> {
        self.dg.desks.store().list().await.unwrap()
    }
}

#[tokio::test]
async fn an_oversized_packet_closes_the_connection() {
    let rig = rig().await;
    let mut mta = Mta::connect(rig.milter).await;
    // Claims 2 GiB of header: refused from the length alone.
    mta.stream
        .write_all(&[0x7f, 0xff, 0xff, 0xff, b'L'])
        .await
        .unwrap();
    assert!(mta.read().await.is_none(), "closed without a reply");
}

#[tokio::test]
async fn an_mta_without_header_actions_is_refused() {
    let rig = rig().await;
    let mut stream = TcpStream::connect(rig.milter).await.unwrap();
    let mut optneg = 6u32.to_be_bytes().to_vec();
    optneg.extend(0x01u32.to_be_bytes()); // may add headers, not change them
    optneg.extend(POSTFIX_PROTOCOL.to_be_bytes());
    stream.write_all(&packet(b'O', &optneg)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without negotiating");
}

/// Replays bytes a real Postfix 3.7 sent (tests/fixtures/milter/README.md)
/// and returns every reply until the connection closes after its QUIT.
async fn replay(rig: &Rig, fixture: &str) -> Vec<Reply> {
    let bytes = std::fs::read(repo_path(&format!("tests/fixtures/milter/{fixture}"))).unwrap();
    let mut mta = Mta {
        stream: TcpStream::connect(rig.milter).await.unwrap(),
        protocol: 0,
    };
    mta.stream.write_all(&bytes).await.unwrap();
    let mut replies = Vec::new();
    while let Some(r) = mta.read().await {
        replies.push(r);
    }
    replies
}

fn codes(replies: &[Reply]) -> String {
    replies.iter().map(Reply::code).collect()
}

#[tokio::test]
async fn a_captured_postfix_session_gets_tagged_with_the_forged_header_removed() {
    let rig = rig().await;
    let replies = replay(&rig, "postfix-3.7-session.bin").await;
    // Protocol 6, add and change headers; no unknown-command step and no
    // answers to connect, HELO, MAIL and RCPT (Postfix offered all; mode C
    // of tests/postfix/run.sh shows a real Postfix takes this answer).
    let mut optneg = 6u32.to_be_bytes().to_vec();
    optneg.extend(0x11u32.to_be_bytes());
    optneg.extend(0xf100u32.to_be_bytes());
    assert_eq!(replies[0], Reply(b'O', optneg), "OPTNEG answer");
    // data, 8 headers, end of headers, body: continue; then one forged
    // field deleted, our fields inserted, accept.
    let all = codes(&replies);
    assert!(all.starts_with(&format!("O{}m", "c".repeat(11))), "{all}");
    assert!(all.ends_with("ia"), "{all}");
    let tickets = rig.tickets().await;
    assert_eq!(tickets.len(), 1);
    let t = &tickets[0];
    assert!(t.id.starts_with("SIS-"), "{}", t.id);
    assert_eq!(t.procedure.as_deref(), Some("Dichiarativo 730"));
    assert_eq!(t.requester, "mario.rossi@example.org");
    assert_eq!(
        t.subject,
        "Dichiarativo 730: errore nel calcolo del rimborso"
    );
    let inserted: Vec<_> = replies
        .iter()
        .filter(|r| r.code() == 'i')
        .map(Reply::header)
        .collect();
    assert!(inserted.contains(&(0, "X-Ticketgate-Ticket".into(), t.id.clone())));
    // The stored message is the one Postfix passed on, in wire form.
    let sha = t.messages[0].raw_sha256.clone().unwrap();
    let raw = std::fs::read(rig.dg.desks.store().blob_path(&sha)).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(
        raw.starts_with("From: Mario Rossi <mario.rossi@example.org>\r\nTo: helpdesk.sisemplice.730@01s.it\r\nSubject: Dichiarativo 730: errore\r\n nel calcolo del rimborso\r\n"),
        "{raw}"
    );
    assert!(raw.contains("\r\n\r\nBuongiorno,\r\n"), "{raw}");
}

#[tokio::test]
async fn two_captured_messages_in_one_session_make_two_tickets() {
    let rig = rig().await;
    let replies = replay(&rig, "postfix-3.7-two-messages.bin").await;
    let all = codes(&replies);
    assert_eq!(all.matches('a').count(), 2, "{all}");
    let mut ids: Vec<String> = rig.tickets().await.into_iter().map(|t| t.id).collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids[0].starts_with("PP-") && ids[1].starts_with("SIS-"),
        "{ids:?}"
    );
    let pp = rig
        .tickets()
        .await
        .into_iter()
        .find(|t| t.id.starts_with("PP-"))
        .unwrap();
    // The requester is the From: of the message (the envelope sender of
    // this capture is another address).
    assert_eq!(pp.requester, "mario.rossi@example.org");
    assert_eq!(pp.contract.as_deref(), Some("1234"));
    // Only the helpdesk recipient is the ticket's; the other is left alone.
    assert_eq!(pp.recipients, vec!["nuovocaso@projectpp.it".to_string()]);
}

async fn rig_with(tweak: impl FnOnce(&mut ticketgate::config::Config)) -> Rig {
    let (dg, _hop, relay) = desk_gate_with_sinks(|c| {
        c.milter.listen = Some("127.0.0.1:0".to_string().try_into().unwrap());
        tweak(c);
    })
    .await;
    let milter = dg.gate.milter.expect("milter listener");
    Rig { dg, milter, relay }
}

#[tokio::test]
async fn a_silent_mta_is_dropped_at_the_read_timeout() {
    let rig = rig_with(|c| c.milter.read_timeout_secs = 1).await;
    let mut mta = Mta::connect(rig.milter).await;
    mta.envelope("a@example.org", &["nuovocaso@projectpp.it"])
        .await;
    // Nothing more: the connection must not be held for ever.
    assert!(mta.read().await.is_none(), "closed after the read timeout");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_lets_a_message_finish() {
    let mut rig = rig_with(|c| c.limits.shutdown_grace_secs = 20).await;
    let mut idle = Mta::connect(rig.milter).await;
    let mut busy = Mta::connect(rig.milter).await;
    busy.envelope("mario.rossi@example.org", &["nuovocaso@projectpp.it"])
        .await;
    assert_eq!(busy.call(b'T', b"").await.code(), 'c');
    rig.dg.gate.begin_stop();
    // Between messages: closed at once (Postfix tempfails what comes next).
    assert!(idle.read().await.is_none(), "idle connection closed");
    // In a message: it is finished, ticket and all.
    let headers = mago_headers("mago-stop@example.org");
    let replies = busy.content(&as_refs(&headers), BODY_MAGO).await;
    assert_eq!(replies.last().unwrap().code(), 'a', "{replies:?}");
    assert_eq!(rig.tickets_now().await.len(), 1);
    // No new connection is taken any more.
    assert!(
        eventually(|| std::net::TcpStream::connect(rig.milter).is_err()).await,
        "listener closed"
    );
}

/// Hostile MTA: after a valid start, packets with random command bytes,
/// random data and random lengths (some cut short). The listener must
/// neither panic nor hang, and an honest session afterwards still gets
/// its message ticketed.
#[tokio::test]
async fn generated_garbage_from_the_mta_never_breaks_the_listener() {
    use rand::{Rng, SeedableRng};
    let rig = rig_with(|c| c.milter.read_timeout_secs = 2).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x3417);
    const CODES: &[u8] = b"ODCHMRTLNBEAQKUZ\0";
    for _ in 0..150 {
        let mut mta = Mta::connect(rig.milter).await;
        mta.envelope("a@example.org", &["nuovocaso@projectpp.it"])
            .await;
        let mut junk = Vec::new();
        for _ in 0..rng.gen_range(1..20) {
            let code = CODES[rng.gen_range(0..CODES.len())];
            let len = rng.gen_range(0..300);
            let data: Vec<u8> = (0..len)
                .map(|_| if rng.gen_bool(0.2) { 0 } else { rng.r#gen() })
                .collect();
            let mut p = packet(code, &data);
            if rng.gen_bool(0.1) {
                // A length that lies.
                let claimed: u32 = rng.r#gen();
                p[..4].copy_from_slice(&claimed.to_be_bytes());
            }
            junk.extend(p);
        }
        if rng.gen_bool(0.3) {
            junk.truncate(rng.gen_range(0..=junk.len()));
        }
        // The server may close on us mid-write: that is an acceptable answer.
        let _ = mta.stream.write_all(&junk).await;
        let _ = mta.stream.shutdown().await;
        // Drain whatever it answers until it closes (the read timeout
        // bounds a connection left waiting for the rest of a packet).
        while mta.read().await.is_some() {}
    }
    let mut mta = Mta::connect(rig.milter).await;
    mta.envelope("mario.rossi@example.org", &["nuovocaso@projectpp.it"])
        .await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'c');
    let headers = mago_headers("after-garbage@example.org");
    let replies = mta.content(&as_refs(&headers), BODY_MAGO).await;
    assert_eq!(replies.last().unwrap().code(), 'a', "{replies:?}");
    let ours = rig
        .tickets()
        .await
        .into_iter()
        .filter(|t| {
            t.messages
                .iter()
                .any(|m| m.message_id.as_deref() == Some("after-garbage@example.org"))
        })
        .count();
    assert_eq!(ours, 1);
}

#[tokio::test]
async fn unix_socket_listener_replaces_a_stale_socket_but_never_a_file() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/milter.sock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // A socket left by a crash.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let hop = Sink::start(SinkBehaviour::default()).await;
    let addr = format!("unix:{}", path.display());
    let dg = start_desk_gate_with(
        &hop.addr.to_string(),
        None,
        tempfile::tempdir().unwrap(),
        |c| c.milter.listen = Some(addr.clone().try_into().unwrap()),
    )
    .await;
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let mut optneg = 6u32.to_be_bytes().to_vec();
    optneg.extend(POSTFIX_ACTIONS.to_be_bytes());
    optneg.extend(POSTFIX_PROTOCOL.to_be_bytes());
    stream.write_all(&packet(b'O', &optneg)).await.unwrap();
    let mut reply = [0u8; 17];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[4], b'O');
    assert_eq!(&reply[5..9], &6u32.to_be_bytes());
    dg.gate.stop().await;
    assert!(!path.exists(), "socket removed at shutdown");

    // A regular file in its place is not ours to delete.
    std::fs::write(&path, b"precious").unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = {
        let mut c = ticketgate::config::Config::load(&repo_path("config/ticketgate.toml")).unwrap();
        c.milter.listen = Some(addr.try_into().unwrap());
        c.metrics.listen = None;
        c.server.listen = "127.0.0.1:0".parse().unwrap();
        c.server.data_dir = data.path().to_path_buf();
        c.server.control = Some(data.path().join("control.sock"));
        c
    };
    let refused = ticketgate::app::start(config).await;
    assert!(refused.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test]
async fn floods_of_recipients_or_forged_tags_are_refused_not_held() {
    let rig = rig().await;
    // 1,001 recipients (Postfix's default limit is 1,000).
    let mut mta = Mta::connect(rig.milter).await;
    let mut rcpts = vec!["nuovocaso@projectpp.it".to_string()];
    rcpts.extend((0..1000).map(|i| format!("r{i}@example.net")));
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    mta.envelope("a@example.org", &rcpts).await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'c');
    let headers = mago_headers("flood-1@example.org");
    let replies = mta.content(&as_refs(&headers), BODY_MAGO).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].text().starts_with("554 5.5.3 "), "{replies:?}");

    // 70 KiB of forged tag names.
    mta.envelope("a@example.org", &["nuovocaso@projectpp.it"])
        .await;
    assert_eq!(mta.call(b'T', b"").await.code(), 'c');
    let name = format!("X-Ticketgate-{}", "x".repeat(1000));
    let mut headers = mago_headers("flood-2@example.org");
    for _ in 0..70 {
        headers.push(("X-Ticketgate-Ticket", "x".into()));
    }
    let mut refs = as_refs(&headers);
    let flood: Vec<(&str, &str)> = (0..70).map(|_| (name.as_str(), "1")).collect();
    refs.extend(flood);
    let replies = mta.content(&refs, BODY_MAGO).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].text().starts_with("554 5.5.3 "), "{replies:?}");
    assert!(rig.tickets().await.is_empty());
}
