//! Classify: the seed rules of DESIGN §3, all driven by the helpdesk config.
//!
//! Matching is case-insensitive and accent-insensitive ("Contabilita" finds
//! "Contabilità") on the decoded subject and on the new text of the body
//! (quoted earlier messages and the signature do not count), on whole words
//! unless a rule says "prefix". A word is a run of letters and digits, so
//! "ANF-AUU", "Mago.net" and "l'urgente" split where one expects.

use crate::config::{HelpdeskConfig, Place, QueueConfig};
use crate::parse::ParsedMail;
use crate::reason::ReasonCode;
use crate::ticket::Urgency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailCommand {
    Close,
    Reopen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub procedure: Option<String>,
    pub sector: Option<String>,
    pub urgency: Urgency,
    pub contract: Option<String>,
    /// A close / reopen word in the subject; the lifecycle decides whether
    /// it applies (referenced case, requester, authentication).
    pub command: Option<MailCommand>,
    /// A ticket id of this helpdesk in the subject, e.g. `PP-2026-000042`,
    /// with the prefix as configured, uppercased.
    pub subject_ticket_id: Option<String>,
    /// Quality check failed: the case opens suspended and the confirmation
    /// asks for details.
    pub vague: bool,
    pub reasons: Vec<ReasonCode>,
}

/// Reply and forward prefixes, Italian and English (and the usual German /
/// French ones Outlook produces), compared without case.
const REPLY_PREFIXES: &[&str] = &[
    "inoltro", "inoltra", "rif", "fwd", "fw", "re", "r", "i", "aw", "wg", "tr",
];

/// `subject` without leading reply / forward prefixes (`R:`, `RE:`, `RIF:`,
/// `I:`, `FW:`, `FWD:`, `Inoltro:`, also repeated, `Re[2]:`, `RE :`), trimmed.
pub fn strip_reply_prefixes(subject: &str) -> &str {
    let mut s = subject.trim();
    'outer: loop {
        for prefix in REPLY_PREFIXES {
            let n = prefix.len();
            if s.len() > n && s.as_bytes()[..n].eq_ignore_ascii_case(prefix.as_bytes()) {
                // Matched bytes are ASCII, so `n` is a char boundary.
                let mut rest = &s[n..];
                // Optional counter: "Re[2]:" or "Re(2):".
                if let Some(r) = rest.strip_prefix(['[', '(']) {
                    let digits = r.bytes().take_while(u8::is_ascii_digit).count();
                    if digits > 0 && r[digits..].starts_with([']', ')']) {
                        rest = &r[digits + 1..];
                    }
                }
                let rest = rest.trim_start_matches([' ', '\t']);
                if let Some(r) = rest.strip_prefix([':', '：']) {
                    s = r.trim();
                    continue 'outer;
                }
            }
        }
        return s;
    }
}

pub fn classify(desk: &HelpdeskConfig, queue: &QueueConfig, mail: &ParsedMail) -> Classification {
    let rules = &desk.rules;
    let subject = Folded::new(&mail.subject);
    let stripped_subject = strip_reply_prefixes(&mail.subject);
    let body = Folded::new(&mail.new_text);
    let mut reasons = Vec::new();
    // Each finding pushes its reasons as it is made, so their order is
    // the order of these lines.
    let procedure = procedure_of(queue, &subject, &body, &mut reasons);
    let sector = sector_of(desk, queue, &subject, &body, &mut reasons);
    let urgency = urgency_of(rules, &subject, &mut reasons);
    let contract = contract_of(rules, &body, &mut reasons);
    let command = command_of(desk, &mail.subject, &mut reasons);
    let subject_ticket_id = find_ticket_id(&mail.subject, &desk.ticket_prefix);
    let vague = is_vague(rules, mail, stripped_subject, &mut reasons);
    Classification {
        procedure,
        sector,
        urgency,
        contract,
        command,
        subject_ticket_id,
        vague,
        reasons,
    }
}

