//! Through the server with the shipped config: what the next hop receives
//! (tags, body), what the store holds, and what replies reach the relay.

mod common;

use common::*;
use ticketgate::control::{Op, Request, Response};
use ticketgate::ticket::{ReplyState, Status, Ticket};

struct Rig {
    dg: DeskGate,
    hop: Sink,
    relay: Sink,
}

async fn rig() -> Rig {
    let (dg, hop, relay) = desk_gate_with_sinks(|_| {}).await;
    Rig { dg, hop, relay }
}

fn mail(
    from: &str,
    to: &str,
    subject: &str,
    msgid: &str,
    extra_headers: &str,
    body: &str,
) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n{extra_headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

const LONG_BODY: &str = "Buongiorno, la procedura di emissione ddt sul registro VENIMM dal 1 al 10 dicembre si blocca per il ddt n. 12345 con errore di calcolo.";

impl Rig {
    async fn send(&self, from: &str, rcpts: &[&str], data: &[u8]) -> String {
        let mut c = Client::greeted(self.dg.gate.addr).await;
        let r = c.send_mail(from, rcpts, &wire(data)).await;
        c.cmd("QUIT", 221).await;
        r
    }

    async fn control(&self, op: Op) -> Response {
        ticketgate::control::call(
            &self.dg.control,
            &Request {
                op,
                actor: Some("tester".into()),
            },
        )
        .await
        .unwrap()
    }

    async fn ticket(&self, id: &str) -> Ticket {
        match self.control(Op::Show { id: id.into() }).await {
            Response::Ticket { ticket } => *ticket,
            other => panic!("show {id}: {other:?}"),
        }
    }

    async fn tickets(&self) -> Vec<Ticket> {
        match self
            .control(Op::List {
                status: None,
                helpdesk: None,
                all: false,
            })
            .await
        {
            Response::Tickets { tickets } => tickets,
            other => panic!("list: {other:?}"),
        }
    }

    fn forwarded(&self, i: usize) -> Vec<u8> {
        self.hop.messages()[i].data.clone()
    }

    /// Replies that reached the relay, as raw messages.
    async fn replies(&self, n: usize) -> Vec<Vec<u8>> {
        let relay = self.relay.clone();
        assert!(
            eventually(|| relay.messages().len() >= n).await,
            "expected {n} replies at the relay, got {}",
            self.relay.messages().len()
        );
        self.relay.messages().into_iter().map(|m| m.data).collect()
    }
}

#[tokio::test]
async fn nuovocaso_mail_opens_a_tagged_case_and_gets_a_confirmation() {
    let r = rig().await;
    let body = format!("{LONG_BODY}\r\nContratto : 98765\r\n");
    let msg = mail(
        "Mario Rossi <mario@cliente.example>",
        "nuovocaso@projectpp.it",
        "MAGO4 fatture bloccate, URGENTE",
        "m1@cliente.example",
        "",
        &body,
    );
    let reply = r
        .send("mario@cliente.example", &["nuovocaso@projectpp.it"], &msg)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let fwd = r.forwarded(0);
    let id = header(&fwd, "X-Ticketgate-Ticket").expect("ticket header");
    assert!(
        id.starts_with("PP-2026-") || id.starts_with("PP-20"),
        "{id}"
    );
    assert_eq!(
        header(&fwd, "X-Ticketgate-Action").as_deref(),
        Some("created")
    );
    assert_eq!(
        header(&fwd, "X-Ticketgate-Helpdesk").as_deref(),
        Some("Project++")
    );
    assert_eq!(
        header(&fwd, "X-Ticketgate-Queue").as_deref(),
        Some("nuovocaso")
    );
    assert_eq!(
        header(&fwd, "X-Ticketgate-Sector").as_deref(),
        Some("gestionale")
    );
    assert_eq!(
        header(&fwd, "X-Ticketgate-Urgency").as_deref(),
        Some("urgente")
    );
    assert_eq!(
        header(&fwd, "X-Ticketgate-Contract").as_deref(),
        Some("98765")
    );
    assert_eq!(header(&fwd, "X-Ticketgate-Status").as_deref(), Some("open"));
    assert!(header(&fwd, "Authentication-Results").is_some());
    // The original message follows our headers unchanged.
    assert!(fwd.ends_with(&msg), "original bytes intact after the tags");

    let t = r.ticket(&id).await;
    assert_eq!(t.sector.as_deref(), Some("gestionale"));
    assert_eq!(t.contract.as_deref(), Some("98765"));
    assert_eq!(t.requester, "mario@cliente.example");
    assert_eq!(t.messages.len(), 1);
    assert!(t.messages[0].delivered);

    let replies = r.replies(1).await;
    let conf = &replies[0];
    assert!(
        header(conf, "Subject").unwrap().contains(&id)
            || String::from_utf8_lossy(conf).contains(&id)
    );
    assert_eq!(
        header(conf, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        header(conf, "In-Reply-To").as_deref(),
        Some("<m1@cliente.example>")
    );
    assert_eq!(r.relay.messages()[0].rcpts, vec!["mario@cliente.example"]);
    assert_eq!(
        r.relay.messages()[0].from,
        "",
        "auto-replies use a null return path"
    );
    let relay = r.relay.clone();
    let dg_id = id.clone();
    let _ = (relay, dg_id);
    assert!(
        eventually_async(|| async {
            r.dg.desks.store().get(&id).await.unwrap().unwrap().replies[0].state == ReplyState::Sent
        })
        .await,
        "reply marked sent"
    );
}

#[tokio::test]
async fn mail_to_other_addresses_passes_byte_identical_even_with_forged_tags() {
    let r = rig().await;
    let msg = mail(
        "a@b.example",
        "info@example.com",
        "ciao",
        "x1@b.example",
        "X-Ticketgate-Ticket: PP-2026-999999\r\n",
        "testo",
    );
    r.send(
        "a@b.example",
        &["info@example.com", "mario.rossi@projectpp.it"],
        &msg,
    )
    .await;
    assert_eq!(r.forwarded(0), msg);
    assert!(r.tickets().await.is_empty());
}

#[tokio::test]
async fn forged_tags_on_helpdesk_mail_are_removed() {
    let r = rig().await;
    let msg = mail(
        "a@b.example",
        "supporto.tecnico@projectpp.it",
        "Stampante di rete non risponde",
        "f1@b.example",
        "X-Ticketgate-Ticket: PP-2026-999999\r\nX-Ticketgate-Status: closed\r\n",
        LONG_BODY,
    );
    r.send("a@b.example", &["supporto.tecnico@projectpp.it"], &msg)
        .await;
    let fwd = r.forwarded(0);
    let tickets = headers(&fwd, "X-Ticketgate-Ticket");
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    assert_ne!(tickets[0], "PP-2026-999999");
    assert_eq!(headers(&fwd, "X-Ticketgate-Status"), vec!["open"]);
    assert_eq!(
        header(&fwd, "X-Ticketgate-Sector").as_deref(),
        Some("tecnico")
    );
}

#[tokio::test]
async fn two_addresses_of_one_helpdesk_make_one_ticket_two_helpdesks_make_two() {
    let r = rig().await;
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.isee@01s.it",
        "ISEU: errore invio pratica",
        "two@caf.example",
        "",
        LONG_BODY,
    );
    r.send(
        "op@caf.example",
        &[
            "HELPDESK.SISEMPLICE.ISEE@01s.it",
            "helpdesk.sisemplice.730@01s.it",
            "nuovocaso@projectpp.it",
        ],
        &msg,
    )
    .await;
    let tickets = r.tickets().await;
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let sis = tickets.iter().find(|t| t.helpdesk.contains("01S")).unwrap();
    assert_eq!(sis.queue, "isee", "{sis:?}");
    assert_eq!(sis.procedure.as_deref(), Some("ISEU"));
    assert_eq!(sis.recipients.len(), 2, "{:?}", sis.recipients);
    assert!(tickets.iter().any(|t| t.helpdesk == "Project++"));
    assert_eq!(headers(&r.forwarded(0), "X-Ticketgate-Ticket").len(), 2);
}

#[tokio::test]
async fn same_message_id_twice_makes_one_ticket() {
    let r = rig().await;
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.f24@01s.it",
        "F24 non si stampa",
        "dup@caf.example",
        "",
        LONG_BODY,
    );
    r.send("op@caf.example", &["helpdesk.sisemplice.f24@01s.it"], &msg)
        .await;
    r.send("op@caf.example", &["helpdesk.sisemplice.f24@01s.it"], &msg)
        .await;
    let tickets = r.tickets().await;
    assert_eq!(tickets.len(), 1);
    let second = r.forwarded(1);
    assert_eq!(
        header(&second, "X-Ticketgate-Action").as_deref(),
        Some("appended")
    );
    assert_eq!(
        header(&second, "X-Ticketgate-Ticket"),
        header(&r.forwarded(0), "X-Ticketgate-Ticket")
    );
    // One confirmation only.
    r.replies(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(r.relay.messages().len(), 1);
}

#[tokio::test]
async fn reply_with_ticket_id_in_subject_is_appended() {
    let r = rig().await;
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.imu@01s.it",
        "IMU calcolo errato",
        "first@caf.example",
        "",
        LONG_BODY,
    );
    r.send("op@caf.example", &["helpdesk.sisemplice.imu@01s.it"], &msg)
        .await;
    let id = header(&r.forwarded(0), "X-Ticketgate-Ticket").unwrap();
    let follow = mail(
        "op@caf.example",
        "helpdesk.sisemplice.imu@01s.it",
        &format!("R: [{id}] IMU calcolo errato"),
        "second@caf.example",
        "",
        "Allego la schermata.",
    );
    r.send(
        "op@caf.example",
        &["helpdesk.sisemplice.imu@01s.it"],
        &follow,
    )
    .await;
    let fwd = r.forwarded(1);
    assert_eq!(
        header(&fwd, "X-Ticketgate-Ticket").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        header(&fwd, "X-Ticketgate-Action").as_deref(),
        Some("appended")
    );
    assert_eq!(r.tickets().await.len(), 1);
    assert_eq!(r.ticket(&id).await.messages.len(), 2);
}

