//! kill -9 in the middle of a ticketed run: after a restart and a resend of
//! what was not acknowledged, every acknowledged message reached the next
//! hop and every message has exactly one ticket.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;

const TOTAL: usize = 200;
const KILL_AFTER: usize = 80;

fn message(i: usize) -> Vec<u8> {
    format!(
        "From: op{i}@caf.example\r\nTo: nuovocaso@projectpp.it\r\nSubject: Problema numero {i} con la stampa fatture\r\nMessage-ID: <crash-{i}@caf.example>\r\n\r\nLa stampa delle fatture del registro VENIMM si blocca con errore {i}.\r\n"
    )
    .into_bytes()
}

/// Sends message `i`; true only when the gate said 250 to its DATA.
async fn try_send(port: u16, i: usize) -> bool {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut c = RawClient::new(stream);
        c.expect("220").await?;
        c.cmd("EHLO crash.test", "250").await?;
        c.cmd(&format!("MAIL FROM:<op{i}@caf.example>"), "250")
            .await?;
        c.cmd("RCPT TO:<nuovocaso@projectpp.it>", "250").await?;
        c.cmd("DATA", "354").await?;
        c.send(&wire(&message(i))).await?;
        c.expect("250").await
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

struct RawClient {
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl RawClient {
    fn new(stream: tokio::net::TcpStream) -> RawClient {
        let (r, w) = stream.into_split();
        RawClient {
            r: tokio::io::BufReader::new(r),
            w,
        }
    }
    async fn send(&mut self, b: &[u8]) -> Option<()> {
        tokio::io::AsyncWriteExt::write_all(&mut self.w, b)
            .await
            .ok()
    }
    async fn expect(&mut self, code: &str) -> Option<()> {
        loop {
            let mut line = String::new();
            let n = tokio::io::AsyncBufReadExt::read_line(&mut self.r, &mut line)
                .await
                .ok()?;
            if n == 0 || !line.starts_with(code) {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(());
            }
        }
    }
    async fn cmd(&mut self, line: &str, code: &str) -> Option<()> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.expect(code).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_nothing_and_duplicates_no_ticket() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let hop = sink.addr.to_string();
    let mut child = spawn_binary(port, &hop, data.path(), None);

    // Two senders in parallel, so the kill lands while messages are in flight.
    let mut acked: HashSet<usize> = HashSet::new();
    let mut next = 0;
    while next < TOTAL {
        let batch: Vec<usize> = (next..(next + 2).min(TOTAL)).collect();
        next += batch.len();
        let results = futures_join(port, &batch).await;
        for (i, ok) in batch.iter().zip(results) {
            if ok {
                acked.insert(*i);
            }
        }
        if acked.len() >= KILL_AFTER {
            // Kill while the next batch is being sent.
            let b2: Vec<usize> = (next..(next + 2).min(TOTAL)).collect();
            let sends = tokio::spawn({
                let b2 = b2.clone();
                async move { futures_join(port, &b2).await }
            });
            tokio::time::sleep(Duration::from_millis(3)).await;
            child.kill_9();
            for (i, ok) in b2.iter().zip(sends.await.unwrap()) {
                if ok {
                    acked.insert(*i);
                }
            }
            break;
        }
    }
    let acked_before_kill = acked.clone();
    assert!(
        acked_before_kill.len() >= KILL_AFTER && acked_before_kill.len() < TOTAL,
        "the kill landed mid-run ({} of {TOTAL} acknowledged)",
        acked_before_kill.len()
    );

    // Restart on the same data and resend everything not acknowledged,
    // as Postfix would.
    let mut child = spawn_binary(port, &hop, data.path(), None);
    for i in 0..TOTAL {
        if !acked.contains(&i) {
            assert!(
                try_send(port, i).await,
                "message {i} accepted after restart"
            );
            acked.insert(i);
        }
    }

    // Every message acknowledged before the kill reached the next hop.
    let received: HashMap<String, usize> =
        sink.messages().iter().fold(HashMap::new(), |mut m, r| {
            let id = header(&r.data, "Message-ID").unwrap_or_default();
            *m.entry(id).or_default() += 1;
            m
        });
    for i in &acked_before_kill {
        assert!(
            received.contains_key(&format!("<crash-{i}@caf.example>")),
            "acked message {i} missing at next hop"
        );
    }
    for i in 0..TOTAL {
        assert!(
            received.contains_key(&format!("<crash-{i}@caf.example>")),
            "message {i} never delivered"
        );
    }

    // Exactly one ticket per message.
    let tickets = list_tickets_json(data.path());
    let tickets = tickets.as_array().unwrap();
    assert_eq!(tickets.len(), TOTAL, "one ticket per message");
    let mut seen = HashSet::new();
    for t in tickets {
        let mid = t["messages"][0]["message_id"].as_str().unwrap().to_string();
        assert!(seen.insert(mid.clone()), "two tickets for {mid}");
    }
    let ids: HashSet<&str> = tickets.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), TOTAL, "ticket ids are unique");

    child.kill_9();
}

async fn futures_join(port: u16, batch: &[usize]) -> Vec<bool> {
    let handles: Vec<_> = batch
        .iter()
        .map(|&i| tokio::spawn(try_send(port, i)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap_or(false));
    }
    out
}
