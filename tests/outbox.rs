//! Automatic replies: delivered later when the relay was down, surviving a
//! restart, capped per sender, never duplicated.

mod common;

use std::time::Duration;

use common::*;
use ticketgate::ticket::ReplyState;

fn mail(i: usize, from: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: helpdesk.sisemplice.caa@01s.it\r\nSubject: CAA: domanda PAC numero {i} respinta\r\nMessage-ID: <ob-{i}@caf.example>\r\n\r\nLa domanda PAC {i} viene respinta dal portale con errore di validazione.\r\n"
    )
    .into_bytes()
}

async fn send(addr: std::net::SocketAddr, i: usize, from: &str) {
    let mut c = Client::greeted(addr).await;
    let r = c
        .send_mail(
            from,
            &["helpdesk.sisemplice.caa@01s.it"],
            &wire(&mail(i, from)),
        )
        .await;
    assert!(r.starts_with("250"), "{r}");
}

fn free_addr() -> std::net::SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

#[tokio::test]
async fn relay_down_then_up_delivers_the_reply_once() {
    let hop = Sink::start(SinkBehaviour::default()).await;
    // Nobody listens on the relay address yet.
    let relay_addr = free_addr();
    let dg = start_desk_gate(
        &hop.addr.to_string(),
        Some(relay_addr),
        tempfile::tempdir().unwrap(),
    )
    .await;
    send(dg.gate.addr, 1, "op@caf.example").await;
    let store = dg.desks.store().clone();
    assert!(
        eventually_async(|| async { store.list().await.unwrap()[0].replies[0].attempts >= 1 })
            .await,
        "a first attempt failed"
    );
    assert_eq!(
        store.list().await.unwrap()[0].replies[0].state,
        ReplyState::Queued
    );
    // The relay comes up on that address.
    let listener = tokio::net::TcpListener::bind(relay_addr).await.unwrap();
    let relay = Sink::serve(listener, SinkBehaviour::default()).await;
    assert!(
        eventually(|| relay.messages().len() == 1).await,
        "reply delivered after the relay came up"
    );
    assert!(
        eventually_async(|| async {
            store.list().await.unwrap()[0].replies[0].state == ReplyState::Sent
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(relay.messages().len(), 1, "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_replies_survive_a_restart() {
    let hop = Sink::start(SinkBehaviour::default()).await;
    let relay_port = free_port();
    let relay_arg = format!("127.0.0.1:{relay_port}");
    let data = tempfile::tempdir().unwrap();
    // The shipped config with a 1 s first retry: the restarted server
    // keeps the backoff of the attempt made before the kill.
    let config = data.path().join("ticketgate.toml");
    let shipped = std::fs::read_to_string(repo_path("config/ticketgate.toml")).unwrap();
    let templates = repo_path("config/templates");
    std::fs::write(
        &config,
        shipped
            .replace("retry_initial_secs = 30", "retry_initial_secs = 1")
            .replace(
                "templates_dir = \"templates\"",
                &format!("templates_dir = \"{}\"", templates.display()),
            ),
    )
    .unwrap();
    let start = |port| {
        spawn_ticketgate(
            &config,
            port,
            &hop.addr.to_string(),
            data.path(),
            &["--reply-relay", &relay_arg],
            None,
        )
    };
    let port = free_port();
    let mut child = start(port);
    send(([127, 0, 0, 1], port).into(), 2, "op@caf.example").await;
    // Wait for the first attempt to have failed (relay down) and been
    // recorded, so the restart finds a reply already tried, not a fresh one.
    let data_path = data.path().to_path_buf();
    assert!(
        eventually(|| list_tickets_json(&data_path)[0]["replies"][0]["attempts"] == 1).await,
        "first attempt recorded"
    );
    let t = &list_tickets_json(data.path())[0];
    assert_eq!(t["replies"][0]["state"], "queued", "{t}");
    // SIGKILL: nothing gets a chance to flush.
    child.kill_9();
    // The relay is up now; a restarted ticketgate delivers the reply.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", relay_port))
        .await
        .unwrap();
    let relay = Sink::serve(listener, SinkBehaviour::default()).await;
    let mut child = start(port);
    assert!(
        eventually(|| relay.messages().len() == 1).await,
        "reply delivered after restart"
    );
    let raw = &relay.messages()[0].data;
    assert_eq!(
        header(raw, "X-Ticketgate-Ticket").as_deref(),
        t["id"].as_str()
    );
    assert!(
        eventually(|| list_tickets_json(&data_path)[0]["replies"][0]["state"] == "sent").await,
        "state recorded as sent"
    );
    child.kill_9();
}

#[tokio::test]
async fn replies_per_sender_are_capped_by_the_rate_limit() {
    let (dg, _hop, relay) = desk_gate_with_sinks(|c| c.outbox.rate_limit_per_hour = 2).await;
    for i in 10..13 {
        send(dg.gate.addr, i, "chatty@caf.example").await;
    }
    // Another sender is not affected.
    send(dg.gate.addr, 20, "quiet@caf.example").await;
    assert!(eventually(|| relay.messages().len() == 3).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.messages().len(), 3);
    let tickets = dg.desks.store().list().await.unwrap();
    assert_eq!(tickets.len(), 4, "every message still opens its ticket");
    let rate_limited = Some(ticketgate::reason::ReasonCode::ReplySuppressedRateLimit);
    let capped: Vec<_> = tickets
        .iter()
        .filter(|t| t.replies.iter().all(|r| r.state != ReplyState::Sent))
        .collect();
    assert_eq!(capped.len(), 1);
    assert_eq!(capped[0].requester, "chatty@caf.example");
    assert_eq!(capped[0].replies[0].state, ReplyState::Cancelled);
    assert_eq!(capped[0].replies[0].reason, rate_limited);
}
