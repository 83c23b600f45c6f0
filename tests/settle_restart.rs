//! What a crash leaves in the store, settled by the outbox when it starts:
//! stores written as a killed process leaves them (a held reply of a
//! recorded delivery, a held reply whose message never got its 250, a
//! reply sent but not recorded as sent), then an outbox started on them
//! and a relay sink that shows what went out.

mod common;

use common::*;
use ticketgate::config::{OutboxConfig, ReplyRelay};
use ticketgate::outbox::Outbox;
use ticketgate::reason::ReasonCode;
use ticketgate::store::TicketStore;
use ticketgate::ticket::{ReplyState, Status, Ticket, Timestamp};

#[path = "support/tickets.rs"]
mod tickets;
use tickets::*;

fn config() -> OutboxConfig {
    OutboxConfig {
        retry_initial_secs: 1,
        sweep_interval_secs: 1,
        settle_horizon_secs: 3600,
        max_attempts: 3,
        ..OutboxConfig::default()
    }
}

/// A ticket of one message (`received_at`, `delivered`) and one reply.
fn ticket(name: &str, received_at: &str, delivered: bool, state: ReplyState) -> Ticket {
    let identity = format!("id-{name}");
    let message_id = format!("reply-{name}@gate.test");
    let requester = format!("{name}@caf.example");
    let mut t = sample_ticket(&requester, name, received_at);
    t.messages[0].delivered = delivered;
    t.messages[0].identity = Some(identity.clone());
    let raw = format!(
        "From: <nuovocaso@projectpp.it>\r\nTo: <{requester}>\r\nSubject: {name}\r\nMessage-ID: <{message_id}>\r\nAuto-Submitted: auto-replied\r\n\r\nok\r\n"
    );
    let mut reply = sample_reply(&requester, &message_id, state, raw);
    reply.answers = Some(identity);
    t.replies = vec![reply];
    t
}

async fn create(store: &TicketStore, t: Ticket) -> String {
    let outcome = store.submit(create_change(t)).await.unwrap();
    outcome.ticket().id.clone()
}

const LONG_AGO: &str = "2026-01-01T00:00:00Z";

async fn by_subject(store: &TicketStore, subject: &str) -> Ticket {
    store
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.subject == subject)
        .unwrap()
}

fn rcpts(relay: &Sink) -> Vec<String> {
    let mut all: Vec<String> = relay.messages().into_iter().flat_map(|m| m.rcpts).collect();
    all.sort();
    all
}

#[tokio::test]
async fn start_up_settles_what_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = TicketStore::open(dir.path()).unwrap();
    let now = Timestamp::now().to_string();
    // Delivery recorded, reply still held (killed before the release).
    create(
        &store,
        ticket("delivered", LONG_AGO, true, ReplyState::Held),
    )
    .await;
    // Never got a 250, long ago: cancelled, and the ticket is void.
    create(&store, ticket("lost", LONG_AGO, false, ReplyState::Held)).await;
    // Never got a 250 yet, but just now: a retry may still come.
    create(&store, ticket("young", &now, false, ReplyState::Held)).await;
    // Sent once, killed before `sent` was recorded: sent again.
    let mut resend = ticket("resend", LONG_AGO, true, ReplyState::Queued);
    resend.replies[0].attempts = 1;
    resend.replies[0].next_attempt_at = Some(at(LONG_AGO));
    create(&store, resend).await;
    // A void ticket's queued reply: never sent.
    let mut void = ticket("void", LONG_AGO, false, ReplyState::Queued);
    void.status = Status::Void;
    create(&store, void).await;
    // Out of attempts: failed, not sent.
    let mut spent = ticket("spent", LONG_AGO, true, ReplyState::Queued);
    spent.replies[0].attempts = 3;
    create(&store, spent).await;

    let relay = Sink::start(SinkBehaviour::default()).await;
    let _outbox = Outbox::start(
        store.clone(),
        Some(ReplyRelay::Smtp(relay.addr)),
        "gate.test",
        config(),
    )
    .await;
    let s = store.clone();
    let settled = eventually_async(|| async {
        for n in ["delivered", "lost", "resend", "void", "spent"] {
            let state = by_subject(&s, n).await.replies[0].state;
            if matches!(state, ReplyState::Held | ReplyState::Queued) {
                return false;
            }
        }
        true
    })
    .await;
    assert!(settled, "{:#?}", store.list().await.unwrap());
    assert_eq!(
        rcpts(&relay),
        vec!["delivered@caf.example", "resend@caf.example"]
    );
    let resent = relay
        .messages()
        .into_iter()
        .find(|m| m.rcpts == ["resend@caf.example"])
        .unwrap();
    assert_eq!(
        header(&resent.data, "Message-ID").as_deref(),
        Some("<reply-resend@gate.test>"),
        "the same Message-ID as the first attempt"
    );
    let lost = by_subject(&store, "lost").await;
    assert_eq!(lost.status, Status::Void);
    assert_eq!(
        lost.void.map(|v| v.reason),
        Some(ReasonCode::TicketVoidUndelivered)
    );
    assert_eq!(
        lost.replies[0].reason,
        Some(ReasonCode::ReplyCancelledUndelivered)
    );
    let void = by_subject(&store, "void").await.replies[0].clone();
    assert_eq!(void.state, ReplyState::Cancelled);
    assert_eq!(void.reason, Some(ReasonCode::ReplyCancelledVoid));
    let spent = by_subject(&store, "spent").await.replies[0].clone();
    assert_eq!(spent.state, ReplyState::Failed);
    assert_eq!(spent.reason, Some(ReasonCode::ReplyFailedAttempts));
    let young = by_subject(&store, "young").await;
    assert_eq!(young.replies[0].state, ReplyState::Held);
    assert_eq!(young.status, Status::Open);
}

#[tokio::test]
async fn an_attempt_that_cannot_be_recorded_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let store = TicketStore::open(dir.path()).unwrap();
    create(&store, ticket("queued", LONG_AGO, true, ReplyState::Queued)).await;
    let for_outbox = store.clone();
    // The writer stops: reads still work, no write can be recorded.
    store.close().await;
    let relay = Sink::start(SinkBehaviour::default()).await;
    let _outbox = Outbox::start(
        for_outbox.clone(),
        Some(ReplyRelay::Smtp(relay.addr)),
        "gate.test",
        config(),
    )
    .await;
    // Several rounds of the worker (retry_initial_secs = 1).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(relay.messages().is_empty(), "sent without a record");
    let t = by_subject(&for_outbox, "queued").await;
    assert_eq!(t.replies[0].state, ReplyState::Queued);
    assert_eq!(t.replies[0].attempts, 0);
}
