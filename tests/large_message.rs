//! A 60 MB message goes through with memory staying flat: it is spooled
//! to disk, never held whole. Peak RSS is read from /proc after the run.

mod common;

use common::*;
use sha2::{Digest, Sha256};

fn big_message(to: &str, size: usize) -> Vec<u8> {
    let mut m = format!("From: op@caf.example\r\nTo: {to}\r\nSubject: Archivio allegato\r\nMessage-ID: <big-{to}@caf.example>\r\n\r\n").into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_megabyte_messages_pass_with_flat_memory() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_binary(port, &sink.addr.to_string(), data.path(), None);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    for (i, to) in ["someone@example.com", "nuovocaso@projectpp.it"]
        .iter()
        .enumerate()
    {
        let msg = big_message(to, 60 * 1024 * 1024);
        let mut c = Client::greeted(addr).await;
        let r = c.send_mail("op@caf.example", &[to], &wire(&msg)).await;
        assert!(r.starts_with("250"), "{r}");
        let got = &sink.messages()[i].data;
        if i == 0 {
            assert_eq!(
                Sha256::digest(got),
                Sha256::digest(&msg),
                "pass-through is byte-identical"
            );
        } else {
            assert!(got.ends_with(&msg), "original follows the tags");
            assert!(header(got, "X-Ticketgate-Ticket").is_some());
        }
    }
    let peak_mib = peak_rss_kib(child.pid()) / 1024;
    child.kill_9();
    assert!(
        peak_mib < 60,
        "peak RSS {peak_mib} MiB for two 60 MB messages"
    );
    let tickets = list_tickets_json_after_restart(data.path(), &sink.addr.to_string());
    assert_eq!(tickets.as_array().unwrap().len(), 1);
    let reasons = tickets[0]["reasons"].to_string();
    assert!(reasons.contains("parse.too_large"), "{reasons}");
}

fn list_tickets_json_after_restart(data: &std::path::Path, hop: &str) -> serde_json::Value {
    let port = free_port();
    let mut child = spawn_binary(port, hop, data, None);
    let v = list_tickets_json(data);
    child.kill_9();
    v
}