/// The queue's sector, else keyword rules where the queue applies them,
/// else the helpdesk default.
fn sector_of(
    desk: &HelpdeskConfig,
    queue: &QueueConfig,
    subject: &Folded,
    body: &Folded,
    reasons: &mut Vec<ReasonCode>,
) -> Option<String> {
    if let Some(sector) = &queue.sector {
        reasons.push(ReasonCode::SectorQueue);
        return Some(sector.clone());
    }
    let by_keyword = if queue.apply_sector_rules {
        desk.rules.sector_keywords.iter().find(|k| {
            let prefix = fold_phrase(&k.prefix);
            !prefix.is_empty()
                && k.r#in.iter().any(|place| {
                    let text = match place {
                        Place::Subject => subject,
                        Place::Body => body,
                    };
                    text.find(&prefix, Match::Prefix).is_some()
                })
        })
    } else {
        None
    };
    if let Some(k) = by_keyword {
        reasons.push(ReasonCode::SectorKeyword);
        Some(k.sector.clone())
    } else if let Some(sector) = &desk.default_sector {
        reasons.push(ReasonCode::SectorDefault);
        Some(sector.clone())
    } else {
        None
    }
}

/// Subject only, the highest level found wins.
fn urgency_of(
    rules: &crate::config::RulesConfig,
    subject: &Folded,
    reasons: &mut Vec<ReasonCode>,
) -> Urgency {
    let urgency = rules
        .urgency_keywords
        .iter()
        .filter(|k| subject.contains_word(&k.word))
        .map(|k| k.urgency)
        .max()
        .unwrap_or_default();
    reasons.push(match urgency {
        Urgency::Normale => ReasonCode::UrgencyDefault,
        Urgency::Urgente => ReasonCode::UrgencySubjectUrgente,
        Urgency::Critico => ReasonCode::UrgencySubjectCritico,
    });
    urgency
}

/// "<label> : value" in the new body text.
fn contract_of(
    rules: &crate::config::RulesConfig,
    body: &Folded,
    reasons: &mut Vec<ReasonCode>,
) -> Option<String> {
    let contract = rules
        .contract_label
        .as_deref()
        .and_then(|label| find_contract(body, label));
    if contract.is_some() {
        reasons.push(ReasonCode::ContractBody);
    }
    contract
}

fn command_of(
    desk: &HelpdeskConfig,
    subject: &str,
    reasons: &mut Vec<ReasonCode>,
) -> Option<MailCommand> {
    let command = mail_command(desk, subject, &[]);
    reasons.extend(command.map(|c| match c {
        MailCommand::Close => ReasonCode::CommandClose,
        MailCommand::Reopen => ReasonCode::CommandReopen,
    }));
    command
}

/// The procedure of a queue shared by several: the one named (by its name
/// or an alias, as a word) earliest in the subject, else in the body.
fn procedure_of(
    queue: &QueueConfig,
    subject: &Folded,
    body: &Folded,
    reasons: &mut Vec<ReasonCode>,
) -> Option<String> {
    match queue.procedures.as_slice() {
        [] => None,
        [only] => {
            reasons.push(ReasonCode::ProcedureQueue);
            Some(only.clone())
        }
        many => {
            let names = procedure_names(many, queue);
            let found = best_phrase(subject, &names)
                .map(|n| (n, ReasonCode::ProcedureSubjectMatch))
                .or_else(|| best_phrase(body, &names).map(|n| (n, ReasonCode::ProcedureBodyMatch)));
            let Some(((name, procedure), code)) = found else {
                reasons.push(ReasonCode::ProcedureNone);
                return None;
            };
            reasons.push(code);
            if name != procedure {
                reasons.push(ReasonCode::ProcedureAlias);
            }
            Some(procedure.clone())
        }
    }
}

/// Every name a procedure goes by, with the procedure: its own, then its
/// aliases.
fn procedure_names<'a>(
    procedures: &'a [String],
    queue: &'a QueueConfig,
) -> Vec<(&'a String, &'a String)> {
    let mut names: Vec<(&String, &String)> = procedures.iter().map(|p| (p, p)).collect();
    for p in procedures {
        for alias in queue.aliases.get(p).into_iter().flatten() {
            names.push((alias, p));
        }
    }
    names
}

