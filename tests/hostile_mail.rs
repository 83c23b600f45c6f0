//! Hostile mail at real sizes through the server with the shipped config
//! (issue 18): every shape gets an answer, reaches the next hop intact,
//! is ticketed with what was read, and names the cap that cut. Timings and
//! memory are measured in `benches/hostile.sh`, not here.

mod common;

use std::time::Duration;

use common::*;
use ticketgate::control::{Op, Request, Response};
use ticketgate::reason::ReasonCode;
use ticketgate::ticket::Ticket;
use tokio::io::AsyncWriteExt;

const TO: &str = "nuovocaso@projectpp.it";
const FROM: &str = "mario@cliente.example";

fn head(msgid: &str, subject: &str, extra: &str) -> String {
    format!(
        "From: Mario Rossi <{FROM}>\r\nTo: {TO}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n{extra}"
    )
}

async fn send(gate: &DeskGate, rcpt: &str, content: &[u8]) -> String {
    let mut c = Client::greeted(gate.gate.addr).await;
    let reply = c.send_mail(FROM, &[rcpt], &wire(content)).await;
    c.cmd("QUIT", 221).await;
    reply
}

async fn tickets(gate: &DeskGate) -> Vec<Ticket> {
    let request = Request {
        op: Op::List {
            status: None,
            helpdesk: None,
            all: true,
        },
        actor: None,
    };
    match ticketgate::control::call(&gate.control, &request)
        .await
        .unwrap()
    {
        Response::Tickets { tickets } => tickets,
        other => panic!("list: {other:?}"),
    }
}

async fn only_ticket(gate: &DeskGate) -> Ticket {
    let all = tickets(gate).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

fn reasons_of(t: &Ticket) -> Vec<ReasonCode> {
    t.messages.iter().flat_map(|m| m.reasons.clone()).collect()
}

#[tokio::test]
async fn a_million_empty_lines_are_answered_and_ticketed() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    let mut msg = head("empty@cliente.example", "Stampa fatture bloccata", "\r\n").into_bytes();
    msg.extend(std::iter::repeat_n(b"\r\n".as_slice(), 1_000_000).flatten());
    msg.extend_from_slice(b"La stampa delle fatture si blocca all'avvio del programma.\r\n");
    assert!(msg.len() > 2_000_000);
    let reply = send(&gate, TO, &msg).await;
    assert!(reply.starts_with("250"), "{reply}");
    let fwd = &hop.messages()[0].data;
    assert!(fwd.ends_with(&msg[msg.len() - 2_000_100..]), "body intact");
    let t = only_ticket(&gate).await;
    assert_eq!(
        t.status.as_str(),
        "open",
        "the body text after the blank lines was read"
    );
}

#[tokio::test]
async fn references_with_100000_ids_keep_the_root_and_the_latest() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    let mut refs = String::from("References:");
    for i in 0..100_000 {
        refs.push_str(&format!(" <r{i}@thread.example>\r\n"));
    }
    let extra = format!("{refs}\r\n");
    let mut msg = head(
        "refs@cliente.example",
        "Errore nella stampa del registro",
        &extra,
    );
    msg.push_str("Il registro IVA non si stampa: errore di calcolo alla riga 12.\r\n");
    let reply = send(&gate, TO, msg.as_bytes()).await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(hop.messages().len(), 1);
    let t = only_ticket(&gate).await;
    assert!(
        reasons_of(&t).contains(&ReasonCode::CapReferenceIds),
        "{t:?}"
    );
}

#[tokio::test]
async fn a_hundred_thousand_mime_parts_are_cut_at_the_cap() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    let mut msg = head(
        "parts@cliente.example",
        "Allegati della pratica 730",
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n",
    );
    msg.push_str("--B\r\nContent-Type: text/plain\r\n\r\nInvio gli allegati della pratica, il programma non li accetta.\r\n");
    for i in 0..100_000 {
        msg.push_str(&format!(
            "--B\r\nContent-Disposition: attachment; filename=\"f{i}.txt\"\r\n\r\nx{i}\r\n"
        ));
    }
    msg.push_str("--B--\r\n");
    let reply = send(&gate, TO, msg.as_bytes()).await;
    assert!(reply.starts_with("250"), "{reply}");
    let fwd = &hop.messages()[0].data;
    assert!(
        fwd.ends_with(&msg.as_bytes()[msg.len() - 100_000..]),
        "forwarded intact"
    );
    let t = only_ticket(&gate).await;
    let kept = t.messages[0].attachments.len();
    assert!((1..=100).contains(&kept), "{kept} attachments kept");
    let reasons = reasons_of(&t);
    assert!(
        reasons.contains(&ReasonCode::CapMimeParts)
            || reasons.contains(&ReasonCode::CapAttachments),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn quoted_recipients_reach_the_next_hop_quoted() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    let mut c = Client::greeted(gate.gate.addr).await;
    c.cmd("MAIL FROM:<\"a b\"@cliente.example>", 250).await;
    c.cmd("RCPT TO:<\"mario rossi\"@example.org>", 250).await;
    c.cmd("RCPT TO:<\"x> NOTIFY=NEVER\"@example.org>", 250)
        .await;
    c.cmd("DATA", 354).await;
    c.send(&wire(b"Subject: ciao\r\n\r\nciao\r\n")).await;
    c.expect(250).await;
    let got = &hop.messages()[0];
    assert_eq!(got.mail_line, "MAIL FROM:<\"a b\"@cliente.example>");
    assert_eq!(
        got.rcpt_lines,
        vec![
            "RCPT TO:<\"mario rossi\"@example.org>",
            "RCPT TO:<\"x> NOTIFY=NEVER\"@example.org>",
        ]
    );
    assert!(tickets(&gate).await.is_empty());
}

