//! What an admin does to a running server: SIGHUP reloads the helpdesks
//! without dropping anything; shadow mode changes nothing.

mod common;

use common::*;

fn mail(to: &str, id: &str) -> Vec<u8> {
    format!(
        "From: op@caf.example\r\nTo: {to}\r\nSubject: Stampa bloccata sul gestionale\r\nMessage-ID: <{id}@caf.example>\r\n\r\nLa stampa dei documenti di trasporto si blocca con un errore di memoria.\r\n"
    )
    .into_bytes()
}

async fn send(port: u16, to: &str, id: &str) {
    let mut c = Client::connect(([127, 0, 0, 1], port).into()).await;
    c.cmd("EHLO x", 250).await;
    let r = c
        .send_mail("op@caf.example", &[to], &wire(&mail(to, id)))
        .await;
    assert!(r.starts_with("250"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_helpdesk_table_and_a_bad_file_is_refused() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ticketgate.toml");
    let shipped = std::fs::read_to_string(repo_path("config/ticketgate.toml")).unwrap();
    std::fs::write(&config, &shipped).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let gate = spawn_ticketgate(&config, port, &sink.addr.to_string(), &data, &[], None);

    // Not a helpdesk address yet: passes untouched.
    send(port, "assistenza@nuovo.example", "before").await;
    assert_eq!(
        sink.messages()[0].data,
        mail("assistenza@nuovo.example", "before")
    );

    // An idle session stays open across the reload.
    let mut idle = Client::connect(([127, 0, 0, 1], port).into()).await;
    idle.cmd("EHLO idle", 250).await;

    let added = "\n[[helpdesk]]\nname = \"Nuovo\"\nticket_prefix = \"NU\"\nreply_from = \"assistenza@nuovo.example\"\n[[helpdesk.queue]]\naddress = \"assistenza@nuovo.example\"\n";
    std::fs::write(&config, format!("{shipped}{added}")).unwrap();
    nix_kill(gate.pid(), "HUP");
    // Give the signal a moment to be handled, then the address opens tickets.
    let mut tagged = false;
    for i in 0..40 {
        send(port, "assistenza@nuovo.example", &format!("after{i}")).await;
        let last = sink.messages().last().unwrap().data.clone();
        if header(&last, "X-Ticketgate-Helpdesk").as_deref() == Some("Nuovo") {
            tagged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        tagged,
        "after SIGHUP the new helpdesk address opens tickets"
    );
    idle.cmd("NOOP", 250).await;

    // A broken file is refused; the running table stays.
    std::fs::write(
        &config,
        format!("{shipped}{added}\n[[helpdesk]]\nname = \"\"\n"),
    )
    .unwrap();
    nix_kill(gate.pid(), "HUP");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    send(port, "assistenza@nuovo.example", "still").await;
    let last = sink.messages().last().unwrap().data.clone();
    assert_eq!(
        header(&last, "X-Ticketgate-Helpdesk").as_deref(),
        Some("Nuovo")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_changes_nothing_and_logs_what_it_would_do() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let port = free_port();
    let _gate = spawn_ticketgate(
        &repo_path("config/ticketgate.toml"),
        port,
        &sink.addr.to_string(),
        &data,
        &["--shadow", "--log-format", "json"],
        Some(&log),
    );
    send(port, "nuovocaso@projectpp.it", "shadow1").await;
    assert_eq!(
        sink.messages()[0].data,
        mail("nuovocaso@projectpp.it", "shadow1"),
        "byte-identical"
    );
    assert!(
        list_tickets_json(&data).as_array().unwrap().is_empty(),
        "no ticket"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("shadow: would have ticketed"))
        .expect("shadow log line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["helpdesk"], "Project++");
    assert_eq!(v["queue"], "nuovocaso");
}

fn nix_kill(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_and_counters_log_count_what_happened() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let config = repo_path("config/ticketgate.toml");
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let port = free_port();
    let gate = spawn_ticketgate(
        &config,
        port,
        &sink.addr.to_string(),
        &data,
        &["--log-format", "json", "--metrics", &metrics_addr],
        Some(&log),
    );
    send(port, "nuovocaso@projectpp.it", "m1").await;
    send(port, "someone@example.com", "m2").await;
    let text = http_get(&metrics_addr, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("ticketgate_messages_total{action=\"created\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("ticketgate_messages_total{action=\"passed\"} 1\n"),
        "{text}"
    );
    // Two sessions, plus the probe that waited for the listener.
    assert!(text.contains("ticketgate_connections_total 3\n"), "{text}");
    assert!(
        text.contains("ticketgate_next_hop_seconds_count 2\n"),
        "{text}"
    );
    assert!(
        http_get(&metrics_addr, "/other")
            .await
            .starts_with("HTTP/1.1 404")
    );

    nix_kill(gate.pid(), "USR1");
    let mut counters = None;
    for _ in 0..50 {
        let logged = std::fs::read_to_string(&log).unwrap();
        counters = logged
            .lines()
            .find(|l| l.contains("\"message\":\"counters\""))
            .map(str::to_string);
        if counters.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let v: serde_json::Value =
        serde_json::from_str(&counters.expect("counters event after SIGUSR1")).unwrap();
    assert_eq!(v["created"], 1);
    assert_eq!(v["passed"], 1);
}

/// The JSON log lines of `log` whose message is `message`.
fn logged(log: &std::path::Path, message: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message || v["message"] == message)
        .collect()
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    if v["fields"].is_object() {
        &v["fields"][name]
    } else {
        &v[name]
    }
}

/// Every refusal and every cap hit is one log line with its reason code and
/// the session id; the caps are counted on /metrics too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_and_a_cap_hit_each_log_one_line_with_reason_and_session() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let config = repo_path("config/ticketgate.toml");
    let (data, log, port) = (dir.path().join("data"), dir.path().join("log"), free_port());
    let _gate = spawn_ticketgate(
        &config,
        port,
        &sink.addr.to_string(),
        &data,
        &["--log-format", "json", "--metrics", &metrics_addr],
        Some(&log),
    );
    let mut c = Client::connect(([127, 0, 0, 1], port).into()).await;
    c.cmd("EHLO x", 250).await;
    c.cmd("MAIL FROM:<op@caf.example>", 250).await;
    c.cmd("RCPT TO:<no domain@>", 501).await;
    // 1,500 parts, over the shipped max_mime_parts of 1,000.
    let mut body = String::from(
        "From: op@caf.example\r\nTo: nuovocaso@projectpp.it\r\nSubject: Registro IVA bloccato\r\nMessage-ID: <parts@caf.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
    );
    for i in 0..1500 {
        body.push_str(&format!(
            "--b\r\nContent-Type: text/plain\r\n\r\nparte {i}\r\n"
        ));
    }
    body.push_str("--b--\r\n");
    c.cmd("RCPT TO:<nuovocaso@projectpp.it>", 250).await;
    c.cmd("DATA", 354).await;
    c.send(&wire(body.as_bytes())).await;
    c.expect(250).await;
    c.cmd("QUIT", 221).await;
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = logged(&log, "refused");
        if !refused.is_empty() && !logged(&log, "cap hit").is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(field(&refused[0], "reason"), "refused.address");
    let session = field(&refused[0], "session").as_str().unwrap().to_string();
    assert!(!session.is_empty());
    let caps = logged(&log, "cap hit");
    assert_eq!(caps.len(), 1, "{caps:?}");
    assert_eq!(field(&caps[0], "reason"), "cap.mime_parts");
    assert_eq!(field(&caps[0], "session"), session.as_str());
    let text = http_get(&metrics_addr, "/metrics").await;
    assert!(
        text.contains("ticketgate_caps_total{reason=\"cap.mime_parts\"} 1\n"),
        "{text}"
    );
}

/// A client that repeats bad commands gets its refusals logged up to a
/// bound, then one line that says the rest are not: its log lines do not
/// grow with what it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_logs_at_most_twenty_refusals_then_says_it_stopped() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (data, log, port) = (dir.path().join("data"), dir.path().join("log"), free_port());
    let _gate = spawn_ticketgate(
        &repo_path("config/ticketgate.toml"),
        port,
        &sink.addr.to_string(),
        &data,
        &["--log-format", "json"],
        Some(&log),
    );
    let mut c = Client::connect(([127, 0, 0, 1], port).into()).await;
    c.cmd("EHLO x", 250).await;
    for _ in 0..1000 {
        c.cmd("NOSUCH", 500).await;
    }
    c.cmd("QUIT", 221).await;
    let mut stopped = Vec::new();
    for _ in 0..50 {
        stopped = logged(&log, "further refusals of this session are not logged");
        if !stopped.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stopped.len(), 1);
    assert_eq!(logged(&log, "refused").len(), 20);
}
