//! When not to answer automatically: RFC 3834 §2, machine-made mail that
//! says so only by its form (reports, robot senders), and senders whom
//! SPF and DMARC both disown (our reply would be backscatter).

use crate::envelope::canonical_address;
use crate::parse::ParsedMail;
use crate::reason::ReasonCode;

/// What the suppression rules know about the message's sender.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub envelope_from: &'a str,
    /// SPF failed for the envelope sender and the From did not pass DMARC:
    /// nobody vouches for either address.
    pub disowned: bool,
}

/// Why no automatic reply may go to this message's sender, if so.
/// `is_own` tells our own addresses (a reply to ourselves would loop).
pub fn suppression(
    mail: &ParsedMail,
    sender: Sender<'_>,
    is_own: impl Fn(&str) -> bool,
) -> Option<ReasonCode> {
    rfc3834(mail, sender.envelope_from)
        .or_else(|| machine_made(mail))
        .or_else(|| robot_sender(mail, sender.envelope_from))
        .or_else(|| {
            let from_is_own = mail.from.as_deref().is_some_and(&is_own);
            (is_own(sender.envelope_from) || from_is_own)
                .then_some(ReasonCode::ReplySuppressedOwnAddress)
        })
        .or(sender
            .disowned
            .then_some(ReasonCode::ReplySuppressedSpfFail))
}

/// The headers RFC 3834 names, and the null or MAILER-DAEMON sender.
fn rfc3834(mail: &ParsedMail, envelope_from: &str) -> Option<ReasonCode> {
    if let Some(v) = &mail.auto_submitted
        && !v.trim().eq_ignore_ascii_case("no")
    {
        return Some(ReasonCode::ReplySuppressedAutoSubmitted);
    }
    if let Some(p) = &mail.precedence
        && matches!(p.trim(), "bulk" | "junk" | "list")
    {
        return Some(ReasonCode::ReplySuppressedPrecedence);
    }
    if mail.has_list_headers {
        return Some(ReasonCode::ReplySuppressedList);
    }
    let local = local_part(envelope_from);
    if envelope_from.is_empty() || matches!(local.as_str(), "mailer-daemon" | "postmaster") {
        return Some(ReasonCode::ReplySuppressedNullSender);
    }
    None
}

/// Reports that robots send without `Auto-Submitted`: every
/// `multipart/report` (RFC 6522: delivery status, read receipts, ARF
/// feedback, TLS reports) and DMARC aggregate reports, which come as a
/// plain message with the report attached.
fn machine_made(mail: &ParsedMail) -> Option<ReasonCode> {
    if mail.shape.content_type == "multipart/report" {
        return Some(ReasonCode::ReplySuppressedReport);
    }
    let named_like_a_report = mail
        .shape
        .attachments
        .iter()
        .any(|(_, name)| name.as_deref().is_some_and(is_report_file_name));
    if named_like_a_report || is_dmarc_report_subject(&mail.subject) {
        return Some(ReasonCode::ReplySuppressedDmarcReport);
    }
    None
}

/// RFC 7489 §7.2.1.1: `receiver!policy-domain!begin!end[!id].xml[.gz]`
/// (or `.zip`); TLS reports (RFC 8460) name theirs the same way.
fn is_report_file_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('!').collect();
    if !(4..=5).contains(&parts.len()) || parts[0].is_empty() || !parts[1].contains('.') {
        return false;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (end, last) = if parts.len() == 4 {
        parts[3].split_once('.').unwrap_or((parts[3], ""))
    } else {
        (
            parts[3],
            parts[4].split_once('.').map_or("", |(_, ext)| ext),
        )
    };
    let last = last.to_ascii_lowercase();
    digits(parts[2])
        && digits(end)
        && ["xml", "xml.gz", "zip", "gz", "json", "json.gz"].contains(&last.as_str())
}

/// RFC 7489 §7.2.1.1 subject: `Report Domain: X Submitter: Y ...`; some
/// reporters put words before it ("Dmarc Aggregate Report Domain: ...").
fn is_dmarc_report_subject(subject: &str) -> bool {
    let s = subject.to_lowercase();
    s.find("report domain:")
        .is_some_and(|at| s[at..].contains("submitter:"))
}

/// Addresses that nobody reads: no-reply senders, MAILER-DAEMON and
/// postmaster in the From, and the DMARC / TLS report senders.
fn robot_sender(mail: &ParsedMail, envelope_from: &str) -> Option<ReasonCode> {
    let robot = |addr: &str| {
        let local = local_part(addr);
        let squashed: String = local.chars().filter(|c| c.is_alphanumeric()).collect();
        squashed.starts_with("noreply")
            || squashed.starts_with("donotreply")
            || matches!(squashed.as_str(), "mailerdaemon" | "postmaster")
            || squashed.contains("dmarc")
            || squashed.contains("tlsrpt")
    };
    let from_robot = mail.from.as_deref().is_some_and(robot);
    (robot(envelope_from) || from_robot).then_some(ReasonCode::ReplySuppressedRobotSender)
}