#[tokio::test]
async fn no_reply_when_the_next_hop_refused_and_reply_on_retry() {
    let r = rig().await;
    r.hop.behaviour.lock().unwrap().data_reply = Some("451 4.3.0 later".into());
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.red@01s.it",
        "RED: invio bloccato",
        "ref@caf.example",
        "",
        LONG_BODY,
    );
    let reply = r
        .send("op@caf.example", &["helpdesk.sisemplice.red@01s.it"], &msg)
        .await;
    assert!(reply.starts_with("451"), "{reply}");
    let t = &r.tickets().await[0];
    assert_eq!(t.replies[0].state, ReplyState::Cancelled);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(r.relay.messages().is_empty());
    // Postfix retries: the same ticket, and now the confirmation goes out.
    r.hop.behaviour.lock().unwrap().data_reply = None;
    let reply = r
        .send("op@caf.example", &["helpdesk.sisemplice.red@01s.it"], &msg)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(r.tickets().await.len(), 1);
    r.replies(1).await;
}

#[tokio::test]
async fn suspend_then_operator_reply_resumes() {
    let r = rig().await;
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.paghe@01s.it",
        "Paghe: cedolino errato",
        "p1@caf.example",
        "",
        LONG_BODY,
    );
    r.send(
        "op@caf.example",
        &["helpdesk.sisemplice.paghe@01s.it"],
        &msg,
    )
    .await;
    let id = header(&r.forwarded(0), "X-Ticketgate-Ticket").unwrap();
    r.replies(1).await;
    match r
        .control(Op::Suspend {
            id: id.clone(),
            message: "Indichi il codice fiscale del dipendente.".into(),
        })
        .await
    {
        Response::Ticket { ticket } => assert_eq!(ticket.status, Status::Suspended),
        other => panic!("{other:?}"),
    }
    let replies = r.replies(2).await;
    let info = &replies[1];
    assert!(
        String::from_utf8_lossy(info).contains("codice fiscale"),
        "{}",
        String::from_utf8_lossy(info)
    );
    let info_id = header(info, "Message-ID").unwrap();
    let answer = mail(
        "op@caf.example",
        "helpdesk.sisemplice.paghe@01s.it",
        "R: Richiesta informazioni",
        "p2@caf.example",
        &format!("In-Reply-To: {info_id}\r\nReferences: {info_id}\r\n"),
        "Il codice fiscale è RSSMRA80A01H501U.",
    );
    r.send(
        "op@caf.example",
        &["helpdesk.sisemplice.paghe@01s.it"],
        &answer,
    )
    .await;
    let fwd = r.forwarded(1);
    assert_eq!(
        header(&fwd, "X-Ticketgate-Action").as_deref(),
        Some("resumed")
    );
    assert_eq!(r.ticket(&id).await.status, Status::Open);
}

