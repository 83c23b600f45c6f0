//! Hostile input: generated corpora through the DATA decoder and the MIME
//! parser, and abusive sessions. Never a panic, a hang or unbounded memory;
//! honest traffic still gets through.

mod common;

use std::time::Duration;

use common::*;
use rand::{Rng, SeedableRng};
use ticketgate::wire::data::{DataDecoder, DotStuffer};

const MSG: &[u8] = b"From: a@b.example\r\nSubject: ok\r\n\r\nbody\r\n";

/// Random bytes biased towards the ones that matter to SMTP framing.
fn framing_noise(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\r\n.\r\n..\r\r\n\n.\n\0";
    (0..len)
        .map(|_| {
            if rng.gen_bool(0.5) {
                INTERESTING[rng.gen_range(0..INTERESTING.len())]
            } else {
                rng.r#gen()
            }
        })
        .collect()
}

#[test]
fn data_decoder_is_split_invariant_and_bounded_on_generated_input() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x71c);
    for round in 0..2000 {
        let len = rng.gen_range(0..600);
        let input = framing_noise(&mut rng, len);
        let limit = rng.gen_range(1..400);
        let mut whole = DataDecoder::new(limit);
        let mut out_whole = Vec::new();
        let used_whole = whole.feed(&input, &mut out_whole);
        // The same bytes in random pieces decode to the same result.
        let mut pieces = DataDecoder::new(limit);
        let mut out_pieces = Vec::new();
        let mut used = 0;
        while used < input.len() && !pieces.is_done() {
            let take = rng.gen_range(1..=(input.len() - used).min(7));
            used += pieces.feed(&input[used..used + take], &mut out_pieces);
        }
        assert_eq!(out_whole, out_pieces, "round {round}");
        assert_eq!(whole.flags(), pieces.flags(), "round {round}");
        assert_eq!(whole.is_done(), pieces.is_done(), "round {round}");
        if whole.is_done() {
            assert_eq!(used_whole, used, "round {round}");
        }
        assert!(
            out_whole.len() as u64 <= limit,
            "round {round}: output over the limit"
        );
    }
}

#[test]
fn clean_content_round_trips_through_stuffing_and_decoding() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for _ in 0..1000 {
        // Content as the decoder produces it: CRLF lines, no bare CR/LF.
        let mut content = Vec::new();
        for _ in 0..rng.gen_range(0..20) {
            let line: Vec<u8> = (0..rng.gen_range(0..30))
                .map(|_| match rng.gen_range(0..4) {
                    0 => b'.',
                    _ => rng.gen_range(0x20..0x7f),
                })
                .collect();
            content.extend_from_slice(&line);
            content.extend_from_slice(b"\r\n");
        }
        let mut stuffer = DotStuffer::default();
        let mut wire = Vec::new();
        stuffer.stuff(&content, &mut wire);
        wire.extend_from_slice(stuffer.finish());
        let mut d = DataDecoder::new(1 << 20);
        let mut out = Vec::new();
        assert_eq!(d.feed(&wire, &mut out), wire.len());
        assert!(d.is_done());
        assert_eq!(out, content);
    }
}

#[test]
fn parser_survives_generated_and_pathological_mime() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let len = rng.gen_range(0..2000);
        let noise = framing_noise(&mut rng, len);
        let _ = ticketgate::parse::parse(&noise);
    }
    // 200 levels of nested multipart.
    let mut deep = String::from("From: a@b.example\r\nSubject: deep\r\n");
    for i in 0..200 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\r\n\r\nfondo\r\n");
    for i in (0..200).rev() {
        deep.push_str(&format!("--b{i}--\r\n"));
    }
    let _ = ticketgate::parse::parse(deep.as_bytes());
    // NUL bytes and invalid UTF-8 in headers.
    let mut bad = b"From: \xff\xfe<a@b.example>\r\nSubject: \x00\xc3\x28 caf\xe8\r\nMessage-ID: <\x00@x>\r\n\r\n\x00\x00body\r\n".to_vec();
    let parsed = ticketgate::parse::parse(&bad);
    assert!(parsed.subject.contains("caf"), "{:?}", parsed.subject);
    bad.truncate(10);
    let _ = ticketgate::parse::parse(&bad);
}

