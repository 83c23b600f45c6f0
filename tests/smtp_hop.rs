//! The lossless SMTP hop: what reaches the next hop, and what the client is
//! told, for normal mail, refusals, failures, limits and attacks.

mod common;

use std::time::Duration;

use common::*;

const MSG: &[u8] = b"From: Mario Rossi <mario@example.org>\r\nTo: info@example.com\r\nSubject: prova\r\nMessage-ID: <a1@example.org>\r\n\r\nCiao,\r\nriga due.\r\n";

async fn gate_and_sink(extra: &str) -> (Gate, Sink) {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let gate = start_gate(&sink.addr.to_string(), extra).await;
    (gate, sink)
}

#[tokio::test]
async fn normal_mail_reaches_next_hop_byte_identical() {
    let (gate, sink) = gate_and_sink("").await;
    let mut c = Client::connect(gate.addr).await;
    let ehlo = c.cmd("EHLO client.example.org", 250).await;
    for cap in [
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(cap), "EHLO lacks {cap}: {ehlo}");
    }
    let reply = c
        .send_mail("mario@example.org", &["info@example.com"], &wire(MSG))
        .await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert!(
        reply.contains("queued as SINK1"),
        "next hop's text relayed: {reply}"
    );
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, MSG);
    assert_eq!(got[0].from, "mario@example.org");
    assert_eq!(got[0].rcpts, vec!["info@example.com"]);
    c.cmd("QUIT", 221).await;
    gate.stop().await;
}

#[tokio::test]
async fn dot_stuffing_is_correct_both_ways() {
    let (gate, sink) = gate_and_sink("").await;
    let content = b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nend.\r\n";
    let mut c = Client::greeted(gate.addr).await;
    let reply = c
        .send_mail("a@b.example", &["c@d.example"], &wire(content))
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(sink.messages()[0].data, content);
    gate.stop().await;
}

#[tokio::test]
async fn eight_bit_body_passes_unchanged() {
    let (gate, sink) = gate_and_sink("").await;
    let mut content = b"Subject: =?UTF-8?Q?citt=C3=A0?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    content.extend_from_slice("perché è così: città, €\r\n".as_bytes());
    content.extend_from_slice(b"latin1: \xe8\xe0\xf9\r\n");
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example> BODY=8BITMIME SMTPUTF8", 250)
        .await;
    c.cmd("RCPT TO:<c@d.example>", 250).await;
    c.cmd("DATA", 354).await;
    c.send(&wire(&content)).await;
    c.expect(250).await;
    assert_eq!(sink.messages()[0].data, content);
    gate.stop().await;
}

#[tokio::test]
async fn pipelined_commands_get_replies_in_order() {
    let (gate, sink) = gate_and_sink("").await;
    let mut c = Client::greeted(gate.addr).await;
    let mut batch = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<one@d.example>\r\nRCPT TO:<two@d.example>\r\nDATA\r\n".to_vec();
    c.send(&batch).await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(354).await;
    batch = wire(MSG);
    batch.extend_from_slice(b"NOOP\r\nQUIT\r\n");
    c.send(&batch).await;
    c.expect(250).await;
    c.expect(250).await;
    c.expect(221).await;
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["one@d.example", "two@d.example"]);
    gate.stop().await;
}

#[tokio::test]
async fn next_hop_rcpt_refusals_are_relayed_with_their_text() {
    let sink = Sink::start(SinkBehaviour {
        rcpt_replies: vec![
            (
                "unknown".into(),
                "550 5.1.1 <unknown@d.example>: Recipient address rejected".into(),
            ),
            ("full".into(), "452 4.2.2 Mailbox full".into()),
        ],
        ..Default::default()
    })
    .await;
    let gate = start_gate(&sink.addr.to_string(), "").await;
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    let r = c.cmd("RCPT TO:<unknown@d.example>", 550).await;
    assert!(
        r.contains("5.1.1") && r.contains("Recipient address rejected"),
        "{r}"
    );
    let r = c.cmd("RCPT TO:<full@d.example>", 452).await;
    assert!(r.contains("4.2.2 Mailbox full"), "{r}");
    c.cmd("RCPT TO:<ok@d.example>", 250).await;
    c.cmd("DATA", 354).await;
    c.send(&wire(MSG)).await;
    c.expect(250).await;
    assert_eq!(sink.messages()[0].rcpts, vec!["ok@d.example"]);
    gate.stop().await;
}