/// The local part, lowercased, without a BATV tag.
fn local_part(addr: &str) -> String {
    let addr = canonical_address(addr);
    match addr.rsplit_once('@') {
        Some((local, _)) => local.to_string(),
        None => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::MailShape;

    fn mail(from: &str, subject: &str) -> ParsedMail {
        ParsedMail {
            from: Some(from.into()),
            subject: subject.into(),
            ..ParsedMail::default()
        }
    }

    fn why(mail: &ParsedMail, envelope_from: &str) -> Option<ReasonCode> {
        let sender = Sender {
            envelope_from,
            disowned: false,
        };
        suppression(mail, sender, |a| a == "nuovocaso@projectpp.it")
    }

    #[test]
    fn people_get_answers() {
        let m = mail("mario@cliente.example", "Stampa fatture bloccata");
        assert_eq!(why(&m, "mario@cliente.example"), None);
        assert_eq!(why(&m, "prvs=1234abcdef=mario@cliente.example"), None);
        // Words that merely resemble a robot's.
        let m = mail("noemi.reply@cliente.example", "Report domain names");
        assert_eq!(why(&m, "noemi.reply@cliente.example"), None);
    }

    #[test]
    fn robot_senders_by_envelope_or_from() {
        for (from, envelope) in [
            ("noreply@bank.example", "bounce@bank.example"),
            ("No-Reply@bank.example", "bounce@bank.example"),
            ("do_not_reply@bank.example", "x@bank.example"),
            ("a@b.example", "prvs=1234abcdef=no-reply@b.example"),
            ("MAILER-DAEMON@mx.example", "x@mx.example"),
            ("postmaster@amazonses.com", "x@amazonses.com"),
            ("dmarc_support@corp.mail.ru", "x@corp.mail.ru"),
            ("dmarcreport@microsoft.com", "x@microsoft.com"),
            ("tlsrpt@mail.sender.example.com", "x@sender.example.com"),
        ] {
            assert_eq!(
                why(&mail(from, "Ciao"), envelope),
                Some(ReasonCode::ReplySuppressedRobotSender),
                "{from} / {envelope}"
            );
        }
        assert_eq!(
            why(&mail("a@b.example", "x"), "MAILER-DAEMON@mx.example"),
            Some(ReasonCode::ReplySuppressedNullSender)
        );
    }

    #[test]
    fn reports_by_form() {
        let mut m = mail("abuse@isp.example", "FW: Earn money");
        m.shape = MailShape {
            content_type: "multipart/report".into(),
            ..MailShape::default()
        };
        assert_eq!(
            why(&m, "abuse@isp.example"),
            Some(ReasonCode::ReplySuppressedReport)
        );
        let mut m = mail("reports@isp.example", "Rapporto");
        m.shape.attachments = vec![(
            "application/gzip".into(),
            Some("google.com!stalw.art!1669507200!1669593599.xml.gz".into()),
        )];
        assert_eq!(
            why(&m, "reports@isp.example"),
            Some(ReasonCode::ReplySuppressedDmarcReport)
        );
        let m = mail(
            "reports@isp.example",
            "Report Domain: stalw.art Submitter: google.com Report-ID: 1",
        );
        assert_eq!(
            why(&m, "reports@isp.example"),
            Some(ReasonCode::ReplySuppressedDmarcReport)
        );
        for name in [
            "a!b.example!1!2!xyz.xml",
            "receiver.example!b.example!1669507200!1669593599.zip",
        ] {
            assert!(is_report_file_name(name), "{name}");
        }
        for name in [
            "schermata.png",
            "fattura!2026.pdf",
            "a!b.example!x!2.xml",
            "a!b.example!1!2.pdf",
            "!b.example!1!2.xml",
        ] {
            assert!(!is_report_file_name(name), "{name}");
        }
    }

    #[test]
    fn disowned_senders_and_own_addresses() {
        let m = mail("mario@cliente.example", "Stampa");
        let disowned = Sender {
            envelope_from: "mario@cliente.example",
            disowned: true,
        };
        assert_eq!(
            suppression(&m, disowned, |_| false),
            Some(ReasonCode::ReplySuppressedSpfFail)
        );
        assert_eq!(
            why(&mail("nuovocaso@projectpp.it", "x"), "a@b.example"),
            Some(ReasonCode::ReplySuppressedOwnAddress)
        );
    }
}
