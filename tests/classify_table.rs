//! Table-driven check of route + parse + classify against the shipped
//! config: realistic Italian mail, raw bytes as they arrive.

use std::path::Path;

use ticketgate::classify::{MailCommand, classify};
use ticketgate::config::Config;
use ticketgate::parse::parse;
use ticketgate::route::HelpdeskTable;
use ticketgate::ticket::Urgency;

const PP: &str = "Project++";
const SIS: &str = "01S SiSemplice";

/// A long enough description, so the quality check passes.
const DESCR: &str = "La procedura di emissione ddt sul registro VENIMM dal 1 al 10 dicembre \
si blocca per il ddt n. 12345 con il messaggio 'record bloccato'.";

fn config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ticketgate.toml");
    Config::load(&path).unwrap_or_else(|e| panic!("shipped config: {e}"))
}

/// A plain UTF-8 message; `subject` goes in as written (may be encoded words).
fn plain(subject: &str, body: &str) -> Vec<u8> {
    raw(
        subject,
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
        body,
    )
}

fn raw(subject: &str, mime_headers: &str, body: &str) -> Vec<u8> {
    let text = format!(
        "Return-Path: <luca.bianchi@studiobianchi.it>\n\
         From: Luca Bianchi <luca.bianchi@studiobianchi.it>\n\
         To: assistenza <nuovocaso@projectpp.it>\n\
         Date: Mon, 02 Mar 2026 09:41:12 +0100\n\
         Message-ID: <20260302094112.4711@studiobianchi.it>\n\
         Subject: {subject}\n\
         MIME-Version: 1.0\n\
         {mime_headers}\n\
         {body}\n"
    );
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

#[derive(Debug, Default, Clone)]
struct Expect {
    helpdesk: &'static str,
    queue: &'static str,
    recipients: usize,
    procedure: Option<&'static str>,
    sector: Option<&'static str>,
    urgency: Urgency,
    contract: Option<&'static str>,
    command: Option<MailCommand>,
    ticket_id: Option<&'static str>,
    vague: bool,
}

fn pp(queue: &'static str) -> Expect {
    Expect {
        helpdesk: PP,
        queue,
        recipients: 1,
        sector: Some("tecnico"),
        ..Expect::default()
    }
}

fn sis(queue: &'static str, procedure: Option<&'static str>) -> Expect {
    Expect {
        helpdesk: SIS,
        queue,
        recipients: 1,
        procedure,
        ..Expect::default()
    }
}

struct Case {
    name: &'static str,
    rcpts: &'static [&'static str],
    raw: Vec<u8>,
    desks: Vec<Expect>,
    ignored: &'static [&'static str],
}

fn case(
    name: &'static str,
    rcpts: &'static [&'static str],
    raw: Vec<u8>,
    desks: Vec<Expect>,
) -> Case {
    Case {
        name,
        rcpts,
        raw,
        desks,
        ignored: &[],
    }
}

const NUOVO: &[&str] = &["nuovocaso@projectpp.it"];

