//! Issue 17 through the server (SMTP proxy mode, shipped helpdesks): a next
//! hop switched between 451, 550 and 250, and a relay sink. Each accepted
//! message gets its confirmation once; refused mail leaves no open case.

mod common;

use common::*;
use ticketgate::control::{Op, Request, Response};
use ticketgate::reason::ReasonCode;
use ticketgate::ticket::{ReplyState, Status, Ticket};

const DESK: &str = "helpdesk.sisemplice.f24@01s.it";
const BODY: &str = "Buongiorno, la stampa del modello F24 si blocca con errore di calcolo sul tributo 1040 dal 1 dicembre.";

/// A message as a client writes it; `msgid` None leaves Message-ID out.
fn mail(from: &str, subject: &str, msgid: Option<&str>, top: &str) -> Vec<u8> {
    let msgid = msgid
        .map(|m| format!("Message-ID: <{m}>\r\n"))
        .unwrap_or_default();
    format!(
        "{top}From: {from}\r\nTo: {DESK}\r\nSubject: {subject}\r\n{msgid}Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\n{BODY}\r\n"
    )
    .into_bytes()
}

/// The trace a front Postfix stamps on each attempt.
fn trace(attempt: u32) -> String {
    format!(
        "Return-Path: <op@caf.example>\r\nReceived: from client.caf.example (client [192.0.2.{attempt}])\r\n\tby mx.01s.it (Postfix) with ESMTP id 4Xk{attempt}; Mon, 23 Nov 2026 10:0{attempt}:00 +0100\r\n"
    )
}

struct Rig {
    dg: DeskGate,
    hop: Sink,
    relay: Sink,
}

async fn rig(tweak: impl FnOnce(&mut ticketgate::config::Config)) -> Rig {
    let (dg, hop, relay) = desk_gate_with_sinks(tweak).await;
    Rig { dg, hop, relay }
}

impl Rig {
    fn hop_says(&self, reply: Option<&str>) {
        self.hop.behaviour.lock().unwrap().data_reply = reply.map(str::to_string);
    }

    async fn send(&self, from: &str, data: &[u8]) -> String {
        let mut c = Client::greeted(self.dg.gate.addr).await;
        let r = c.send_mail(from, &[DESK], &wire(data)).await;
        c.cmd("QUIT", 221).await;
        r
    }

    async fn list(&self, status: Option<Status>, all: bool) -> Vec<Ticket> {
        let request = Request {
            op: Op::List {
                status,
                helpdesk: None,
                all,
            },
            actor: None,
        };
        match ticketgate::control::call(&self.dg.control, &request)
            .await
            .unwrap()
        {
            Response::Tickets { tickets } => tickets,
            other => panic!("list: {other:?}"),
        }
    }

    async fn only_ticket(&self) -> Ticket {
        let all = self.list(None, true).await;
        assert_eq!(all.len(), 1, "one ticket: {all:#?}");
        all.into_iter().next().unwrap()
    }

    /// Waits for the relay to hold `n` replies; returns their recipients.
    async fn relayed(&self, n: usize) -> Vec<Vec<String>> {
        let relay = self.relay.clone();
        assert!(
            eventually(|| relay.messages().len() >= n).await,
            "expected {n} replies, the relay has {}",
            self.relay.messages().len()
        );
        self.relay.messages().into_iter().map(|m| m.rcpts).collect()
    }

    /// Waits until the ticket's replies are all settled and the outbox is
    /// idle, then returns the ticket.
    async fn settled(&self) -> Ticket {
        let store = self.dg.desks.store().clone();
        let done = eventually_async(|| async {
            store.list().await.unwrap().iter().all(|t| {
                t.replies
                    .iter()
                    .all(|r| !matches!(r.state, ReplyState::Held | ReplyState::Queued))
            })
        })
        .await;
        assert!(done, "replies settled: {:#?}", store.list().await.unwrap());
        self.only_ticket().await
    }
}

async fn retry_after_451(msgid: Option<&str>, retrace: bool) {
    let r = rig(|_| {}).await;
    let first = mail("op@caf.example", "F24 non si stampa", msgid, &trace(1));
    let again = if retrace {
        mail("op@caf.example", "F24 non si stampa", msgid, &trace(2))
    } else {
        first.clone()
    };
    r.hop_says(Some("451 4.3.0 try later"));
    let reply = r.send("op@caf.example", &first).await;
    assert!(reply.starts_with("451"), "{reply}");
    let t = r.only_ticket().await;
    assert_eq!(t.replies[0].state, ReplyState::Cancelled);
    assert_eq!(t.replies[0].reason, Some(ReasonCode::ReplyCancelledRefused));
    r.hop_says(None);
    let reply = r.send("op@caf.example", &again).await;
    assert!(reply.starts_with("250"), "{reply}");
    let t = r.settled().await;
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.messages.len(), 1);
    assert!(t.messages[0].delivered);
    assert_eq!(t.replies.len(), 1);
    assert_eq!(t.replies[0].state, ReplyState::Sent);
    assert_eq!(r.relayed(1).await, vec![vec!["op@caf.example".to_string()]]);
    // What the helpdesk server got: the retry, as the case's creation.
    let delivered = r.hop.messages();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        header(&delivered[0].data, "X-Ticketgate-Action").as_deref(),
        Some("created")
    );
    assert_eq!(
        header(&delivered[0].data, "X-Ticketgate-Ticket").as_deref(),
        Some(t.id.as_str())
    );
}