/// Found by fuzzing (fuzz/smtp_command): smtp-proto takes quotes off
/// anywhere in a path, so quotes around the `@` and `>` left a "domain"
/// of `le.> NOTIFY=NEVERorg`, which was written back as it came.
#[tokio::test]
async fn a_quoted_domain_cannot_smuggle_a_parameter_to_the_next_hop() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    let mut c = Client::greeted(gate.gate.addr).await;
    c.cmd("MAIL FROM:<a@cliente.example>", 250).await;
    let refused = c
        .cmd("RCPT TO:<l\"M>R\"@e\"@le.> NOTIFY=NEVER\"org>", 501)
        .await;
    assert!(refused.starts_with("501 5.1.3 "), "{refused}");
    c.cmd("RCPT TO:<b@example.org>", 250).await;
    c.cmd("DATA", 354).await;
    c.send(&wire(b"Subject: ciao\r\n\r\nciao\r\n")).await;
    c.expect(250).await;
    let got = &hop.messages()[0];
    assert_eq!(got.rcpt_lines, vec!["RCPT TO:<b@example.org>"]);
}

#[tokio::test]
async fn dsn_parameters_pass_when_the_next_hop_offers_dsn() {
    let hop = Sink::start(SinkBehaviour {
        advertise_dsn: true,
        ..SinkBehaviour::default()
    })
    .await;
    let gate = start_desk_gate(&hop.addr.to_string(), None, tempfile::tempdir().unwrap()).await;
    let mut c = Client::connect(gate.gate.addr).await;
    let ehlo = c.cmd("EHLO client.test", 250).await;
    assert!(
        ehlo.contains("250-DSN") || ehlo.contains("250 DSN"),
        "{ehlo}"
    );
    c.cmd("MAIL FROM:<a@cliente.example> RET=HDRS ENVID=QQ+2B1", 250)
        .await;
    c.cmd(
        "RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40example.org",
        250,
    )
    .await;
    c.cmd("DATA", 354).await;
    c.send(&wire(b"Subject: dsn\r\n\r\nciao\r\n")).await;
    c.expect(250).await;
    let got = &hop.messages()[0];
    assert_eq!(
        got.mail_line,
        "MAIL FROM:<a@cliente.example> RET=HDRS ENVID=QQ+2B1"
    );
    assert_eq!(
        got.rcpt_lines,
        vec!["RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org"]
    );
}

#[tokio::test]
async fn dsn_is_not_offered_when_the_next_hop_does_not() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    let mut c = Client::connect(gate.gate.addr).await;
    let ehlo = c.cmd("EHLO client.test", 250).await;
    assert!(!ehlo.contains("DSN"), "{ehlo}");
    // Postfix's proxy passes its client's parameters whatever we offered:
    // they are taken, and not put to a next hop that would refuse them.
    c.cmd("MAIL FROM:<a@cliente.example> RET=HDRS", 250).await;
    c.cmd("RCPT TO:<b@example.org> NOTIFY=NEVER", 250).await;
    c.cmd("DATA", 354).await;
    c.send(&wire(b"Subject: dsn\r\n\r\nciao\r\n")).await;
    c.expect(250).await;
    let got = &hop.messages()[0];
    assert_eq!(got.mail_line, "MAIL FROM:<a@cliente.example>");
    assert_eq!(got.rcpt_lines, vec!["RCPT TO:<b@example.org>"]);
}

#[tokio::test]
async fn an_address_extension_is_the_queue_without_it() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    let msg = format!(
        "{}\r\nLa stampa delle fatture si blocca all'avvio, errore 42 del modulo.\r\n",
        head("ext@cliente.example", "Stampa fatture bloccata", "")
    );
    let reply = send(&gate, "NuovoCaso+urgente@projectpp.it.", msg.as_bytes()).await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = &hop.messages()[0];
    assert_eq!(
        got.rcpt_lines,
        vec!["RCPT TO:<NuovoCaso+urgente@projectpp.it.>"],
        "the recipient is passed on as written"
    );
    assert_eq!(
        header(&got.data, "X-Ticketgate-Queue").as_deref(),
        Some("nuovocaso")
    );
    assert_eq!(only_ticket(&gate).await.queue, "nuovocaso");
}

