//! `ticketgate try` says what `serve` does: the binary's `try --json` on
//! the test corpus (`tests/fixtures/corpus`, mail as an archive holds it,
//! LF line ends), then the same messages, in the same order and with the
//! envelope `try` read from them, through a server with the shipped
//! config. For each message the tickets, the tags, what reached the next
//! hop and which confirmations reached the relay are what `try` said.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;
use ticketgate::ticket::Ticket;

fn corpus() -> std::path::PathBuf {
    repo_path("tests/fixtures/corpus")
}

/// `ticketgate try --json` on `paths`: one object per message.
fn try_json(paths: &[&Path]) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .arg("try")
        .arg("--config")
        .arg(repo_path("config/ticketgate.toml"))
        .arg("--json")
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Sends one file as `try` says serve receives it; returns what the next
/// hop got for it, if anything.
async fn serve_one(dg: &DeskGate, hop: &Sink, p: &Value) -> Option<Received> {
    let raw = std::fs::read(text(&p["source"])).unwrap();
    let raw = String::from_utf8(raw).unwrap().replace('\n', "\r\n");
    let rcpts: Vec<String> = p["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let before = hop.messages().len();
    let mut c = Client::greeted(dg.gate.addr).await;
    let reply = c
        .send_mail(&text(&p["envelope_from"]), &rcpts, &wire(raw.as_bytes()))
        .await;
    c.cmd("QUIT", 221).await;
    match text(&p["outcome"]).as_str() {
        "refused" => {
            assert!(reply.starts_with('5'), "{reply}");
            None
        }
        _ => {
            assert!(reply.starts_with("250"), "{reply}");
            Some(hop.messages()[before].clone())
        }
    }
}

/// The ticket serve opened or updated, checked against what `try` said.
async fn check_ticket(dg: &DeskGate, forwarded: &Received, said: &Value, source: &str) -> Ticket {
    let id = header(&forwarded.data, "X-Ticketgate-Ticket").expect("tagged");
    let t = dg.desks.store().get(&id).await.unwrap().unwrap();
    let field = |name: &str| said[name].clone();
    assert_eq!(
        Value::from(t.helpdesk.clone()),
        field("helpdesk"),
        "{source}"
    );
    assert_eq!(Value::from(t.queue.clone()), field("queue"), "{source}");
    let action = header(&forwarded.data, "X-Ticketgate-Action").unwrap();
    match said["followup_of"].as_str() {
        // Serve appends to the ticket named if it exists; the ticket is
        // then the one named.
        Some(named) if action == "appended" => assert_eq!(t.id, named, "{source}"),
        _ => {
            assert_eq!(action, "created", "{source}");
            let json = serde_json::to_value(&t).unwrap();
            for name in ["procedure", "sector", "urgency", "contract", "status"] {
                assert_eq!(json[name], field(name), "{source}: {name}");
            }
            assert_eq!(json["reasons"], field("reasons"), "{source}: reasons");
        }
    }
    t
}

#[tokio::test]
async fn try_gives_the_decisions_serve_gives_the_corpus() {
    let said = try_json(&[&corpus()]);
    assert_eq!(said.len(), 10, "every file of the corpus is a message");
    let (dg, hop, relay) = desk_gate_with_sinks(|_| {}).await;
    let mut confirmations: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for p in &said {
        let source = text(&p["source"]);
        *outcomes.entry(text(&p["outcome"])).or_default() += 1;
        let Some(forwarded) = serve_one(&dg, &hop, p).await else {
            continue;
        };
        let tickets = p["tickets"].as_array().unwrap();
        if tickets.is_empty() {
            assert_eq!(text(&p["outcome"]), "pass", "{source}");
            assert!(
                header(&forwarded.data, "X-Ticketgate-Ticket").is_none(),
                "{source}: passed through untouched"
            );
            continue;
        }
        assert_eq!(tickets.len(), 1, "{source}: one helpdesk each");
        let t = check_ticket(&dg, &forwarded, &tickets[0], &source).await;
        let created = t.messages.len() == 1;
        match (tickets[0]["reply_to"].as_str(), created) {
            (Some(to), true) => *confirmations.entry(to.to_string()).or_default() += 1,
            _ => assert!(
                tickets[0]["no_reply"].is_string() || !created,
                "{source}: try gives a reply or why not"
            ),
        }
    }
    // The corpus has each kind: tickets, robots, a pass-through.
    assert_eq!(outcomes.get("pass"), Some(&1), "{outcomes:?}");
    assert!(
        outcomes.get("ticket").is_some_and(|n| *n >= 8),
        "{outcomes:?}"
    );
    let silent = said
        .iter()
        .filter(|p| p["tickets"][0]["no_reply"].is_string())
        .count();
    assert_eq!(silent, 3, "out-of-office, list and bounce get no reply");
    // Exactly the confirmations try announced reached the relay, for
    // those recipients.
    let expected: usize = confirmations.values().sum();
    let r = relay.clone();
    assert!(eventually(|| r.messages().len() >= expected).await);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for m in relay.messages() {
        for rcpt in m.rcpts {
            *got.entry(rcpt).or_default() += 1;
        }
    }
    assert_eq!(got, confirmations);
}

/// The same messages in one mbox give the same decisions as the files.
#[test]
fn an_mbox_of_the_corpus_reads_as_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("archive.mbox");
    let mut text = String::new();
    let mut files: Vec<_> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in &files {
        let body = std::fs::read_to_string(f).unwrap();
        text.push_str("From archive@example Mon Mar  2 09:00:00 2026\n");
        for line in body.lines() {
            // mboxrd: a line that would read as a separator is quoted.
            if line.trim_start_matches('>').starts_with("From ") {
                text.push('>');
            }
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
    }
    std::fs::write(&mbox, text).unwrap();
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("source");
        v
    };
    let from_files: Vec<Value> = try_json(&[&corpus()]).into_iter().map(strip).collect();
    let from_mbox: Vec<Value> = try_json(&[&mbox]).into_iter().map(strip).collect();
    assert_eq!(from_mbox, from_files);
}

/// `try` once refused a pass-through message for its forged fields, which
/// `serve` only looks for in mail a helpdesk tags: both now agree that it
/// passes, and that the same header to a helpdesk gets 554.
#[tokio::test]
async fn forged_fields_refuse_only_helpdesk_mail_in_try_as_in_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut head = String::new();
    for _ in 0..=ticketgate::tag::MAX_CUTS {
        head.push_str("X-Ticketgate-Status: closed\nX-Pad: 1\n");
    }
    let body = "Subject: Registro IVA bloccato\nMessage-ID: <flood@caf.example>\n\nIl registro IVA non si chiude.\n";
    let write = |name: &str, to: &str| {
        let path = dir.path().join(name);
        let text =
            format!("Return-Path: <op@caf.example>\nFrom: op@caf.example\nTo: {to}\n{head}{body}");
        std::fs::write(&path, text).unwrap();
        path
    };
    let other = write("other.eml", "amministrazione@example.org");
    let desk = write("desk.eml", "nuovocaso@projectpp.it");
    let said = try_json(&[&other, &desk]);
    assert_eq!(text(&said[0]["outcome"]), "pass");
    assert_eq!(text(&said[1]["outcome"]), "refused");
    assert!(
        text(&said[1]["refusal"]).starts_with("554 5.6.0"),
        "{}",
        said[1]
    );
    let (dg, hop, _relay) = desk_gate_with_sinks(|_| {}).await;
    assert!(serve_one(&dg, &hop, &said[0]).await.is_some(), "passed");
    assert!(serve_one(&dg, &hop, &said[1]).await.is_none(), "refused");
}
