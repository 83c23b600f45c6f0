//! Issue 16, through the server with the shipped config (DNS off), a
//! next-hop sink and a reply-relay sink: only the requester changes a case,
//! every notice goes to the requester on file, command words count only in
//! what the sender wrote, a screenshot with a good subject is a complete
//! report, procedure aliases. Each test asserts the ticket's state and
//! exactly what the relay received and for whom.

mod common;

use std::time::Duration;

use common::*;
use ticketgate::reason::ReasonCode;
use ticketgate::ticket::{Action, Status, Ticket};

const REQUESTER: &str = "mario@cliente.example";
const FORGER: &str = "x9@vps.example";
const NUOVOCASO: &str = "nuovocaso@projectpp.it";
const LONG_BODY: &str = "Buongiorno, la procedura di emissione ddt sul registro VENIMM dal 1 al 10 dicembre si blocca per il ddt n. 12345 con errore di calcolo.";

struct Rig {
    dg: DeskGate,
    hop: Sink,
    relay: Sink,
}

/// A message as a client writes it: `headers` are whole lines (From
/// included), so a test can write two From fields.
fn message(headers: &str, subject: &str, msgid: &str, body: &str) -> Vec<u8> {
    format!(
        "{headers}To: {NUOVOCASO}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn from(addr: &str) -> String {
    format!("From: {addr}\r\n")
}

fn answering(addr: &str, msgid: &str) -> String {
    format!("From: {addr}\r\nIn-Reply-To: {msgid}\r\nReferences: {msgid}\r\n")
}

impl Rig {
    async fn start() -> Rig {
        let (dg, hop, relay) = desk_gate_with_sinks(|_| {}).await;
        Rig { dg, hop, relay }
    }

    /// Sends one message; returns what the next hop received for it.
    async fn send(&self, envelope_from: &str, rcpt: &str, data: &[u8]) -> Vec<u8> {
        let before = self.hop.messages().len();
        let mut c = Client::greeted(self.dg.gate.addr).await;
        let reply = c.send_mail(envelope_from, &[rcpt], &wire(data)).await;
        assert!(reply.starts_with("250"), "{reply}");
        c.cmd("QUIT", 221).await;
        let got = self.hop.messages();
        assert_eq!(got.len(), before + 1, "forwarded once");
        got[before].data.clone()
    }

    /// Sends `data` to nuovocaso@ and checks that what it asked was
    /// refused: the ticket stays `status`, its last message says `reason`.
    async fn refused(
        &self,
        envelope_from: &str,
        data: &[u8],
        id: &str,
        status: Status,
        reason: ReasonCode,
    ) {
        let fwd = self.send(envelope_from, NUOVOCASO, data).await;
        assert_eq!(action(&fwd), "refused");
        let t = self.ticket(id).await;
        assert_eq!(t.status, status);
        assert!(last_reasons(&t).contains(&reason), "{:?}", last_reasons(&t));
    }

    /// Sends the first message of a case to nuovocaso@; returns its
    /// ticket's id.
    async fn open(&self, envelope_from: &str, data: &[u8]) -> String {
        let fwd = self.send(envelope_from, NUOVOCASO, data).await;
        header(&fwd, "X-Ticketgate-Ticket").expect("ticketed")
    }

    async fn ticket(&self, id: &str) -> Ticket {
        self.dg
            .desks
            .store()
            .get(id)
            .await
            .unwrap()
            .expect("ticket exists")
    }

    /// Exactly `n` replies reached the relay, and no more come.
    async fn relayed(&self, n: usize) -> Vec<Received> {
        let relay = self.relay.clone();
        assert!(
            eventually(|| relay.messages().len() >= n).await,
            "expected {n} replies, got {:?}",
            self.relay.messages()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let got = self.relay.messages();
        assert_eq!(got.len(), n, "{got:?}");
        got
    }
}

fn action(forwarded: &[u8]) -> String {
    header(forwarded, "X-Ticketgate-Action").unwrap_or_default()
}

fn subject_of(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(raw)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

fn body_of(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(raw)
        .and_then(|m| m.body_text(0).map(|b| b.to_string()))
        .unwrap_or_default()
}

fn last_reasons(t: &Ticket) -> Vec<ReasonCode> {
    t.messages.last().unwrap().reasons.clone()
}

/// The first case: a third party forges the requester's From to
/// resume, then to close, a suspended case; nothing changes and nothing
/// is sent to it. The requester's own answer resumes the case, and the
/// notice goes to the requester.
#[tokio::test]
async fn forged_resume_and_close_are_refused_and_the_forger_hears_nothing() {
    let r = Rig::start().await;
    let id = r
        .open(
            REQUESTER,
            &message(
                &from(REQUESTER),
                "Aiuto",
                "v1@cliente.example",
                "Non funziona.",
            ),
        )
        .await;
    assert_eq!(r.ticket(&id).await.status, Status::Suspended);
    let confirmation = r.relayed(1).await.remove(0);
    assert_eq!(confirmation.rcpts, vec![REQUESTER]);
    let conf_id = header(&confirmation.data, "Message-ID").unwrap();

    // From the requester by its From only, from the forger's envelope.
    let attempts = [
        (
            from(REQUESTER),
            format!("R: [{id}] Aiuto"),
            ReasonCode::ResumeNotAuthenticated,
            None,
        ),
        // With our signed id (leaked, guessed from a forward): the
        // envelope is not the requester's.
        (
            answering(REQUESTER, &conf_id),
            format!("R: [{id}] Aiuto"),
            ReasonCode::ResumeNotAuthenticated,
            Some(ReasonCode::AuthEnvelopeNotRequester),
        ),
        (
            answering(REQUESTER, &conf_id),
            format!("R: [{id}] potete chiudere"),
            ReasonCode::CommandNotAuthenticated,
            Some(ReasonCode::AuthEnvelopeNotRequester),
        ),
    ];
    for (i, (headers, subject, code, detail)) in attempts.iter().enumerate() {
        let msg = message(headers, subject, &format!("x9-{i}@vps.example"), LONG_BODY);
        let fwd = r.send(FORGER, NUOVOCASO, &msg).await;
        assert_eq!(action(&fwd), "refused", "{subject}");
        let t = r.ticket(&id).await;
        assert_eq!(t.status, Status::Suspended);
        assert_eq!(t.messages.last().unwrap().action, Action::Refused);
        let reasons = last_reasons(&t);
        assert!(reasons.contains(code), "{reasons:?}");
        if let Some(d) = detail {
            assert!(reasons.contains(d), "{reasons:?}");
        }
    }
    // Several From fields, or several addresses in one, never
    // authenticate, even from the requester's envelope with our id.
    for (i, headers) in [
        format!("{}{}", answering(REQUESTER, &conf_id), from(FORGER)),
        answering(&format!("{REQUESTER}, {FORGER}"), &conf_id),
        format!("{}{}", from(FORGER), answering(REQUESTER, &conf_id)),
    ]
    .iter()
    .enumerate()
    {
        let msg = message(
            headers,
            &format!("R: [{id}] potete chiudere"),
            &format!("two-{i}@x"),
            LONG_BODY,
        );
        r.refused(
            REQUESTER,
            &msg,
            &id,
            Status::Suspended,
            ReasonCode::AuthFromNotSingle,
        )
        .await;
    }
    // Nothing went out for any of them.
    r.relayed(1).await;

    // The requester answers the confirmation: resumed, told so.
    let answer = message(
        &answering(REQUESTER, &conf_id),
        &format!("R: [{id}] Aiuto"),
        "v2@cliente.example",
        LONG_BODY,
    );
    let fwd = r.send(REQUESTER, NUOVOCASO, &answer).await;
    assert_eq!(action(&fwd), "resumed");
    assert_eq!(r.ticket(&id).await.status, Status::Open);
    let sent = r.relayed(2).await;
    assert!(sent.iter().all(|m| m.rcpts == vec![REQUESTER]), "{sent:?}");
    let notice = &sent[1].data;
    assert!(
        subject_of(notice).contains("riattivato"),
        "{}",
        subject_of(notice)
    );
    assert_eq!(
        header(notice, "In-Reply-To").as_deref(),
        Some("<v2@cliente.example>")
    );
    let t = r.ticket(&id).await;
    assert!(
        t.replies.iter().all(|rep| rep.to == REQUESTER),
        "{:?}",
        t.replies
    );
}

/// The requester's own mail system: BATV-tagged envelope, From in other
/// case. The same person, so the close applies and the notice goes to the
/// requester on file, not to the tagged envelope address.
#[tokio::test]
async fn batv_envelope_and_from_case_still_are_the_requester() {
    let r = Rig::start().await;
    let id = r
        .open(
            REQUESTER,
            &message(
                &from(REQUESTER),
                "Stampa fatture bloccata su Mago4",
                "b1@cliente.example",
                LONG_BODY,
            ),
        )
        .await;
    let conf_id = header(&r.relayed(1).await[0].data, "Message-ID").unwrap();
    let close = message(
        &answering("Mario Rossi <Mario@Cliente.Example>", &conf_id),
        &format!("R: [{id}] risolto, potete chiudere"),
        "b2@cliente.example",
        "Grazie.",
    );
    let fwd = r
        .send("prvs=1234abcdef=mario@cliente.example", NUOVOCASO, &close)
        .await;
    assert_eq!(action(&fwd), "closed");
    assert_eq!(r.ticket(&id).await.status, Status::Closed);
    let sent = r.relayed(2).await;
    assert_eq!(sent[1].rcpts, vec![REQUESTER]);
    assert!(subject_of(&sent[1].data).contains("chiuso"));
}

/// A signed id is bound to the address it was sent to: the confirmation
/// of a case opened with someone else's From went to the envelope sender,
/// and answering it proves nothing about the requester.
#[tokio::test]
async fn an_id_sent_to_someone_else_does_not_authenticate_the_requester() {
    let r = Rig::start().await;
    // x9 opens a case in mario's name; the confirmation goes to x9.
    let id = r
        .open(
            FORGER,
            &message(
                &from(REQUESTER),
                "Stampa fatture bloccata su Mago4",
                "f1@vps.example",
                LONG_BODY,
            ),
        )
        .await;
    assert_eq!(r.ticket(&id).await.requester, REQUESTER);
    let conf = r.relayed(1).await.remove(0);
    assert_eq!(conf.rcpts, vec![FORGER]);
    let conf_id = header(&conf.data, "Message-ID").unwrap();
    // x9 answers it as mario, even with mario's envelope.
    for envelope in [FORGER, REQUESTER] {
        let msg = message(
            &answering(REQUESTER, &conf_id),
            &format!("R: [{id}] potete chiudere"),
            &format!("f2-{envelope}"),
            "chiudete",
        );
        r.refused(
            envelope,
            &msg,
            &id,
            Status::Open,
            ReasonCode::AuthSignedForOther,
        )
        .await;
    }
    r.relayed(1).await;
}

/// The second case: the reply to our confirmation repeats our
/// subject, which repeats the requester's "si è chiuso": that appends. The
/// next reply asks to close in its own words, and closes.
#[tokio::test]
async fn our_subject_quoted_back_is_not_a_command_the_senders_words_are() {
    let r = Rig::start().await;
    let original = "Il gestionale si è chiuso da solo durante la stampa delle fatture";
    let fwd = r
        .send(
            REQUESTER,
            NUOVOCASO,
            &message(&from(REQUESTER), original, "c1@cliente.example", LONG_BODY),
        )
        .await;
    let id = header(&fwd, "X-Ticketgate-Ticket").unwrap();
    assert_eq!(r.ticket(&id).await.status, Status::Open);
    let conf = r.relayed(1).await.remove(0);
    let conf_id = header(&conf.data, "Message-ID").unwrap();
    let ours = subject_of(&conf.data);
    assert!(ours.contains(&id) && ours.contains(original), "{ours}");

    let quoting = message(
        &answering(REQUESTER, &conf_id),
        &format!("R: {ours}"),
        "c2@cliente.example",
        "Aggiungo che succede anche con le note di credito.",
    );
    let fwd = r.send(REQUESTER, NUOVOCASO, &quoting).await;
    assert_eq!(action(&fwd), "appended");
    let t = r.ticket(&id).await;
    assert_eq!(t.status, Status::Open);
    assert!(!last_reasons(&t).contains(&ReasonCode::CommandClose));
    r.relayed(1).await;

    let asking = message(
        &answering(REQUESTER, &conf_id),
        &format!("R: {ours} - risolto, potete chiudere"),
        "c3@cliente.example",
        "Grazie.",
    );
    let fwd = r.send(REQUESTER, NUOVOCASO, &asking).await;
    assert_eq!(action(&fwd), "closed");
    assert_eq!(r.ticket(&id).await.status, Status::Closed);
    let sent = r.relayed(2).await;
    assert_eq!(sent[1].rcpts, vec![REQUESTER]);
    assert!(subject_of(&sent[1].data).contains("Ticket chiuso"));
}

fn with_screenshot(subject: &str, msgid: &str) -> Vec<u8> {
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    format!(
        "From: {REQUESTER}\r\nTo: {NUOVOCASO}\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n--B\r\nContent-Type: image/png; name=\"schermata.png\"\r\nContent-Disposition: attachment; filename=\"schermata.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{png}\r\n--B--\r\n"
    )
    .into_bytes()
}

/// The third case: the tray icon's mail, a good subject and the
/// screenshot, nothing else, is a complete report; a vague subject still
/// asks for details.
#[tokio::test]
async fn a_good_subject_and_a_screenshot_open_a_normal_case() {
    let r = Rig::start().await;
    let fwd = r
        .send(
            REQUESTER,
            NUOVOCASO,
            &with_screenshot(
                "Mago4: errore 55 in emissione fatture",
                "s1@cliente.example",
            ),
        )
        .await;
    let id = header(&fwd, "X-Ticketgate-Ticket").unwrap();
    assert_eq!(header(&fwd, "X-Ticketgate-Status").as_deref(), Some("open"));
    let t = r.ticket(&id).await;
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.messages[0].attachments.len(), 1);
    assert!(
        t.reasons.contains(&ReasonCode::QualityImageAttached),
        "{:?}",
        t.reasons
    );
    let fwd = r
        .send(
            REQUESTER,
            NUOVOCASO,
            &with_screenshot("Aiuto", "s2@cliente.example"),
        )
        .await;
    let vague = header(&fwd, "X-Ticketgate-Ticket").unwrap();
    assert_eq!(r.ticket(&vague).await.status, Status::Suspended);
    let sent = r.relayed(2).await;
    let asks = |m: &Received| body_of(&m.data).contains("troppo generica");
    let by_ticket = |tid: &str| {
        sent.iter()
            .find(|m| header(&m.data, "X-Ticketgate-Ticket").as_deref() == Some(tid))
            .unwrap()
    };
    assert!(!asks(by_ticket(&id)));
    assert!(
        asks(by_ticket(&vague)),
        "{}",
        body_of(&by_ticket(&vague).data)
    );
    assert!(sent.iter().all(|m| m.rcpts == vec![REQUESTER]));
}

/// The fourth case, and the other shared 01S addresses: short
/// names from the shipped config find their procedure.
#[tokio::test]
async fn procedure_aliases_of_the_shipped_config() {
    let r = Rig::start().await;
    let cases = [
        (
            "helpdesk.sisemplice.patronato@01s.it",
            "Domanda ANF respinta per IBAN non valido",
            Some("ANF-AUU"),
        ),
        (
            "helpdesk.sisemplice.patronato@01s.it",
            "AUU: importo errato",
            Some("ANF-AUU"),
        ),
        (
            "helpdesk.sisemplice.patronato@01s.it",
            "Quadratura INAC di novembre",
            Some("Contabilità INAC"),
        ),
        (
            "helpdesk.sisemplice.730@01s.it",
            "Il 730 non si invia",
            Some("Dichiarativo 730"),
        ),
        (
            "helpdesk.sisemplice.730@01s.it",
            "Bonus non calcolato",
            Some("Opzione bonus"),
        ),
        (
            "helpdesk.sisemplice.isee@01s.it",
            "DSU respinta",
            Some("ISEE"),
        ),
        (
            "helpdesk.sisemplice.isee@01s.it",
            "ISEE universitario errato",
            Some("ISEU"),
        ),
        (
            "helpdesk.sisemplice@01s.it",
            "Utenza bloccata",
            Some("Utenze"),
        ),
        ("helpdesk.sisemplice@01s.it", "Stampa lenta", None),
    ];
    for (i, (to, subject, want)) in cases.iter().enumerate() {
        let msg = format!(
            "From: op@caf.example\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <al-{i}@caf.example>\r\n\r\n{LONG_BODY}\r\n"
        );
        let fwd = r.send("op@caf.example", to, msg.as_bytes()).await;
        assert_eq!(action(&fwd), "created");
        let t = r
            .ticket(&header(&fwd, "X-Ticketgate-Ticket").unwrap())
            .await;
        assert_eq!(t.procedure.as_deref(), *want, "{subject}");
    }
}

/// Item 1 for the workgroup's notices: an information request set from
/// the control socket goes to the requester on file, and a forged answer
/// to it resumes nothing.
#[tokio::test]
async fn information_request_goes_to_the_requester_and_only_its_answer_resumes() {
    use ticketgate::control::{Op, Request, Response};
    let r = Rig::start().await;
    let to = "helpdesk.sisemplice.paghe@01s.it";
    let op = "op@caf.example";
    let msg = format!(
        "From: {op}\r\nTo: {to}\r\nSubject: Paghe: cedolino errato\r\nMessage-ID: <p1@caf.example>\r\n\r\n{LONG_BODY}\r\n"
    );
    let fwd = r.send(op, to, msg.as_bytes()).await;
    let id = header(&fwd, "X-Ticketgate-Ticket").unwrap();
    r.relayed(1).await;
    let request = Request {
        op: Op::Suspend {
            id: id.clone(),
            message: "Indichi il codice fiscale.".into(),
        },
        actor: Some("giulia".into()),
    };
    let resp = ticketgate::control::call(&r.dg.control, &request)
        .await
        .unwrap();
    assert!(matches!(resp, Response::Ticket { .. }), "{resp:?}");
    let sent = r.relayed(2).await;
    assert_eq!(sent[1].rcpts, vec![op]);
    let info_id = header(&sent[1].data, "Message-ID").unwrap();
    let forged = format!(
        "From: {op}\r\nTo: {to}\r\nSubject: R: [{id}] Richiesta informazioni\r\nMessage-ID: <p2@vps.example>\r\nIn-Reply-To: {info_id}\r\n\r\nEcco: RSSMRA80A01H501U\r\n"
    );
    let fwd = r.send(FORGER, to, forged.as_bytes()).await;
    assert_eq!(action(&fwd), "refused");
    assert_eq!(r.ticket(&id).await.status, Status::Suspended);
    let answer = forged.replace("p2@vps.example", "p3@caf.example");
    let fwd = r.send(op, to, answer.as_bytes()).await;
    assert_eq!(action(&fwd), "resumed");
    assert_eq!(r.ticket(&id).await.status, Status::Open);
    let sent = r.relayed(3).await;
    assert!(sent.iter().all(|m| m.rcpts == vec![op]), "{sent:?}");
}