#[tokio::test]
async fn a_retry_without_message_id_releases_the_confirmation() {
    retry_after_451(None, false).await;
}

#[tokio::test]
async fn a_retry_with_fresh_trace_fields_lands_on_the_same_ticket() {
    retry_after_451(None, true).await;
}

#[tokio::test]
async fn a_retry_with_message_id_and_fresh_trace_fields_works_the_same() {
    retry_after_451(Some("f24-1@caf.example"), true).await;
}

#[tokio::test]
async fn a_message_too_large_to_parse_still_has_an_identity() {
    let r = rig(|c| c.limits.max_parse_bytes = 4096).await;
    let big = format!(
        "{BODY}\r\n{}",
        "riga di log del gestionale F24\r\n".repeat(400)
    );
    let msg = |attempt| {
        format!(
            "{}From: op@caf.example\r\nTo: {DESK}\r\nSubject: F24 log allegato\r\n\r\n{big}",
            trace(attempt)
        )
        .into_bytes()
    };
    r.hop_says(Some("451 4.3.0 try later"));
    assert!(r.send("op@caf.example", &msg(1)).await.starts_with("451"));
    r.hop_says(None);
    assert!(r.send("op@caf.example", &msg(2)).await.starts_with("250"));
    assert!(r.send("op@caf.example", &msg(3)).await.starts_with("250"));
    let t = r.settled().await;
    assert!(
        t.reasons.contains(&ReasonCode::ParseTooLarge)
            || t.messages[0].reasons.contains(&ReasonCode::ParseTooLarge)
    );
    assert_eq!(t.replies.len(), 1);
    assert_eq!(t.replies[0].state, ReplyState::Sent);
    assert_eq!(r.relayed(1).await.len(), 1);
    assert_eq!(
        r.relay.messages().len(),
        1,
        "one confirmation for three attempts"
    );
}

#[tokio::test]
async fn a_550_leaves_a_void_ticket_that_an_accepted_retry_revives() {
    let r = rig(|_| {}).await;
    let msg = mail("op@caf.example", "F24 non si stampa", None, "");
    r.hop_says(Some("550 5.7.1 rejected"));
    let reply = r.send("op@caf.example", &msg).await;
    assert!(reply.starts_with("550"), "{reply}");
    let t = r.only_ticket().await;
    assert_eq!(t.status, Status::Void);
    let void = t.void.as_ref().expect("void record");
    assert_eq!(void.reason, ReasonCode::TicketVoidRefused);
    assert_eq!(void.previous, Status::Open);
    assert_eq!(t.replies[0].state, ReplyState::Cancelled);
    assert_eq!(t.messages[0].refused.as_ref().map(|f| f.code), Some(550));
    assert!(r.list(None, false).await.is_empty(), "not an open case");
    assert!(r.list(Some(Status::Open), false).await.is_empty());
    assert_eq!(r.list(Some(Status::Void), false).await.len(), 1);
    // A workgroup command on it changes nothing and sends nothing.
    let close = Request {
        op: Op::Close { id: t.id.clone() },
        actor: Some("tester".into()),
    };
    let answer = ticketgate::control::call(&r.dg.control, &close)
        .await
        .unwrap();
    assert!(matches!(answer, Response::Error { .. }), "{answer:?}");
    // The same message, accepted this time: the case comes back.
    r.hop_says(None);
    assert!(r.send("op@caf.example", &msg).await.starts_with("250"));
    let t = r.settled().await;
    assert_eq!(t.status, Status::Open);
    assert!(t.void.is_none());
    assert!(t.reasons.contains(&ReasonCode::TicketRevived));
    assert_eq!(r.list(None, false).await.len(), 1);
    assert_eq!(r.relayed(1).await, vec![vec!["op@caf.example".to_string()]]);
    assert_eq!(r.hop.messages().len(), 1);
    assert_eq!(
        header(&r.hop.messages()[0].data, "X-Ticketgate-Status").as_deref(),
        Some("open")
    );
}

#[tokio::test]
async fn a_451_and_no_retry_voids_the_ticket_at_the_horizon() {
    let r = rig(|c| {
        c.outbox.settle_horizon_secs = 1;
        c.outbox.sweep_interval_secs = 1;
    })
    .await;
    r.hop_says(Some("451 4.3.0 try later"));
    let msg = mail(
        "op@caf.example",
        "F24 non si stampa",
        Some("h@caf.example"),
        "",
    );
    assert!(r.send("op@caf.example", &msg).await.starts_with("451"));
    let store = r.dg.desks.store().clone();
    assert!(
        eventually_async(|| async { store.list().await.unwrap()[0].status == Status::Void }).await,
        "void after the horizon: {:#?}",
        store.list().await.unwrap()
    );
    let t = r.only_ticket().await;
    assert_eq!(
        t.void.as_ref().map(|v| v.reason),
        Some(ReasonCode::TicketVoidUndelivered)
    );
    assert_eq!(t.replies[0].state, ReplyState::Cancelled);
    assert!(r.list(None, false).await.is_empty());
    assert!(r.relay.messages().is_empty());
    // A late retry is still a retry.
    r.hop_says(None);
    assert!(r.send("op@caf.example", &msg).await.starts_with("250"));
    let t = r.settled().await;
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.replies[0].state, ReplyState::Sent);
    assert_eq!(r.relayed(1).await.len(), 1);
}