#[tokio::test]
async fn vague_mail_opens_suspended_and_the_reply_resumes_it() {
    let r = rig().await;
    let msg = mail(
        "cli@ditta.example",
        "nuovocaso@projectpp.it",
        "Siamo bloccati",
        "v1@ditta.example",
        "",
        "aiuto",
    );
    r.send("cli@ditta.example", &["nuovocaso@projectpp.it"], &msg)
        .await;
    let fwd = r.forwarded(0);
    assert_eq!(
        header(&fwd, "X-Ticketgate-Status").as_deref(),
        Some("suspended")
    );
    let conf = &r.replies(1).await[0];
    let conf_id = header(conf, "Message-ID").unwrap();
    let answer = mail(
        "cli@ditta.example",
        "nuovocaso@projectpp.it",
        "Re: Apertura",
        "v2@ditta.example",
        &format!("In-Reply-To: {conf_id}\r\n"),
        LONG_BODY,
    );
    r.send("cli@ditta.example", &["nuovocaso@projectpp.it"], &answer)
        .await;
    assert_eq!(
        header(&r.forwarded(1), "X-Ticketgate-Action").as_deref(),
        Some("resumed")
    );
    assert_eq!(r.tickets().await.len(), 1);
}

#[tokio::test]
async fn close_by_requester_replying_to_our_mail_works_forged_close_is_refused() {
    let r = rig().await;
    let msg = mail(
        "cli@ditta.example",
        "supporto.gestionale@projectpp.it",
        "Mago4: fido calcolato male",
        "c1@ditta.example",
        "",
        LONG_BODY,
    );
    r.send(
        "cli@ditta.example",
        &["supporto.gestionale@projectpp.it"],
        &msg,
    )
    .await;
    let id = header(&r.forwarded(0), "X-Ticketgate-Ticket").unwrap();
    let conf = &r.replies(1).await[0];
    let conf_id = header(conf, "Message-ID").unwrap();
    // Someone else asks to close: refused, appended.
    let forged = mail(
        "intruso@altro.example",
        "supporto.gestionale@projectpp.it",
        &format!("Re: [{id}] chiudere"),
        "c2@altro.example",
        "",
        "chiudete",
    );
    r.send(
        "intruso@altro.example",
        &["supporto.gestionale@projectpp.it"],
        &forged,
    )
    .await;
    assert_eq!(
        header(&r.forwarded(1), "X-Ticketgate-Action").as_deref(),
        Some("refused")
    );
    assert_eq!(r.ticket(&id).await.status, Status::Open);
    // The requester, with the ticket id in the subject but no signed
    // reference (and no DNS to verify DMARC): refused, not authenticated.
    let unsigned = mail(
        "cli@ditta.example",
        "supporto.gestionale@projectpp.it",
        &format!("Re: [{id}] chiuso"),
        "c3@ditta.example",
        "",
        "risolto",
    );
    r.send(
        "cli@ditta.example",
        &["supporto.gestionale@projectpp.it"],
        &unsigned,
    )
    .await;
    assert_eq!(
        header(&r.forwarded(2), "X-Ticketgate-Action").as_deref(),
        Some("refused")
    );
    // The requester answering our signed mail: closed.
    let close = mail(
        "cli@ditta.example",
        "supporto.gestionale@projectpp.it",
        &format!("Re: [{id}] chiudere pure, risolto"),
        "c4@ditta.example",
        &format!("In-Reply-To: {conf_id}\r\n"),
        "Grazie, risolto.",
    );
    r.send(
        "cli@ditta.example",
        &["supporto.gestionale@projectpp.it"],
        &close,
    )
    .await;
    assert_eq!(
        header(&r.forwarded(3), "X-Ticketgate-Action").as_deref(),
        Some("closed")
    );
    assert_eq!(r.ticket(&id).await.status, Status::Closed);
    // And reopen the same way.
    let reopen = mail(
        "cli@ditta.example",
        "supporto.gestionale@projectpp.it",
        &format!("Re: [{id}] riaprire"),
        "c5@ditta.example",
        &format!("In-Reply-To: {conf_id}\r\n"),
        "Il problema si ripresenta.",
    );
    r.send(
        "cli@ditta.example",
        &["supporto.gestionale@projectpp.it"],
        &reopen,
    )
    .await;
    assert_eq!(
        header(&r.forwarded(4), "X-Ticketgate-Action").as_deref(),
        Some("reopened")
    );
    assert_eq!(r.ticket(&id).await.status, Status::Open);
}