async fn data_refusal_is_relayed(reply: &str, code: u16) {
    let sink = Sink::start(SinkBehaviour {
        data_reply: Some(reply.into()),
        ..Default::default()
    })
    .await;
    let gate = start_gate(&sink.addr.to_string(), "").await;
    let mut c = Client::greeted(gate.addr).await;
    let got = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(got.starts_with(&code.to_string()), "{got}");
    assert!(got.contains(&reply[4..]), "next hop text relayed: {got}");
    assert!(sink.messages().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn next_hop_permanent_data_refusal_is_relayed() {
    data_refusal_is_relayed("554 5.7.1 Spam detected", 554).await;
}

#[tokio::test]
async fn next_hop_temporary_data_refusal_is_relayed() {
    data_refusal_is_relayed("451 4.3.0 Try later please", 451).await;
}

#[tokio::test]
async fn next_hop_refusing_the_data_command_is_relayed() {
    let sink = Sink::start(SinkBehaviour {
        data_command_reply: Some("554 5.5.1 No data for you".into()),
        ..Default::default()
    })
    .await;
    let gate = start_gate(&sink.addr.to_string(), "").await;
    let mut c = Client::greeted(gate.addr).await;
    let got = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(got.starts_with("554 5.5.1 No data for you"), "{got}");
    gate.stop().await;
}

#[tokio::test]
async fn next_hop_down_gives_451_441() {
    // A port with nobody listening.
    let port = free_port();
    let gate = start_gate(&format!("127.0.0.1:{port}"), "").await;
    let mut c = Client::greeted(gate.addr).await;
    let r = c.cmd("MAIL FROM:<a@b.example>", 451).await;
    assert!(r.contains("4.4.1"), "{r}");
    gate.stop().await;
}

#[tokio::test]
async fn next_hop_closing_mid_data_gives_451_and_nothing_delivered() {
    let sink = Sink::start(SinkBehaviour {
        close_mid_data_after: Some(10),
        ..Default::default()
    })
    .await;
    let gate = start_gate(&sink.addr.to_string(), "").await;
    let mut c = Client::greeted(gate.addr).await;
    let got = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(got.starts_with("451 4.4.1"), "{got}");
    assert!(sink.messages().is_empty());
    // The session goes on with a fresh next hop connection.
    sink.behaviour.lock().unwrap().close_mid_data_after = None;
    let got = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(got.starts_with("250"), "{got}");
    assert_eq!(sink.messages().len(), 1);
    gate.stop().await;
}

#[tokio::test]
async fn slow_next_hop_times_out_with_451() {
    let sink = Sink::start(SinkBehaviour {
        data_delay: Some(Duration::from_secs(5)),
        ..Default::default()
    })
    .await;
    let gate = start_gate(
        &sink.addr.to_string(),
        "[limits]\nnext_hop_timeout_secs = 1\n",
    )
    .await;
    let mut c = Client::greeted(gate.addr).await;
    let got = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(got.starts_with("451 4.4.1"), "{got}");
    gate.stop().await;
}

#[tokio::test]
async fn idle_client_is_dropped_at_command_timeout() {
    let (gate, _sink) = gate_and_sink("[limits]\ncommand_timeout_secs = 1\n").await;
    let mut c = Client::connect(gate.addr).await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(c.is_closed().await);
    gate.stop().await;
}

#[tokio::test]
async fn stalled_data_is_dropped_at_data_timeout_and_not_delivered() {
    let (gate, sink) = gate_and_sink("[limits]\ndata_timeout_secs = 1\n").await;
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.cmd("RCPT TO:<c@d.example>", 250).await;
    c.cmd("DATA", 354).await;
    c.send(b"Subject: half\r\n\r\nonly half").await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(sink.messages().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn command_line_over_512_octets_gets_500_552_and_session_goes_on() {
    let (gate, _sink) = gate_and_sink("").await;
    let mut c = Client::greeted(gate.addr).await;
    let long = format!("NOOP {}", "x".repeat(600));
    let r = c.cmd(&long, 500).await;
    assert!(r.contains("5.5.2"), "{r}");
    // 100 KB line: memory stays bounded and the session stays in sync.
    let huge = format!("NOOP {}", "y".repeat(100_000));
    c.cmd(&huge, 500).await;
    c.cmd("NOOP", 250).await;
    // Exactly 512 octets with CRLF is allowed.
    let max = format!("NOOP {}", "z".repeat(512 - 2 - 5));
    c.cmd(&max, 250).await;
    gate.stop().await;
}

#[tokio::test]
async fn declared_size_over_limit_gets_552_534_at_mail() {
    let (gate, _sink) = gate_and_sink("[limits]\nmax_message_size = 1000\n").await;
    let mut c = Client::connect(gate.addr).await;
    let ehlo = c.cmd("EHLO x", 250).await;
    assert!(ehlo.contains("SIZE 1000"), "{ehlo}");
    let r = c.cmd("MAIL FROM:<a@b.example> SIZE=1001", 552).await;
    assert!(r.contains("5.3.4"), "{r}");
    c.cmd("MAIL FROM:<a@b.example> SIZE=999", 250).await;
    gate.stop().await;
}

#[tokio::test]
async fn actual_size_over_limit_gets_552_and_nothing_forwarded() {
    let (gate, sink) = gate_and_sink("[limits]\nmax_message_size = 1000\n").await;
    let mut c = Client::greeted(gate.addr).await;
    let big = format!("Subject: big\r\n\r\n{}\r\n", "a".repeat(2000));
    let r = c
        .send_mail("a@b.example", &["c@d.example"], &wire(big.as_bytes()))
        .await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(sink.messages().is_empty());
    let r = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(sink.messages().len(), 1);
    gate.stop().await;
}

#[tokio::test]
async fn recipients_over_limit_get_452_453() {
    let (gate, sink) = gate_and_sink("[limits]\nmax_recipients = 2\n").await;
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.cmd("RCPT TO:<r1@d.example>", 250).await;
    c.cmd("RCPT TO:<r2@d.example>", 250).await;
    let r = c.cmd("RCPT TO:<r3@d.example>", 452).await;
    assert!(r.contains("4.5.3"), "{r}");
    c.cmd("DATA", 354).await;
    c.send(&wire(MSG)).await;
    c.expect(250).await;
    assert_eq!(sink.messages()[0].rcpts.len(), 2);
    gate.stop().await;
}

#[tokio::test]
async fn connections_over_limit_get_421_470_when_no_session_is_idle() {
    let (gate, _sink) = gate_and_sink("[limits]\nmax_connections = 1\n").await;
    // In the middle of DATA: busy, so not a session to close for another.
    let mut first = Client::greeted(gate.addr).await;
    first.cmd("MAIL FROM:<a@b.example>", 250).await;
    first.cmd("RCPT TO:<c@d.example>", 250).await;
    first.cmd("DATA", 354).await;
    let stream = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut line)
        .await
        .unwrap();
    assert!(line.starts_with("421 4.7.0"), "{line}");
    gate.stop().await;
}

#[tokio::test]
async fn at_the_limit_the_longest_idle_session_makes_room() {
    let (gate, _sink) = gate_and_sink("[limits]\nmax_connections = 1\n").await;
    let mut idle = Client::greeted(gate.addr).await;
    let mut second = Client::connect(gate.addr).await;
    second.cmd("EHLO second.example", 250).await;
    let told = idle.reply().await;
    assert!(told.starts_with("421 4.7.0"), "{told}");
    assert!(idle.is_closed().await);
    gate.stop().await;
}

async fn smuggling_attempt_is_refused(data: &[u8]) {
    let (gate, sink) = gate_and_sink("").await;
    let mut c = Client::greeted(gate.addr).await;
    let r = c.send_mail("a@b.example", &["c@d.example"], data).await;
    assert!(r.starts_with("554 5.6.0"), "{r}");
    // Nothing forwarded, and the smuggled commands were not run: the next
    // reply is to our NOOP, not to a smuggled MAIL.
    c.cmd("NOOP", 250).await;
    assert!(sink.messages().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn bare_lf_in_data_is_refused() {
    smuggling_attempt_is_refused(b"Subject: x\r\n\r\nline with bare lf\nmore\r\n.\r\n").await;
}

#[tokio::test]
async fn bare_cr_in_data_is_refused() {
    smuggling_attempt_is_refused(b"Subject: x\r\n\r\nline with bare cr\rmore\r\n.\r\n").await;
}

#[tokio::test]
async fn lf_dot_lf_smuggling_is_refused() {
    smuggling_attempt_is_refused(
        b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@x.example>\nRCPT TO:<victim@d.example>\nDATA\nSubject: smuggled\n\nevil\n.\r\n.\r\n",
    )
    .await;
}

#[tokio::test]
async fn crlf_dot_cr_cr_lf_smuggling_is_refused() {
    smuggling_attempt_is_refused(
        b"Subject: x\r\n\r\nhi\r\n.\r\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@d.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n",
    )
    .await;
}

#[tokio::test]
async fn shutdown_lets_a_running_transaction_finish_then_says_421() {
    let (mut gate, sink) = gate_and_sink("").await;
    let mut busy = Client::connect(gate.addr).await;
    busy.cmd("EHLO x", 250).await;
    busy.cmd("MAIL FROM:<a@b.example>", 250).await;
    busy.cmd("RCPT TO:<c@d.example>", 250).await;
    let mut idle = Client::connect(gate.addr).await;
    idle.cmd("EHLO y", 250).await;
    gate.begin_stop();
    // The idle session is told to come back later.
    let r = idle.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    // The running transaction completes.
    busy.cmd("DATA", 354).await;
    busy.send(&wire(MSG)).await;
    busy.expect(250).await;
    assert_eq!(sink.messages().len(), 1);
    // And the session is closed after it.
    let r = busy.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    // No new connections.
    assert!(tokio::net::TcpStream::connect(gate.addr).await.is_err());
    gate.stop().await;
}

#[tokio::test]
async fn shutdown_grace_expiry_closes_a_stalled_transaction_with_421() {
    let (mut gate, sink) = gate_and_sink("[limits]\nshutdown_grace_secs = 1\n").await;
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    gate.begin_stop();
    let r = c.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    assert!(sink.messages().is_empty());
    gate.stop().await;
}

#[tokio::test]
async fn xforward_from_trusted_upstream_reaches_next_hop() {
    let sink = Sink::start(SinkBehaviour {
        advertise_xforward: true,
        ..Default::default()
    })
    .await;
    let gate = start_gate(&sink.addr.to_string(), "").await;
    let mut c = Client::connect(gate.addr).await;
    let ehlo = c.cmd("EHLO postfix", 250).await;
    assert!(ehlo.contains("XFORWARD"), "{ehlo}");
    c.cmd(
        "XFORWARD NAME=mx.example.org ADDR=192.0.2.7 PROTO=ESMTP HELO=mx.example.org",
        250,
    )
    .await;
    let r = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(r.starts_with("250"), "{r}");
    let got = sink.messages();
    assert!(
        got[0]
            .xforward
            .iter()
            .any(|l| l.contains("ADDR=192.0.2.7") && l.contains("HELO=mx.example.org")),
        "{:?}",
        got[0].xforward
    );
    gate.stop().await;
}

#[tokio::test]
async fn xforward_and_xclient_from_untrusted_client_are_refused() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    // 127.0.0.1 is untrusted when another upstream is the only one listed.
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&sink.addr.to_string(), data_dir.path(), "");
    config.server.trusted_upstreams = vec!["192.0.2.1".parse().unwrap()];
    let gate = start_gate_with(config, data_dir).await;
    let mut c = Client::connect(gate.addr).await;
    let ehlo = c.cmd("EHLO x", 250).await;
    assert!(!ehlo.contains("XFORWARD"), "{ehlo}");
    c.cmd("XFORWARD ADDR=192.0.2.7", 550).await;
    c.cmd("XCLIENT ADDR=192.0.2.7", 550).await;
    gate.stop().await;
}

#[tokio::test]
async fn rset_aborts_and_a_new_transaction_works() {
    let (gate, sink) = gate_and_sink("").await;
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.cmd("RCPT TO:<first@d.example>", 250).await;
    c.cmd("RSET", 250).await;
    c.cmd("RCPT TO:<x@d.example>", 503).await;
    let r = c.send_mail("", &["second@d.example"], &wire(MSG)).await;
    assert!(r.starts_with("250"), "{r}");
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "");
    assert_eq!(got[0].rcpts, vec!["second@d.example"]);
    gate.stop().await;
}

#[tokio::test]
async fn commands_out_of_order_get_503() {
    let (gate, _sink) = gate_and_sink("").await;
    let mut c = Client::connect(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 503).await;
    c.cmd("EHLO x", 250).await;
    c.cmd("DATA", 503).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.cmd("MAIL FROM:<a@b.example>", 503).await;
    c.cmd("DATA", 554).await;
    c.cmd("HELP", 502).await;
    c.cmd("FOO bar", 500).await;
    gate.stop().await;
}

#[tokio::test]
async fn maildir_next_hop_stores_the_message_byte_identical() {
    let maildir = tempfile::tempdir().unwrap();
    let gate = start_gate(&format!("maildir:{}", maildir.path().display()), "").await;
    let mut c = Client::greeted(gate.addr).await;
    let r = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let files: Vec<_> = std::fs::read_dir(maildir.path().join("new"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    let content = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(content, MSG);
    assert_eq!(
        std::fs::read_dir(maildir.path().join("tmp"))
            .unwrap()
            .count(),
        0
    );
    gate.stop().await;
}

#[tokio::test]
async fn large_message_is_spooled_and_forwarded_intact() {
    let (gate, sink) = gate_and_sink("[limits]\nspool_memory_bytes = 65536\n").await;
    let mut content = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..40_000 {
        content.extend_from_slice(format!("{i:08} .line of a big message\r\n").as_bytes());
        if i % 1000 == 0 {
            content.extend_from_slice(b".dot at line start\r\n");
        }
    }
    let mut c = Client::greeted(gate.addr).await;
    let r = c
        .send_mail("a@b.example", &["c@d.example"], &wire(&content))
        .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(sink.messages()[0].data, content);
    // The spool file is gone once the message is delivered.
    let spool = gate.data_dir.path().join("spool");
    assert_eq!(std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0), 0);
    gate.stop().await;
}

#[tokio::test]
async fn shutdown_grace_expiry_closes_a_client_stalled_in_data() {
    let (mut gate, sink) = gate_and_sink("[limits]\nshutdown_grace_secs = 1\n").await;
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.cmd("RCPT TO:<c@d.example>", 250).await;
    c.cmd("DATA", 354).await;
    c.send(b"Subject: half\r\n\r\nhalf a message").await;
    gate.begin_stop();
    let r = c.reply().await;
    assert!(r.starts_with("421 4.3.2"), "{r}");
    assert!(sink.messages().is_empty());
    gate.stop().await;
}