/// Quality check, only where the rules ask for it: a vague subject, or a
/// body too short to describe the problem. A good subject with a picture
/// attached (the tray icon's screenshot) needs no words in the body.
fn is_vague(
    rules: &crate::config::RulesConfig,
    mail: &ParsedMail,
    stripped_subject: &str,
    reasons: &mut Vec<ReasonCode>,
) -> bool {
    let mut vague = false;
    if !rules.vague_subjects.is_empty() {
        let folded = fold_phrase(trim_vague(stripped_subject));
        if folded.is_empty()
            || rules
                .vague_subjects
                .iter()
                .any(|v| fold_phrase(trim_vague(v)) == folded)
        {
            vague = true;
            reasons.push(ReasonCode::QualityVagueSubject);
        }
    }
    if let Some(min) = rules.min_body_chars
        && mail.new_text.trim().chars().count() < min
    {
        let picture = mail
            .shape
            .attachments
            .iter()
            .any(|(content_type, _)| content_type.starts_with("image/"));
        if picture && !vague {
            reasons.push(ReasonCode::QualityImageAttached);
        } else {
            vague = true;
            reasons.push(ReasonCode::QualityShortBody);
        }
    }
    vague
}

/// The close / reopen word in what the sender wrote in `subject`. Reply
/// prefixes, this helpdesk's ticket ids and the text of our own replies'
/// subjects on the case (`ours`, as sent) are taken out first: "R:
/// [PP-2026-000001] Apertura ticket: Il gestionale si è chiuso" quotes the
/// case, it does not close it. A subject with both words ("riaprire il caso
/// chiuso") means reopen.
pub fn mail_command(desk: &HelpdeskConfig, subject: &str, ours: &[String]) -> Option<MailCommand> {
    let prefix = &desk.ticket_prefix;
    let mut written = own_words(head(subject), prefix);
    for text in ours {
        let quoted = own_words(head(text), prefix);
        written = without_phrase(&written, &quoted);
    }
    let written = Folded::new(&written);
    let rules = &desk.rules;
    if rules.reopen_words.iter().any(|w| written.contains_word(w)) {
        Some(MailCommand::Reopen)
    } else if rules.close_words.iter().any(|w| written.contains_word(w)) {
        Some(MailCommand::Close)
    } else {
        None
    }
}

/// Subjects are read for commands up to this many chars: one header line
/// (RFC 5322 §2.1.1) and more. Cutting our quoted subject out costs the
/// product of two lengths, which this keeps small whatever a mail holds.
const MAX_COMMAND_SUBJECT_CHARS: usize = 1000;

fn head(subject: &str) -> &str {
    match subject.char_indices().nth(MAX_COMMAND_SUBJECT_CHARS) {
        Some((at, _)) => &subject[..at],
        None => subject,
    }
}

/// `subject` without reply prefixes and without this helpdesk's ticket ids
/// (with the brackets around them).
fn own_words(subject: &str, prefix: &str) -> String {
    let mut rest = strip_reply_prefixes(subject).to_string();
    while let Some((start, end)) = locate_ticket_id(&rest, prefix) {
        let b = rest.as_bytes();
        let bracketed = start > 0
            && matches!(b[start - 1], b'[' | b'(')
            && matches!(b.get(end), Some(b']' | b')'));
        let (start, end) = if bracketed {
            (start - 1, end + 1)
        } else {
            (start, end)
        };
        rest.replace_range(start..end, " ");
    }
    strip_reply_prefixes(&rest).to_string()
}

/// `text` with every occurrence of `phrase` (folded, as whole words) cut
/// out.
fn without_phrase(text: &str, phrase: &str) -> String {
    let needle = fold_phrase(phrase);
    if needle.is_empty() {
        return text.to_string();
    }
    let hay = Folded::new(text);
    let mut keep = vec![true; hay.orig.len()];
    let mut from = 0;
    while let Some(at) = hay.find_from(&needle, Match::Word, from) {
        keep[at..at + needle.len()].fill(false);
        from = at + needle.len();
    }
    hay.orig
        .iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(*c))
        .collect()
}