#[tokio::test]
async fn a_new_mail_saying_chiudere_opens_a_new_case() {
    let r = rig().await;
    let msg = mail(
        "cli@ditta.example",
        "nuovocaso@projectpp.it",
        "Non riesco a chiudere l'esercizio",
        "n1@ditta.example",
        "",
        LONG_BODY,
    );
    r.send("cli@ditta.example", &["nuovocaso@projectpp.it"], &msg)
        .await;
    assert_eq!(
        header(&r.forwarded(0), "X-Ticketgate-Action").as_deref(),
        Some("created")
    );
    assert_eq!(r.tickets().await[0].status, Status::Open);
}

#[tokio::test]
async fn robots_lists_and_bounces_get_no_reply() {
    let r = rig().await;
    let cases: [(&str, &str); 4] = [
        ("bot@x.example", "Auto-Submitted: auto-generated\r\n"),
        ("news@x.example", "List-Id: <news.x.example>\r\n"),
        ("bulk@x.example", "Precedence: bulk\r\n"),
        ("", ""),
    ];
    for (i, (from, extra)) in cases.iter().enumerate() {
        let msg = mail(
            "robot@x.example",
            "helpdesk.sisemplice.bi@01s.it",
            "Report BI giornaliero",
            &format!("r{i}@x.example"),
            extra,
            LONG_BODY,
        );
        let reply = r.send(from, &["helpdesk.sisemplice.bi@01s.it"], &msg).await;
        assert!(reply.starts_with("250"), "{reply}");
    }
    let tickets = r.tickets().await;
    assert_eq!(tickets.len(), 4);
    assert!(tickets.iter().all(|t| t.replies.is_empty()), "{tickets:?}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(r.relay.messages().is_empty());
}

#[tokio::test]
async fn out_of_office_is_appended_without_state_change_or_reply() {
    let r = rig().await;
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.cu@01s.it",
        "CU: errore",
        "o1@caf.example",
        "",
        LONG_BODY,
    );
    r.send("op@caf.example", &["helpdesk.sisemplice.cu@01s.it"], &msg)
        .await;
    let id = header(&r.forwarded(0), "X-Ticketgate-Ticket").unwrap();
    r.replies(1).await;
    r.control(Op::Suspend {
        id: id.clone(),
        message: "Serve il numero pratica.".into(),
    })
    .await;
    r.replies(2).await;
    let ooo = mail(
        "op@caf.example",
        "helpdesk.sisemplice.cu@01s.it",
        &format!("Risposta automatica: [{id}] Richiesta informazioni"),
        "o2@caf.example",
        "",
        "Sono fuori sede fino a lunedì.",
    );
    r.send("op@caf.example", &["helpdesk.sisemplice.cu@01s.it"], &ooo)
        .await;
    assert_eq!(
        header(&r.forwarded(1), "X-Ticketgate-Action").as_deref(),
        Some("appended")
    );
    assert_eq!(r.ticket(&id).await.status, Status::Suspended);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(r.relay.messages().len(), 2);
}