fn cases() -> Vec<Case> {
    let gest = |e: Expect| Expect {
        sector: Some("gestionale"),
        ..e
    };
    vec![
        // --- Project++: sector keyword as word prefix ---
        case(
            "mago4 in subject",
            NUOVO,
            plain("MAGO4: errore in stampa fatture", DESCR),
            vec![gest(pp("nuovocaso"))],
        ),
        case(
            "Mago.net in body",
            NUOVO,
            plain(
                "Stampa fatture lenta",
                "Buongiorno,\nsu Mago.net la stampa delle fatture impiega dieci minuti.\n",
            ),
            vec![gest(pp("nuovocaso"))],
        ),
        case(
            "immagine and Imago are not mago",
            NUOVO,
            plain(
                "Immagine del logo non stampata",
                "Il server Imago non carica l'immagine del logo nei documenti PDF.\n",
            ),
            vec![pp("nuovocaso")],
        ),
        case(
            "mago and critico only in quoted text",
            NUOVO,
            plain(
                "R: Posta elettronica non riceve",
                "Buongiorno, il problema della posta si ripresenta anche oggi su tutti i pc.\n\
                 \n\
                 > Il gestionale Mago4 e' critico\n\
                 \n\
                 Il giorno ven 27 feb 2026 alle ore 17:02 Supporto Project++\n\
                 <nuovocaso@projectpp.it> ha scritto:\n\
                 Abbiamo verificato Mago: problema critico risolto.\n\
                 Contratto: 999\n",
            ),
            vec![pp("nuovocaso")],
        ),
        case(
            "signature does not count",
            NUOVO,
            plain(
                "Antivirus scaduto",
                "L'antivirus segnala la licenza scaduta su tutti i pc dell'ufficio.\n\
                 -- \n\
                 Luca Bianchi - Consulente Mago4\n",
            ),
            vec![pp("nuovocaso")],
        ),
        // --- urgency: subject only, highest wins ---
        case(
            "urgente and critico -> critico",
            NUOVO,
            plain("URGENTE - server critico fermo", DESCR),
            vec![Expect {
                urgency: Urgency::Critico,
                ..pp("nuovocaso")
            }],
        ),
        case(
            "urgente only in body -> normale",
            NUOVO,
            plain(
                "Stampante di rete offline",
                "La stampante di rete risulta offline da stamattina, è urgente!\n",
            ),
            vec![pp("nuovocaso")],
        ),
        case(
            "Urgente in subject",
            NUOVO,
            plain("Fido calcolato male (Urgente)", DESCR),
            vec![Expect {
                urgency: Urgency::Urgente,
                ..pp("nuovocaso")
            }],
        ),
        // --- contract ---
        case(
            "Contratto: 12345",
            NUOVO,
            plain(
                "Accesso internet assente",
                "Da stamattina nessun pc accede a internet.\nContratto: 12345\nGrazie\n",
            ),
            vec![Expect {
                contract: Some("12345"),
                ..pp("nuovocaso")
            }],
        ),
        case(
            "contratto :  A-77.",
            NUOVO,
            plain(
                "Permessi cartella condivisa",
                "L'utente mrossi non apre la cartella Amministrazione; contratto :  A-77.\n",
            ),
            vec![Expect {
                contract: Some("A-77"),
                ..pp("nuovocaso")
            }],
        ),
        // --- encodings ---
        case(
            "ISO-8859-1 encoded-word subject, QP body",
            NUOVO,
            raw(
                "=?ISO-8859-1?Q?Contabilit=E0_bloccata_urgente?=",
                "Content-Type: text/plain; charset=iso-8859-1\n\
                 Content-Transfer-Encoding: quoted-printable\n",
                "In Mago4 la contabilit=E0 non si apre perch=E9 l'archivio =\n\
                 risulta in uso da un altro utente.\n\
                 Contratto:=2077",
            ),
            vec![gest(Expect {
                urgency: Urgency::Urgente,
                contract: Some("77"),
                ..pp("nuovocaso")
            })],
        ),
        case(
            "UTF-8 base64 subject and body",
            NUOVO,
            raw(
                // "Errore critico – registrazione ordini"
                "=?UTF-8?B?RXJyb3JlIGNyaXRpY28g4oCTIHJlZ2lzdHJhemlvbmUgb3JkaW5p?=",
                "Content-Type: text/plain; charset=utf-8\n\
                 Content-Transfer-Encoding: base64\n",
                // "Con MAGO la registrazione ordini dà errore 0x80 al salvataggio."
                "Q29uIE1BR08gbGEgcmVnaXN0cmF6aW9uZSBvcmRpbmkgZMOgIGVycm9yZSAweDgwIGFsIHNh\n\
                 bHZhdGFnZ2lvLg==",
            ),
            vec![gest(Expect {
                urgency: Urgency::Critico,
                ..pp("nuovocaso")
            })],
        ),
        case(
            "HTML-only body",
            NUOVO,
            raw(
                "Fatture elettroniche scartate",
                "Content-Type: text/html; charset=utf-8\n",
                "<html><body><p>Le fatture elettroniche emesse da <b>Mago4</b> vengono \
                 scartate dallo SDI.</p></body></html>",
            ),
            vec![gest(pp("nuovocaso"))],
        ),
        case(
            "uppercase recipient",
            &["NUOVOCASO@PROJECTPP.IT"],
            plain("Backup notturno fallito", DESCR),
            vec![pp("nuovocaso")],
        ),
        // --- sector addresses, staff, several recipients ---
        case(
            "sector address ignores keywords",
            &["Supporto.Tecnico@projectpp.it"],
            plain("Mago4 lento in rete", DESCR),
            vec![pp("supporto.tecnico")],
        ),
        Case {
            ignored: &["mario.rossi@projectpp.it"],
            ..case(
                "staff address only",
                &["Mario.Rossi@projectpp.it"],
                plain("Ciao Mario", DESCR),
                vec![],
            )
        },
        Case {
            ignored: &["mario.rossi@projectpp.it"],
            ..case(
                "staff address with a queue",
                &[
                    "mario.rossi@projectpp.it",
                    "supporto.gestionale@projectpp.it",
                ],
                plain("Fido calcolato male", DESCR),
                vec![gest(pp("supporto.gestionale"))],
            )
        },
        case(
            "two addresses of one helpdesk -> one desk, first queue",
            &[
                "cliente@altrodominio.it",
                "supporto.gestionale@projectpp.it",
                "nuovocaso@projectpp.it",
            ],
            plain("Registro IVA vendite errato", DESCR),
            vec![Expect {
                recipients: 2,
                ..gest(pp("supporto.gestionale"))
            }],
        ),
        case(
            "two helpdesks -> two desks",
            &["nuovocaso@projectpp.it", "helpdesk.sisemplice.isee@01s.it"],
            plain("ISEU: errore calcolo indicatore", DESCR),
            vec![pp("nuovocaso"), sis("isee", Some("ISEU"))],
        ),
        // --- quality, commands, ticket ids ---
        case(
            "vague subject",
            NUOVO,
            plain("Siamo bloccati!!", DESCR),
            vec![Expect {
                vague: true,
                ..pp("nuovocaso")
            }],
        ),
        case(
            "short body",
            NUOVO,
            plain("Problema emissione fatture", "non va"),
            vec![Expect {
                vague: true,
                ..pp("nuovocaso")
            }],
        ),
        case(
            "close command with ticket id",
            NUOVO,
            plain("R: [PP-2026-000042] caso da chiudere", DESCR),
            vec![Expect {
                command: Some(MailCommand::Close),
                ticket_id: Some("PP-2026-000042"),
                ..pp("nuovocaso")
            }],
        ),
        case(
            "reopen command, lowercase id",
            NUOVO,
            plain("RIF: pp-2026-000042 riaprire il caso chiuso", DESCR),
            vec![Expect {
                command: Some(MailCommand::Reopen),
                ticket_id: Some("PP-2026-000042"),
                ..pp("nuovocaso")
            }],
        ),
        // --- 01S shared addresses ---
        case(
            "ISEE vs ISEU: ISEE in subject",
            &["helpdesk.sisemplice.isee@01s.it"],
            plain("Pratica ISEE 2026 non trasmessa", DESCR),
            vec![sis("isee", Some("ISEE"))],
        ),
        case(
            "ISEE vs ISEU: ISEU in body",
            &["helpdesk.sisemplice.isee@01s.it"],
            plain(
                "Errore di trasmissione",
                "La pratica ISEU dello studente non si trasmette.",
            ),
            vec![sis("isee", Some("ISEU"))],
        ),
        case(
            "ANF-AUU on patronato",
            &["HelpDesk.SiSemplice.Patronato@01S.it"],
            plain("Domanda ANF-AUU respinta", DESCR),
            vec![sis("patronato", Some("ANF-AUU"))],
        ),
        case(
            "Contabilità INAC without accent",
            &["helpdesk.sisemplice.patronato@01s.it"],
            plain("CONTABILITA INAC: quadratura mensile", DESCR),
            vec![sis("patronato", Some("Contabilità INAC"))],
        ),
        case(
            "Contabilità INAC ISO-8859-1 subject",
            &["helpdesk.sisemplice.patronato@01s.it"],
            raw(
                "=?iso-8859-1?Q?Contabilit=E0_INAC_non_si_apre?=",
                "Content-Type: text/plain; charset=iso-8859-1\n",
                "Buongiorno, il modulo non si apre.",
            ),
            vec![sis("patronato", Some("Contabilità INAC"))],
        ),
        case(
            "patronato without a procedure name",
            &["helpdesk.sisemplice.patronato@01s.it"],
            plain("Errore in stampa", DESCR),
            vec![sis("patronato", None)],
        ),
        case(
            "730 address: Opzione bonus",
            &["helpdesk.sisemplice.730@01s.it"],
            plain("Opzione bonus non calcolata sul dichiarativo", DESCR),
            vec![sis("730", Some("Opzione bonus"))],
        ),
        case(
            "730 address: Dichiarativo 730 in body",
            &["helpdesk.sisemplice.730@01s.it"],
            plain(
                "Errore invio",
                "Il Dichiarativo 730 del contribuente non si invia.",
            ),
            vec![sis("730", Some("Dichiarativo 730"))],
        ),
        case(
            "single-procedure address",
            &["helpdesk.sisemplice.erogazioneeservizi@01s.it"],
            plain("Errore", "x"),
            vec![sis(
                "erogazioneeservizi",
                Some("Procedura erogazione Servizi"),
            )],
        ),
        case(
            "generic address: Utenze",
            &["helpdesk.sisemplice@01s.it"],
            plain("R: Utenze - reset password operatore", DESCR),
            vec![sis("helpdesk.sisemplice", Some("Utenze"))],
        ),
        case(
            "01S procedure only in quoted text",
            &["helpdesk.sisemplice.isee@01s.it"],
            plain(
                "R: Errore di trasmissione",
                "Ancora lo stesso errore.\n> La pratica ISEU e' stata corretta\n",
            ),
            vec![sis("isee", None)],
        ),
    ]
}