#[tokio::test]
async fn our_authserv_id_and_forged_tags_are_removed_past_the_parse_limit() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|c| {
        c.limits.max_parse_bytes = 300 * 1024;
        c.limits.parse_memory_bytes = 1024 * 1024;
    })
    .await;
    let mut extra = String::from(
        "Authentication-Results: gate.test; dmarc=pass header.from=cliente.example\r\n\
         Authentication-Results: mx.cliente.example; spf=pass\r\n",
    );
    for i in 0..4000 {
        extra.push_str(&format!("X-Padding-{i:04}: {}\r\n", "p".repeat(60)));
    }
    extra.push_str(
        "X-Ticketgate-Status: closed\r\nAuthentication-Results: GATE.TEST; dkim=pass\r\n\r\n",
    );
    let mut msg = head("big@cliente.example", "Stampa fatture bloccata", &extra);
    msg.push_str(&"La stampa delle fatture si blocca.\r\n".repeat(2000));
    assert!(msg.len() > 300 * 1024);
    let reply = send(&gate, TO, msg.as_bytes()).await;
    assert!(reply.starts_with("250"), "{reply}");
    let fwd = &hop.messages()[0].data;
    // Ours only: the message is ticketed from its first 256 KiB, all
    // padding, so the quality check suspends it; the forged "closed" is gone.
    assert_eq!(headers(fwd, "X-Ticketgate-Status"), vec!["suspended"]);
    let ours: Vec<String> = headers(fwd, "Authentication-Results")
        .into_iter()
        .filter(|v| v.to_ascii_lowercase().starts_with("gate.test"))
        .collect();
    assert_eq!(ours.len(), 1, "only ours: {ours:?}");
    assert!(
        headers(fwd, "Authentication-Results")
            .iter()
            .any(|v| v.starts_with("mx.cliente.example")),
        "another server's results stay"
    );
    let t = only_ticket(&gate).await;
    let reasons = reasons_of(&t);
    assert!(reasons.contains(&ReasonCode::ParseTooLarge), "{reasons:?}");
}

#[tokio::test]
async fn a_client_trickling_data_is_cut_off() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|c| {
        c.limits.data_timeout_secs = 2;
        c.limits.min_data_rate = 500;
    })
    .await;
    let mut c = Client::greeted(gate.gate.addr).await;
    c.cmd(&format!("MAIL FROM:<{FROM}>"), 250).await;
    c.cmd(&format!("RCPT TO:<{TO}>"), 250).await;
    c.cmd("DATA", 354).await;
    // One byte every 400 ms never waits long enough for a per-read
    // timeout of 2 s; the data deadline catches it.
    let trickle = async {
        for b in b"Subject: lento\r\n\r\n".iter().cycle().take(100) {
            if c.send_checked(std::slice::from_ref(b)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    };
    trickle.await;
    let reply = c.reply().await;
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
    assert!(hop.messages().is_empty());
}

#[tokio::test]
async fn a_command_line_trickled_byte_by_byte_is_cut_off() {
    let (gate, _hop, _relay) = desk_gate_with_sinks(|c| {
        c.limits.command_timeout_secs = 2;
    })
    .await;
    let mut c = Client::connect(gate.gate.addr).await;
    for b in b"EHLO slow.example.and.a.long.name.that.never.ends".iter() {
        if c.send_checked(std::slice::from_ref(b)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let reply = c.reply().await;
    assert!(reply.starts_with("421 4.4.2"), "{reply}");
}

#[tokio::test]
async fn idle_connections_do_not_keep_a_real_client_out() {
    let (gate, hop, _relay) = desk_gate_with_sinks(|c| {
        c.limits.max_connections = 20;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(gate.gate.addr)
            .await
            .unwrap();
        s.write_all(b"EHLO idle.example\r\n").await.unwrap();
        idle.push(s);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = Client::connect(gate.gate.addr).await;
    c.cmd("EHLO real.example", 250).await;
    let reply = c
        .send_mail(
            FROM,
            &["someone@example.org"],
            &wire(b"Subject: x\r\n\r\nciao\r\n"),
        )
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(hop.messages().len(), 1);
    drop(idle);
}

#[tokio::test]
async fn a_ticket_keeps_at_most_its_cap_of_messages() {
    let (gate, _hop, _relay) = desk_gate_with_sinks(|c| {
        c.limits.max_messages_per_ticket = 3;
    })
    .await;
    let body = "La stampa delle fatture si blocca all'avvio, errore 42 del modulo.\r\n";
    let first = format!(
        "{}\r\n{body}",
        head("t0@cliente.example", "Stampa fatture bloccata", "")
    );
    assert!(send(&gate, TO, first.as_bytes()).await.starts_with("250"));
    let id = only_ticket(&gate).await.id;
    for i in 1..6 {
        let msg = format!(
            "{}\r\n{body}",
            head(
                &format!("t{i}@cliente.example"),
                &format!("R: [{id}] Stampa fatture bloccata"),
                ""
            )
        );
        assert!(send(&gate, TO, msg.as_bytes()).await.starts_with("250"));
    }
    let t = only_ticket(&gate).await;
    assert_eq!(t.messages.len(), 3);
    assert!(
        t.reasons.contains(&ReasonCode::CapTicketMessages),
        "{:?}",
        t.reasons
    );
}