#[tokio::test]
async fn workgroup_commands_record_history_and_refuse_illegal_transitions() {
    let r = rig().await;
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.iva@01s.it",
        "IVA: liquidazione errata",
        "w1@caf.example",
        "",
        LONG_BODY,
    );
    r.send("op@caf.example", &["helpdesk.sisemplice.iva@01s.it"], &msg)
        .await;
    let id = header(&r.forwarded(0), "X-Ticketgate-Ticket").unwrap();
    let ok = |resp: Response| match resp {
        Response::Ticket { ticket } => *ticket,
        other => panic!("{other:?}"),
    };
    let t = ok(r
        .control(Op::Take {
            id: id.clone(),
            by: "giulia".into(),
        })
        .await);
    assert_eq!(t.assignee.as_deref(), Some("giulia"));
    let level = r.dg.desks.config().helpdesks[0].severities[0].level.clone();
    let t = ok(r
        .control(Op::Severity {
            id: id.clone(),
            level: level.clone(),
        })
        .await);
    assert_eq!(t.severity.as_deref(), Some(level.as_str()));
    assert!(t.due_at.is_some());
    let t = ok(r
        .control(Op::Classify {
            id: id.clone(),
            category: ticketgate::ticket::Category::Maintenance,
        })
        .await);
    assert_eq!(t.category, Some(ticketgate::ticket::Category::Maintenance));
    match r
        .control(Op::Severity {
            id: id.clone(),
            level: "apocalittica".into(),
        })
        .await
    {
        Response::Error { error } => assert!(error.contains("unknown severity"), "{error}"),
        other => panic!("{other:?}"),
    }
    match r.control(Op::Reopen { id: id.clone() }).await {
        Response::Error { error } => assert!(error.contains("only a closed ticket"), "{error}"),
        other => panic!("{other:?}"),
    }
    let t = ok(r.control(Op::Close { id: id.clone() }).await);
    assert_eq!(t.status, Status::Closed);
    let t = ok(r.control(Op::Reopen { id: id.clone() }).await);
    assert_eq!(t.status, Status::Open);
    match r
        .control(Op::Show {
            id: "PP-1999-000001".into(),
        })
        .await
    {
        Response::Error { error } => assert!(error.contains("no ticket"), "{error}"),
        other => panic!("{other:?}"),
    }
    let t = r.ticket(&id).await;
    let events: Vec<String> = t.history.iter().map(|h| h.event.to_string()).collect();
    assert!(
        events.iter().any(|e| e.contains("taken by giulia")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("Manutenzione Ordinaria")),
        "{events:?}"
    );
    assert!(t.history.iter().any(|h| h.by == "tester"));
    // creation + closed + reopened notices
    r.replies(3).await;
}