#[test]
fn classify_table() {
    let config = config();
    let table = HelpdeskTable::new(config.helpdesks.clone());
    let mut failures = Vec::new();
    for c in cases() {
        let rcpts: Vec<String> = c.rcpts.iter().map(|s| s.to_string()).collect();
        let routing = table.route(&rcpts);
        let mail = parse(&c.raw);
        let ignored: Vec<&str> = routing.ignored.iter().map(|(a, _)| a.as_str()).collect();
        if ignored != c.ignored {
            failures.push(format!(
                "{}: ignored {ignored:?}, want {:?}",
                c.name, c.ignored
            ));
        }
        if routing.desks.len() != c.desks.len() {
            failures.push(format!(
                "{}: {} desks, want {}",
                c.name,
                routing.desks.len(),
                c.desks.len()
            ));
            continue;
        }
        for (routed, want) in routing.desks.iter().zip(&c.desks) {
            let desk = &table.helpdesks()[routed.helpdesk];
            let queue = &desk.queues[routed.queue];
            let got = classify(desk, queue, &mail);
            let mut check = |what: &str, ok: bool, detail: String| {
                if !ok {
                    failures.push(format!("{}: {what}: {detail} ({:?})", c.name, got.reasons));
                }
            };
            check("helpdesk", desk.name == want.helpdesk, desk.name.clone());
            check(
                "queue",
                queue.queue_name() == want.queue,
                queue.queue_name().into(),
            );
            check(
                "recipients",
                routed.recipients.len() == want.recipients,
                format!("{:?}", routed.recipients),
            );
            check(
                "procedure",
                got.procedure.as_deref() == want.procedure,
                format!("{:?}", got.procedure),
            );
            check(
                "sector",
                got.sector.as_deref() == want.sector,
                format!("{:?}", got.sector),
            );
            check(
                "urgency",
                got.urgency == want.urgency,
                format!("{:?}", got.urgency),
            );
            check(
                "contract",
                got.contract.as_deref() == want.contract,
                format!("{:?}", got.contract),
            );
            check(
                "command",
                got.command == want.command,
                format!("{:?}", got.command),
            );
            check(
                "ticket id",
                got.subject_ticket_id.as_deref() == want.ticket_id,
                format!("{:?}", got.subject_ticket_id),
            );
            check("vague", got.vague == want.vague, format!("{:?}", got.vague));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn shipped_config_has_every_01s_procedure() {
    let config = config();
    let sis = config
        .helpdesks
        .iter()
        .find(|h| h.name == SIS)
        .expect("01S helpdesk");
    let procedures: usize = sis.queues.iter().map(|q| q.procedures.len()).sum();
    assert_eq!(procedures, 38);
    let mut addresses: Vec<String> = sis
        .queues
        .iter()
        .map(|q| q.address.to_lowercase())
        .collect();
    addresses.sort();
    addresses.dedup();
    // helpdesk-01s-procedures.txt: 38 rows on 32 distinct addresses (730: 2
    // procedures, isee: 2, patronato: 3, helpdesk.sisemplice@: 3, 28 others).
    assert_eq!(addresses.len(), 32);
    assert_eq!(sis.queues.len(), 32);
    assert_eq!(sis.ticket_prefix, "SIS");
    assert_eq!(sis.reply_from, "helpdesk.sisemplice@01s.it");
    let queue = |a: &str| sis.queues.iter().find(|q| q.address == a).unwrap();
    assert_eq!(
        queue("helpdesk.sisemplice.patronato@01s.it").procedures,
        ["ANF-AUU", "Contabilità INAC", "Patronato"]
    );
    assert_eq!(
        queue("helpdesk.sisemplice.erogazioneeservizi@01s.it").procedures,
        ["Procedura erogazione Servizi"]
    );
    assert!(!sis.severities.is_empty());

    let pp = config
        .helpdesks
        .iter()
        .find(|h| h.name == PP)
        .expect("Project++");
    assert_eq!(pp.ticket_prefix, "PP");
    assert_eq!(pp.default_sector.as_deref(), Some("tecnico"));
    assert_eq!(pp.staff_domains, ["projectpp.it"]);
    assert_eq!(pp.queues.len(), 3);
    assert!(!pp.severities.is_empty());
}