#[tokio::test]
async fn another_message_reusing_the_message_id_revives_nothing() {
    let r = rig(|_| {}).await;
    let msgid = Some("reused@caf.example");
    r.hop_says(Some("550 5.7.1 rejected"));
    let first = mail("op@caf.example", "F24 non si stampa", msgid, "");
    assert!(r.send("op@caf.example", &first).await.starts_with("550"));
    r.hop_says(None);
    let other = mail("x9@vps.example", "altro testo", msgid, "");
    assert!(r.send("x9@vps.example", &other).await.starts_with("250"));
    let t = r.only_ticket().await;
    assert_eq!(t.status, Status::Void);
    assert_eq!(t.replies[0].state, ReplyState::Cancelled);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(r.relay.messages().is_empty());
}

#[tokio::test]
async fn refused_mail_spends_no_reply_budget_and_others_cannot_spend_it() {
    let r = rig(|c| c.outbox.rate_limit_per_hour = 1).await;
    // Refused: its reply is never released, so it costs nothing.
    r.hop_says(Some("550 5.7.1 rejected"));
    let refused = mail("op@caf.example", "F24 primo tentativo", None, "");
    assert!(r.send("op@caf.example", &refused).await.starts_with("550"));
    r.hop_says(None);
    // Someone else's envelope, naming op in From: x9's budget, not op's.
    for i in 0..2 {
        let forged = mail("op@caf.example", &format!("F24 errore {i}"), None, "");
        assert!(r.send("x9@vps.example", &forged).await.starts_with("250"));
    }
    let own = mail("op@caf.example", "F24 non si stampa", None, "");
    assert!(r.send("op@caf.example", &own).await.starts_with("250"));
    let store = r.dg.desks.store().clone();
    assert!(
        eventually_async(|| async {
            store.list().await.unwrap().iter().all(|t| {
                t.replies
                    .iter()
                    .all(|r| !matches!(r.state, ReplyState::Held | ReplyState::Queued))
            })
        })
        .await
    );
    let mut rcpts: Vec<String> = r
        .relay
        .messages()
        .into_iter()
        .flat_map(|m| m.rcpts)
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["op@caf.example", "x9@vps.example"]);
    let capped: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|t| t.replies)
        .filter(|r| r.reason == Some(ReasonCode::ReplySuppressedRateLimit))
        .collect();
    assert_eq!(capped.len(), 1);
    assert_eq!(capped[0].to, "x9@vps.example");
}

#[tokio::test]
async fn a_ticket_opened_by_a_robot_gets_no_workgroup_notice() {
    let r = rig(|_| {}).await;
    let robot = mail(
        "monitor@caf.example",
        "F24 servizio non raggiungibile",
        Some("robot@caf.example"),
        "Auto-Submitted: auto-generated\r\n",
    );
    let person = mail(
        "op@caf.example",
        "F24 non si stampa",
        Some("person@caf.example"),
        "",
    );
    assert!(
        r.send("monitor@caf.example", &robot)
            .await
            .starts_with("250")
    );
    assert!(r.send("op@caf.example", &person).await.starts_with("250"));
    assert_eq!(r.relayed(1).await, vec![vec!["op@caf.example".to_string()]]);
    for t in r.list(None, false).await {
        for op in [
            Op::Suspend {
                id: t.id.clone(),
                message: "Serve il numero di protocollo".into(),
            },
            Op::Resume { id: t.id.clone() },
            Op::Close { id: t.id.clone() },
        ] {
            let request = Request {
                op,
                actor: Some("tester".into()),
            };
            let answer = ticketgate::control::call(&r.dg.control, &request)
                .await
                .unwrap();
            assert!(matches!(answer, Response::Ticket { .. }), "{answer:?}");
        }
    }
    // Three notices for the person's case, none for the robot's.
    let rcpts = r.relayed(4).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(r.relay.messages().len(), 4, "{rcpts:?}");
    assert!(
        r.relay
            .messages()
            .iter()
            .all(|m| m.rcpts == ["op@caf.example"])
    );
    let robot_ticket = r
        .list(None, true)
        .await
        .into_iter()
        .find(|t| t.requester == "monitor@caf.example")
        .unwrap();
    assert_eq!(robot_ticket.status, Status::Closed);
    assert!(robot_ticket.replies.is_empty());
    assert!(robot_ticket.reasons.contains(&ReasonCode::NoticeSuppressed));
}