#[tokio::test]
async fn store_failure_gives_451_and_nothing_is_forwarded() {
    let r = rig().await;
    // Blobs cannot be written: a file stands where the directory should be.
    let blobs = r.dg.gate.data_dir.path().join("blobs");
    let _ = std::fs::remove_dir_all(&blobs);
    std::fs::write(&blobs, b"not a directory").unwrap();
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice.imu@01s.it",
        "IMU",
        "s1@caf.example",
        "",
        LONG_BODY,
    );
    let reply = r
        .send("op@caf.example", &["helpdesk.sisemplice.imu@01s.it"], &msg)
        .await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert!(r.hop.messages().is_empty());
}

#[tokio::test]
async fn tickets_list_json_from_the_command_line_has_the_contract_fields() {
    let r = rig().await;
    let msg = mail(
        "op@caf.example",
        "helpdesk.sisemplice@01s.it",
        "Utenze: password scaduta",
        "cli1@caf.example",
        "",
        LONG_BODY,
    );
    r.send("op@caf.example", &["helpdesk.sisemplice@01s.it"], &msg)
        .await;
    let control = r.dg.control.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ticketgate"))
            .args([
                "tickets",
                "--control",
                control.to_str().unwrap(),
                "list",
                "--json",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v.as_array().unwrap()[0];
    for field in [
        "id",
        "helpdesk",
        "queue",
        "procedure",
        "sector",
        "urgency",
        "contract",
        "status",
        "severity",
        "category",
        "requester",
        "subject",
        "created_at",
        "due_at",
        "messages",
        "replies",
    ] {
        assert!(t.get(field).is_some(), "missing {field} in {t}");
    }
    assert_eq!(t["procedure"], "Utenze");
    assert_eq!(t["status"], "open");
    let m = &t["messages"][0];
    for field in [
        "message_id",
        "from",
        "subject",
        "received_at",
        "attachments",
    ] {
        assert!(m.get(field).is_some(), "missing messages[].{field}");
    }
    let rep = &t["replies"][0];
    for field in ["kind", "to", "message_id", "state"] {
        assert!(rep.get(field).is_some(), "missing replies[].{field}");
    }
}

#[tokio::test]
async fn mail_without_message_id_redelivered_makes_one_ticket() {
    let r = rig().await;
    let msg = format!(
        "From: op@caf.example\r\nTo: helpdesk.sisemplice.vaso@01s.it\r\nSubject: Vaso: esportazione ferma\r\n\r\n{LONG_BODY}\r\n"
    )
    .into_bytes();
    r.send("op@caf.example", &["helpdesk.sisemplice.vaso@01s.it"], &msg)
        .await;
    r.send("op@caf.example", &["helpdesk.sisemplice.vaso@01s.it"], &msg)
        .await;
    assert_eq!(r.tickets().await.len(), 1);
    assert_eq!(
        header(&r.forwarded(1), "X-Ticketgate-Action").as_deref(),
        Some("appended")
    );
}

#[tokio::test]
async fn attachments_are_kept_with_the_case_as_sha256_files() {
    let r = rig().await;
    let png = b"\x89PNG\r\n\x1a\nfake screenshot bytes";
    let b64 = "iVBORw0KGgpmYWtlIHNjcmVlbnNob3QgYnl0ZXM=";
    let msg = format!(
        "From: cli@ditta.example\r\nTo: supporto.tecnico@projectpp.it\r\nSubject: Antivirus blocca la posta\r\nMessage-ID: <att1@ditta.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{LONG_BODY}\r\n--XX\r\nContent-Type: image/png; name=\"schermata.png\"\r\nContent-Disposition: attachment; filename=\"schermata.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--XX--\r\n"
    )
    .into_bytes();
    r.send(
        "cli@ditta.example",
        &["supporto.tecnico@projectpp.it"],
        &msg,
    )
    .await;
    let t = &r.tickets().await[0];
    let a = &t.messages[0].attachments;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].name.as_deref(), Some("schermata.png"));
    assert_eq!(a[0].size, png.len() as u64);
    let stored = std::fs::read(r.dg.desks.store().blob_path(&a[0].sha256)).unwrap();
    assert_eq!(stored, png);
    // The raw message is kept too.
    let raw = t.messages[0].raw_sha256.as_deref().unwrap();
    assert_eq!(
        std::fs::read(r.dg.desks.store().blob_path(raw)).unwrap(),
        msg
    );
}