#[tokio::test]
async fn ten_thousand_rcpt_get_452_past_the_limit_and_the_session_goes_on() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let gate = start_gate(&sink.addr.to_string(), "[limits]\nmax_recipients = 100\n").await;
    let mut c = Client::greeted(gate.addr).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    let mut batch = Vec::new();
    for i in 0..10_000 {
        batch.extend_from_slice(format!("RCPT TO:<r{i}@d.example>\r\n").as_bytes());
    }
    c.send(&batch).await;
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..10_000 {
        let r = c.reply().await;
        if r.starts_with("250") {
            accepted += 1;
        } else if r.starts_with("452 4.5.3") {
            refused += 1;
        } else {
            panic!("unexpected {r}");
        }
    }
    assert_eq!((accepted, refused), (100, 9_900));
    c.cmd("DATA", 354).await;
    c.send(&wire(MSG)).await;
    c.expect(250).await;
    assert_eq!(sink.messages()[0].rcpts.len(), 100);
    gate.stop().await;
}

#[tokio::test]
async fn regression_size_overflow_wrapped_to_a_small_value_in_smtp_proto() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let gate = start_gate(&sink.addr.to_string(), "").await;
    let mut c = Client::greeted(gate.addr).await;
    // smtp-proto 0.2 parses this as a small number; it must still count as
    // far over the limit.
    let r = c
        .cmd_any("MAIL FROM:<a@b.example> SIZE=99999999999999999999999999")
        .await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    c.cmd("MAIL FROM:<a@b.example> SIZE=-1", 501).await;
    c.cmd("NOOP", 250).await;
    gate.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_idle_connections_do_not_stop_a_real_message_and_are_dropped() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let gate = start_gate(
        &sink.addr.to_string(),
        "[limits]\nmax_connections = 600\ncommand_timeout_secs = 3\n",
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(Client::connect(gate.addr).await);
    }
    let mut c = Client::greeted(gate.addr).await;
    let r = c
        .send_mail("a@b.example", &["c@d.example"], &wire(MSG))
        .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(sink.messages().len(), 1);
    // Idle clients are told 421 and dropped at the command timeout.
    let mut dropped = 0;
    for client in idle.iter_mut() {
        let r = client.reply().await;
        if r.starts_with("421 4.4.2") && client.is_closed().await {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 500);
    tokio::time::sleep(Duration::from_millis(100)).await;
    gate.stop().await;
}

/// The store's disk refuses writes (here: a file size limit on the whole
/// process): helpdesk mail gets 451 and is not forwarded, never 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_gives_451_never_250() {
    let sink = Sink::start(SinkBehaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let script = format!(
        "trap '' XFSZ; ulimit -f 256; exec {} serve --config {} --listen 127.0.0.1:{port} --next-hop {} --data-dir {} --control {} --metrics off",
        env!("CARGO_BIN_EXE_ticketgate"),
        repo_path("config/ticketgate.toml").display(),
        sink.addr,
        data.display(),
        data.join("c.sock").display()
    );
    let mut child = std::process::Command::new("sh")
        .args(["-c", &script])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..200 {
        if listens_on(child.id(), port) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = async {
        assert!(up, "ticketgate started");
        // 512 KiB: more than the 256 KiB any file may grow to.
        let mut msg = b"From: op@caf.example\r\nTo: nuovocaso@projectpp.it\r\nSubject: Registro IVA bloccato\r\nMessage-ID: <full@caf.example>\r\n\r\n".to_vec();
        while msg.len() < 512 * 1024 {
            msg.extend_from_slice(b"Il registro IVA vendite non si chiude, ecco il log completo.\r\n");
        }
        let mut c = Client::greeted(([127, 0, 0, 1], port).into()).await;
        let r = c.send_mail("op@caf.example", &["nuovocaso@projectpp.it"], &wire(&msg)).await;
        assert!(r.starts_with("451 4.3.0"), "{r}");
        assert!(sink.messages().is_empty(), "nothing forwarded");
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
