//! Issue 16 with DNS on (a DNS server this test runs on 127.0.0.1, never
//! the internet), through the server with the shipped helpdesks: no
//! automatic reply to a sender that SPF disowns and whose From does not
//! pass DMARC (still ticketed and forwarded); DMARC pass is enough for the
//! requester's close; a forger's mail changes nothing and hears nothing.

mod common;
#[path = "support/dns.rs"]
mod dns;

use std::time::Duration;

use common::*;
use ticketgate::config::DnsMode;
use ticketgate::reason::ReasonCode;
use ticketgate::ticket::{Status, Ticket};

const GOOD_IP: &str = "192.0.2.10";
const BAD_IP: &str = "198.51.100.1";
const ALICE: &str = "alice@example.com";
const FORGER: &str = "x9@vps.example";
const DESK: &str = "supporto.tecnico@projectpp.it";
const BODY: &str =
    "La stampante di rete del secondo piano non risponde dalle 9, errore 0x5 su ogni client.";

fn zone() -> dns::Zone {
    dns::example_com(GOOD_IP)
}

struct Rig {
    dg: DeskGate,
    hop: Sink,
    relay: Sink,
}

impl Rig {
    async fn start() -> Rig {
        let resolver = dns::start_dns(zone());
        let (dg, hop, relay) = desk_gate_with_sinks(|c| {
            c.auth.dns = DnsMode::System;
            c.auth.nameservers = vec![resolver];
            c.auth.dns_timeout_secs = Some(5);
        })
        .await;
        Rig { dg, hop, relay }
    }

    /// One message from client address `ip` (told by XFORWARD, as Postfix
    /// does); returns what the next hop received.
    async fn send(&self, ip: &str, envelope_from: &str, data: &str) -> Vec<u8> {
        let before = self.hop.messages().len();
        let mut c = Client::greeted(self.dg.gate.addr).await;
        c.cmd(&format!("XFORWARD ADDR={ip} HELO=mx.sender.example"), 250)
            .await;
        let reply = c
            .send_mail(envelope_from, &[DESK], &wire(data.as_bytes()))
            .await;
        assert!(reply.starts_with("250"), "{reply}");
        c.cmd("QUIT", 221).await;
        let got = self.hop.messages();
        assert_eq!(got.len(), before + 1);
        got[before].data.clone()
    }

    async fn ticket(&self, fwd: &[u8]) -> Ticket {
        let id = header(fwd, "X-Ticketgate-Ticket").expect("ticketed");
        self.dg.desks.store().get(&id).await.unwrap().unwrap()
    }

    async fn relayed(&self, n: usize) -> Vec<Received> {
        let relay = self.relay.clone();
        assert!(eventually(|| relay.messages().len() >= n).await);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let got = self.relay.messages();
        assert_eq!(got.len(), n, "{got:?}");
        got
    }
}

fn mail(from: &str, subject: &str, msgid: &str, extra: &str) -> String {
    format!(
        "From: {from}\r\nTo: {DESK}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n{extra}\r\n{BODY}\r\n"
    )
}

#[tokio::test]
async fn spf_fail_without_dmarc_pass_is_ticketed_and_forwarded_but_not_answered() {
    let r = Rig::start().await;
    let fwd = r
        .send(
            BAD_IP,
            ALICE,
            &mail(ALICE, "Stampante di rete ferma", "bs1@vps.example", ""),
        )
        .await;
    let ar = header(&fwd, "Authentication-Results").unwrap();
    assert!(ar.contains("spf=fail") && ar.contains("dmarc=fail"), "{ar}");
    let t = r.ticket(&fwd).await;
    assert_eq!(t.status, Status::Open);
    assert!(t.replies.is_empty());
    assert!(
        t.reasons.contains(&ReasonCode::ReplySuppressedSpfFail),
        "{:?}",
        t.reasons
    );
    // The same mail from the address SPF allows is answered.
    let fwd = r
        .send(
            GOOD_IP,
            ALICE,
            &mail(ALICE, "Stampante di rete ferma", "bs2@example.com", ""),
        )
        .await;
    assert!(
        r.ticket(&fwd)
            .await
            .reasons
            .contains(&ReasonCode::AuthDmarcPass)
    );
    let sent = r.relayed(1).await;
    assert_eq!(sent[0].rcpts, vec![ALICE]);
}

#[tokio::test]
async fn dmarc_pass_closes_for_the_requester_and_forgers_change_nothing() {
    let r = Rig::start().await;
    let fwd = r
        .send(
            GOOD_IP,
            ALICE,
            &mail(ALICE, "Stampante di rete ferma", "d1@example.com", ""),
        )
        .await;
    let id = r.ticket(&fwd).await.id;
    let conf_id = header(&r.relayed(1).await[0].data, "Message-ID").unwrap();

    // Our signed id, the requester's envelope and From, but SPF says the
    // client may not send for example.com: a forged envelope.
    let forged = mail(
        ALICE,
        &format!("R: [{id}] potete chiudere"),
        "d2@vps.example",
        &format!("In-Reply-To: {conf_id}\r\n"),
    );
    let fwd = r.send(BAD_IP, ALICE, &forged).await;
    assert_eq!(
        header(&fwd, "X-Ticketgate-Action").as_deref(),
        Some("refused")
    );
    let t = r.ticket(&fwd).await;
    assert_eq!(t.status, Status::Open);
    let reasons = &t.messages.last().unwrap().reasons;
    assert!(reasons.contains(&ReasonCode::AuthSpfFail), "{reasons:?}");
    // The forger's own envelope, DMARC fails for the From.
    let fwd = r
        .send(
            BAD_IP,
            FORGER,
            &mail(ALICE, &format!("[{id}] chiudere"), "d3@vps.example", ""),
        )
        .await;
    assert_eq!(
        header(&fwd, "X-Ticketgate-Action").as_deref(),
        Some("refused")
    );
    assert_eq!(r.ticket(&fwd).await.status, Status::Open);

    // Alice, DMARC pass, no signed id needed: closed, and told so.
    let fwd = r
        .send(
            GOOD_IP,
            ALICE,
            &mail(
                ALICE,
                &format!("[{id}] risolto, potete chiudere"),
                "d4@example.com",
                "",
            ),
        )
        .await;
    assert_eq!(
        header(&fwd, "X-Ticketgate-Action").as_deref(),
        Some("closed")
    );
    assert_eq!(r.ticket(&fwd).await.status, Status::Closed);
    let sent = r.relayed(2).await;
    assert!(sent.iter().all(|m| m.rcpts == vec![ALICE]), "{sent:?}");
}