/// `tickets list` pages through the store (a page of tickets in memory at
/// a time): more tickets than a page, all of them, in id order, filters
/// applied across pages.
#[tokio::test]
async fn listing_more_tickets_than_a_page_returns_them_all_in_order() {
    use ticketgate::store::{Change, LIST_PAGE};
    let r = rig().await;
    let msg = mail(
        "Mario Rossi <mario@cliente.example>",
        "nuovocaso@projectpp.it",
        "Mago4 non stampa",
        "page-0@cliente.example",
        "",
        LONG_BODY,
    );
    let reply = r
        .send("mario@cliente.example", &["nuovocaso@projectpp.it"], &msg)
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let template = r.tickets().await.remove(0);
    let extra = 2 * LIST_PAGE + 50;
    let mut tasks = Vec::new();
    for i in 0..extra {
        let store = r.dg.desks.store().clone();
        let mut t = template.clone();
        t.subject = format!("ticket {i}");
        t.replies.clear();
        if i % 3 == 0 {
            t.status = Status::Closed;
        }
        tasks.push(tokio::spawn(async move {
            store
                .submit(Change::Create {
                    prefix: "PP".into(),
                    year: 2026,
                    ticket: t,
                    dedupe_key: None,
                    draft: None,
                })
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = r.tickets().await;
    assert_eq!(all.len(), extra + 1);
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "sorted by id, no duplicates"
    );
    let closed = match r
        .control(Op::List {
            status: Some(Status::Closed),
            helpdesk: Some("project++".into()),
            all: false,
        })
        .await
    {
        Response::Tickets { tickets } => tickets,
        other => panic!("list: {other:?}"),
    };
    assert_eq!(closed.len(), extra.div_ceil(3));
    assert!(closed.iter().all(|t| t.status == Status::Closed));
}