fn trim_vague(s: &str) -> &str {
    s.trim()
        .trim_end_matches(|c: char| c.is_whitespace() || "!.?,;:…".contains(c))
        .trim_start_matches(|c: char| c.is_whitespace() || "¡¿".contains(c))
}

/// A ticket id `<prefix>-<4 digits>-<6 digits>` on word boundaries, e.g. in
/// "R: [pp-2026-000042] stampa"; returned with the prefix uppercased.
fn find_ticket_id(subject: &str, prefix: &str) -> Option<String> {
    let (start, end) = locate_ticket_id(subject, prefix)?;
    let (_, number) = subject[start..end].split_at(prefix.len());
    Some(format!("{}{number}", prefix.to_ascii_uppercase()))
}

/// Byte range of the first ticket id of `prefix` in `subject`.
fn locate_ticket_id(subject: &str, prefix: &str) -> Option<(usize, usize)> {
    let b = subject.as_bytes();
    let p = prefix.as_bytes();
    let len = p.len() + 12;
    if p.is_empty() || b.len() < len {
        return None;
    }
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    (0..=b.len() - len).find_map(|i| {
        let cand = &b[i..i + len];
        let rest = &cand[p.len()..];
        let found = (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && cand[..p.len()].eq_ignore_ascii_case(p)
            && rest[0] == b'-'
            && digits(&rest[1..5])
            && rest[5] == b'-'
            && digits(&rest[6..12])
            && b.get(i + len).is_none_or(|c| !c.is_ascii_alphanumeric());
        // Every byte matched is ASCII, so both ends are char boundaries.
        found.then_some((i, i + len))
    })
}

/// `<label> : value`, any horizontal spacing around the colon, the label on
/// a word boundary; trailing punctuation stripped; "n." / "nr." / "n°"
/// before the value skipped.
fn find_contract(body: &Folded, label: &str) -> Option<String> {
    let label = fold_phrase(label);
    if label.is_empty() {
        return None;
    }
    let mut from = 0;
    while let Some(at) = body.find_from(&label, Match::Prefix, from) {
        from = at + 1;
        let mut i = at + label.len();
        // The label is a whole word ("contratto", not "contrattone").
        if body.folded.get(i).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        let skip_space = |mut i: usize| {
            while body
                .folded
                .get(i)
                .is_some_and(|c| *c == ' ' && body.orig[i] != '\n')
            {
                i += 1;
            }
            i
        };
        i = skip_space(i);
        if body.folded.get(i) != Some(&':') {
            continue;
        }
        i = skip_space(i + 1);
        let mut value = body.token(i);
        if matches!(
            value.to_lowercase().as_str(),
            "n" | "n." | "nr" | "nr." | "n°" | "num" | "num." | "numero" | "no." | "nº"
        ) {
            value = body.token(skip_space(i + value.chars().count()));
        }
        let value = value
            .trim_end_matches(|c: char| ".,;:!?)]}>\"'»”’".contains(c))
            .trim_start_matches(|c: char| "([{<\"'«“‘#".contains(c));
        if !value.is_empty() {
            return Some(value.to_string());
        }
    }
    None
}

/// The `(name, value)` whose name is found earliest in `text`, as a whole
/// word; on a tie, the longest name.
fn best_phrase<'a, T>(text: &Folded, names: &[(&'a String, &'a T)]) -> Option<(&'a String, &'a T)> {
    names
        .iter()
        .filter_map(|&(name, value)| {
            let folded = fold_phrase(name);
            if folded.is_empty() {
                return None;
            }
            text.find(&folded, Match::Word)
                .map(|at| (at, std::cmp::Reverse(folded.len()), (name, value)))
        })
        .min_by_key(|(at, len, _)| (*at, *len))
        .map(|(_, _, found)| found)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Match {
    /// Whole words: no letter or digit on either side.
    Word,
    /// Start of a word: no letter or digit before.
    Prefix,
}

/// Text folded for matching, char by char: lowercase, accents removed,
/// every whitespace run one space. `orig` keeps the original char at the
/// same index, so values can be cut out as written.
struct Folded {
    folded: Vec<char>,
    orig: Vec<char>,
}

impl Folded {
    fn new(text: &str) -> Self {
        let mut folded = Vec::with_capacity(text.len());
        let mut orig = Vec::with_capacity(text.len());
        for c in text.chars() {
            if c.is_whitespace() {
                if folded.last() == Some(&' ') {
                    // Keep a newline visible in `orig` for the contract line.
                    if c == '\n'
                        && let Some(last) = orig.last_mut()
                    {
                        *last = '\n';
                    }
                    continue;
                }
                folded.push(' ');
                orig.push(c);
            } else {
                folded.push(fold_char(c));
                orig.push(c);
            }
        }
        Folded { folded, orig }
    }

    fn contains_word(&self, word: &str) -> bool {
        let w = fold_phrase(word);
        !w.is_empty() && self.find(&w, Match::Word).is_some()
    }

    fn find(&self, needle: &[char], mode: Match) -> Option<usize> {
        self.find_from(needle, mode, 0)
    }

    fn find_from(&self, needle: &[char], mode: Match, from: usize) -> Option<usize> {
        let hay = &self.folded;
        let m = needle.len();
        if m == 0 || hay.len() < m {
            return None;
        }
        (from..=hay.len() - m).find(|&i| {
            hay[i] == needle[0]
                && hay[i..i + m] == *needle
                && (i == 0 || !is_word_char(hay[i - 1]) || !is_word_char(needle[0]))
                && (mode == Match::Prefix
                    || i + m == hay.len()
                    || !is_word_char(hay[i + m])
                    || !is_word_char(needle[m - 1]))
        })
    }

    /// The original text from `i` to the next whitespace.
    fn token(&self, i: usize) -> String {
        self.orig
            .get(i..)
            .unwrap_or(&[])
            .iter()
            .take_while(|c| !c.is_whitespace())
            .collect()
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// A config phrase folded like the text, trimmed.
fn fold_phrase(s: &str) -> Vec<char> {
    let mut f = Folded::new(s.trim()).folded;
    while f.last() == Some(&' ') {
        f.pop();
    }
    f
}

fn fold_char(c: char) -> char {
    let c = c.to_lowercase().next().unwrap_or(c);
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => 'u',
        'ý' | 'ÿ' => 'y',
        'š' | 'ś' => 's',
        'ž' | 'ź' | 'ż' => 'z',
        '’' | '‘' | '`' | '´' => '\'',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RulesConfig, SectorKeyword, UrgencyKeyword};

    fn pp() -> HelpdeskConfig {
        HelpdeskConfig {
            name: "Project++".into(),
            ticket_prefix: "PP".into(),
            reply_from: "nuovocaso@projectpp.it".into(),
            staff_domains: vec!["projectpp.it".into()],
            default_sector: Some("tecnico".into()),
            next_steps: None,
            queues: vec![
                QueueConfig {
                    address: "nuovocaso@projectpp.it".into(),
                    name: None,
                    procedures: vec![],
                    aliases: Default::default(),
                    sector: None,
                    apply_sector_rules: true,
                },
                QueueConfig {
                    address: "supporto.gestionale@projectpp.it".into(),
                    name: None,
                    procedures: vec![],
                    aliases: Default::default(),
                    sector: Some("gestionale".into()),
                    apply_sector_rules: false,
                },
            ],
            rules: RulesConfig {
                sector_keywords: vec![SectorKeyword {
                    prefix: "mago".into(),
                    sector: "gestionale".into(),
                    r#in: vec![Place::Subject, Place::Body],
                }],
                urgency_keywords: vec![
                    UrgencyKeyword {
                        word: "urgente".into(),
                        urgency: Urgency::Urgente,
                    },
                    UrgencyKeyword {
                        word: "critico".into(),
                        urgency: Urgency::Critico,
                    },
                ],
                close_words: vec!["chiudere".into(), "chiuso".into()],
                reopen_words: vec!["riaprire".into()],
                contract_label: Some("Contratto".into()),
                vague_subjects: vec!["siamo bloccati".into(), "problema".into(), "aiuto".into()],
                min_body_chars: Some(40),
                quality_message: None,
            },
            severities: vec![],
        }
    }

    fn mail(subject: &str, new_text: &str) -> ParsedMail {
        ParsedMail {
            subject: subject.into(),
            body: new_text.into(),
            new_text: new_text.into(),
            ..ParsedMail::default()
        }
    }

    const LONG: &str = "La procedura di emissione ddt sul registro VENIMM si blocca con errore.";

    fn run(subject: &str, body: &str) -> Classification {
        let d = pp();
        classify(&d, &d.queues[0], &mail(subject, body))
    }

    #[test]
    fn reply_prefixes() {
        assert_eq!(
            strip_reply_prefixes("R: RE: Rif: I: FW: Fwd: Inoltro: x"),
            "x"
        );
        assert_eq!(strip_reply_prefixes("re[2]: RE : aiuto"), "aiuto");
        assert_eq!(strip_reply_prefixes("Riaprire caso"), "Riaprire caso");
        assert_eq!(strip_reply_prefixes("Ricevuta: x"), "Ricevuta: x");
        assert_eq!(strip_reply_prefixes("RE:"), "");
        assert_eq!(strip_reply_prefixes("RE"), "RE");
        assert_eq!(strip_reply_prefixes("R: "), "");
        assert_eq!(strip_reply_prefixes("  Inoltro:   Problema  "), "Problema");
    }

    #[test]
    fn sector_prefix_words() {
        for s in [
            "Mago non parte",
            "MAGO4 lento",
            "errore su Mago.net",
            "x mago",
        ] {
            assert_eq!(run(s, LONG).sector.as_deref(), Some("gestionale"), "{s}");
        }
        for s in ["immagine sfocata", "Imago stampa", "amago"] {
            let c = run(s, LONG);
            assert_eq!(c.sector.as_deref(), Some("tecnico"), "{s}");
            assert!(c.reasons.contains(&ReasonCode::SectorDefault));
        }
        let c = run(
            "Stampa",
            "Su Mago4 la stampa fatture non va, errore 55 ogni volta.",
        );
        assert_eq!(c.sector.as_deref(), Some("gestionale"));
        assert!(c.reasons.contains(&ReasonCode::SectorKeyword));
        // A sector queue ignores the keywords.
        let d = pp();
        let c = classify(&d, &d.queues[1], &mail("rete", LONG));
        assert_eq!(c.sector.as_deref(), Some("gestionale"));
        assert!(c.reasons.contains(&ReasonCode::SectorQueue));
    }

    #[test]
    fn urgency() {
        assert_eq!(run("Stampa URGENTE", LONG).urgency, Urgency::Urgente);
        assert_eq!(
            run("urgente: blocco critico!", LONG).urgency,
            Urgency::Critico
        );
        assert_eq!(run("Critico e urgente", LONG).urgency, Urgency::Critico);
        assert_eq!(run("urgentemente", LONG).urgency, Urgency::Normale);
        let c = run(
            "Stampa",
            "è urgente e critico, la stampa non funziona da ieri.",
        );
        assert_eq!(c.urgency, Urgency::Normale);
        assert!(c.reasons.contains(&ReasonCode::UrgencyDefault));
    }

    #[test]
    fn contract() {
        let c = run(
            "Stampa",
            "Contratto: 12345\nLa stampa non va da ieri mattina.",
        );
        assert_eq!(c.contract.as_deref(), Some("12345"));
        assert!(c.reasons.contains(&ReasonCode::ContractBody));
        assert_eq!(
            run("x", "il nostro contratto :  A-77.").contract.as_deref(),
            Some("A-77")
        );
        assert_eq!(
            run("x", "CONTRATTO:n. 998;").contract.as_deref(),
            Some("998")
        );
        assert_eq!(run("x", "contratto\tnr° 5").contract, None);
        assert_eq!(run("x", "senza contratto.\nAltro: 5").contract, None);
        assert_eq!(run("x", "Contratto:\nciao").contract, None);
        assert_eq!(run("x", "subcontratto: 5").contract, None);
    }

    #[test]
    fn commands() {
        assert_eq!(
            run("R: [PP-2026-000042] da chiudere", LONG).command,
            Some(MailCommand::Close)
        );
        assert_eq!(run("Caso CHIUSO", LONG).command, Some(MailCommand::Close));
        assert_eq!(
            run("Riaprire il caso chiuso", LONG).command,
            Some(MailCommand::Reopen)
        );
        assert_eq!(run("chiusura bilancio", LONG).command, None);
    }

    #[test]
    fn ticket_id() {
        let id = |s: &str| run(s, LONG).subject_ticket_id;
        assert_eq!(
            id("R: [pp-2026-000042] stampa").as_deref(),
            Some("PP-2026-000042")
        );
        assert_eq!(id("RIF: PP-2025-123456").as_deref(), Some("PP-2025-123456"));
        assert_eq!(id("SIS-2026-000001"), None);
        assert_eq!(id("PP-2026-0000421"), None);
        assert_eq!(id("XPP-2026-000042"), None);
        assert_eq!(id("PP-26-000042"), None);
    }

    #[test]
    fn quality() {
        for s in ["", "R: ", "Problema!!!", "  AIUTO ?", "Siamo   bloccati."] {
            let c = run(s, LONG);
            assert!(c.vague, "{s:?}");
            assert!(c.reasons.contains(&ReasonCode::QualityVagueSubject));
        }
        let c = run("Problema emissione fatture", "non va");
        assert!(c.vague);
        assert_eq!(
            c.reasons
                .iter()
                .filter(|r| r.as_str().starts_with("quality"))
                .count(),
            1
        );
        assert!(c.reasons.contains(&ReasonCode::QualityShortBody));
        assert!(!run("Problema emissione fatture", LONG).vague);
    }

    fn with_attachment(subject: &str, content_type: &str) -> Classification {
        let d = pp();
        let mut m = mail(subject, "");
        m.shape.attachments = vec![(content_type.into(), Some("schermata".into()))];
        classify(&d, &d.queues[0], &m)
    }

    #[test]
    fn a_good_subject_and_a_screenshot_are_a_complete_report() {
        let c = with_attachment("Errore 55 emissione fatture", "image/png");
        assert!(!c.vague, "{:?}", c.reasons);
        assert!(c.reasons.contains(&ReasonCode::QualityImageAttached));
        // A vague subject asks for details whatever is attached.
        let c = with_attachment("Aiuto", "image/png");
        assert!(c.vague);
        assert!(c.reasons.contains(&ReasonCode::QualityVagueSubject));
        // Not a picture: the body must say it.
        let c = with_attachment("Errore 55 emissione fatture", "application/pdf");
        assert!(c.vague);
        assert!(c.reasons.contains(&ReasonCode::QualityShortBody));
    }

    #[test]
    fn commands_only_in_what_the_sender_wrote() {
        let d = pp();
        let id = "PP-2026-000001";
        let ours = vec![format!(
            "[{id}] Apertura ticket: Il gestionale si è chiuso da solo durante la stampa delle fatture"
        )];
        let quoting = format!(
            "R: [{id}] Apertura ticket: Il gestionale si è chiuso da solo durante la stampa delle fatture"
        );
        assert_eq!(mail_command(&d, &quoting, &ours), None);
        assert_eq!(mail_command(&d, &quoting, &[]), Some(MailCommand::Close));
        let asking = format!("{quoting} - risolto, potete chiudere");
        assert_eq!(mail_command(&d, &asking, &ours), Some(MailCommand::Close));
        // Folded the way clients fold: case, spacing, prefixes repeated.
        let shouting = format!(
            "RE: R:  [{}]  APERTURA TICKET:  il gestionale si e chiuso da solo durante la stampa delle fatture",
            id.to_lowercase()
        );
        assert_eq!(mail_command(&d, &shouting, &ours), None);
        // Our closing notice answered with "riaprire".
        let closed = vec![format!("[{id}] Ticket chiuso: Stampa")];
        let reply = format!("R: [{id}] Ticket chiuso: Stampa - da riaprire");
        assert_eq!(mail_command(&d, &reply, &closed), Some(MailCommand::Reopen));
        let bare = format!("R: [{id}] Ticket chiuso: Stampa");
        assert_eq!(mail_command(&d, &bare, &closed), None);
        // The ticket id itself holds no word.
        assert_eq!(mail_command(&d, &format!("({id})"), &[]), None);
    }

    /// A queue shared by three procedures, two of them with aliases, on a
    /// helpdesk with no rules, so only the procedure is found.
    fn patronato() -> (HelpdeskConfig, QueueConfig) {
        let mut d = pp();
        d.rules = RulesConfig::default();
        d.default_sector = None;
        let q = crate::config::patronato_queue(&[
            ("ANF-AUU", &["ANF", "AUU"]),
            ("Contabilità INAC", &["INAC"]),
        ]);
        (d, q)
    }

    #[test]
    fn procedures() {
        let (d, q) = patronato();
        let c = classify(&d, &q, &mail("Errore contabilita  inac", "x"));
        assert_eq!(c.procedure.as_deref(), Some("Contabilità INAC"));
        assert!(c.reasons.contains(&ReasonCode::ProcedureSubjectMatch));
        assert_eq!(c.sector, None);
        assert!(!c.vague);
        let c = classify(&d, &q, &mail("Errore", "domanda anf-auu respinta"));
        assert_eq!(c.procedure.as_deref(), Some("ANF-AUU"));
        assert!(c.reasons.contains(&ReasonCode::ProcedureBodyMatch));
        let c = classify(&d, &q, &mail("Patronato: ANF-AUU", "contabilità inac"));
        assert_eq!(c.procedure.as_deref(), Some("Patronato"));
        // Aliases as words: "ANF" alone, "AUU" in the body; not "ANFORA".
        let c = classify(
            &d,
            &q,
            &mail("Domanda ANF respinta per IBAN non valido", "x"),
        );
        assert_eq!(c.procedure.as_deref(), Some("ANF-AUU"));
        assert!(c.reasons.contains(&ReasonCode::ProcedureSubjectMatch));
        assert!(c.reasons.contains(&ReasonCode::ProcedureAlias));
        let c = classify(&d, &q, &mail("Domanda respinta", "la pratica AUU di marzo"));
        assert_eq!(c.procedure.as_deref(), Some("ANF-AUU"));
        assert!(c.reasons.contains(&ReasonCode::ProcedureBodyMatch));
        let c = classify(&d, &q, &mail("Quadratura INAC", "x"));
        assert_eq!(c.procedure.as_deref(), Some("Contabilità INAC"));
        let c = classify(&d, &q, &mail("ANFORA e INACCESSIBILE", "x"));
        assert_eq!(c.procedure, None);
        // The full name found where an alias starts wins (longer).
        let c = classify(&d, &q, &mail("anf-auu", "x"));
        assert!(!c.reasons.contains(&ReasonCode::ProcedureAlias));
        let c = classify(&d, &q, &mail("Errore", "niente"));
        assert_eq!(c.procedure, None);
        assert!(c.reasons.contains(&ReasonCode::ProcedureNone));
        let one = QueueConfig {
            procedures: vec!["F24".into()],
            ..q.clone()
        };
        let c = classify(&d, &one, &mail("Errore", "niente"));
        assert_eq!(c.procedure.as_deref(), Some("F24"));
        assert!(c.reasons.contains(&ReasonCode::ProcedureQueue));
    }
}
