//! What coverage-guided fuzzing (fuzz/run.sh) found: one test per finding,
//! named after the bug, feeding the minimised input to the public function
//! the target calls.

use smtp_proto::Request;
use ticketgate::envelope::smtp_path;

/// A command line as smtp-proto reads it, the parser of our SMTP front end
/// (and a stand-in for the next hop's).
fn read(line: &str) -> Option<Request<String>> {
    Request::parse(&mut line.as_bytes().iter())
        .ok()
        .map(Request::into_owned)
}

/// The address smtp-proto reads from a MAIL or RCPT line, and the ORCPT.
fn address(request: Option<Request<String>>) -> Option<(String, Option<String>)> {
    match request? {
        Request::Mail { from } => Some((from.address, None)),
        Request::Rcpt { to } => Some((to.address, to.orcpt)),
        _ => None,
    }
}

/// Fuzz target `smtp_command`. smtp-proto takes quotes off anywhere in a
/// path, the domain included, so `"x"@">"` reaches us as `x@>`.
/// `smtp_path` quoted only the local part (what precedes the last `@`) and
/// copied the domain as it was, so the `RCPT TO:<path>` (or `MAIL FROM:`)
/// we write to the next hop ended at the domain's `>` and the rest was read
/// as parameters: a client could smuggle any ESMTP parameter past the
/// filter (third case: an `ORCPT` of its choosing). The session takes
/// `smtp_path(..).is_ok()` as the syntax check of MAIL and RCPT, so such an
/// address must be refused there, or written so that it reads back as
/// itself and nothing more.
#[test]
fn smtp_command_quoted_domain_closes_the_path_and_smuggles_parameters() {
    for (verb, line, expected) in [
        // The minimised input (17 bytes).
        ("RCPT TO", "RCPT TO:<\"x\"@\">\">\r\n", "x@>"),
        // The real run's finding, reduced to ASCII: the quotes span the
        // `@` smtp-proto counted, so the last `@` is inside them.
        (
            "RCPT TO",
            "RCPT TO:<l\"M>R\"@e\"@le.> NOTIFY=NEVER\"org>\r\n",
            "lM>R@e@le.> NOTIFY=NEVERorg",
        ),
        (
            "RCPT TO",
            "RCPT TO:<x@\"example.org> ORCPT=rfc822;evil\">\r\n",
            "x@example.org> ORCPT=rfc822;evil",
        ),
        (
            "MAIL FROM",
            "MAIL FROM:<x@\"example.org> SIZE=1\">\r\n",
            "x@example.org> SIZE=1",
        ),
    ] {
        let (got, _) = address(read(line)).expect("smtp-proto reads the line");
        assert_eq!(got, expected, "what the front end gets from {line:?}");
        let Ok(path) = smtp_path(&got) else {
            // Refused at MAIL or RCPT: nothing reaches the next hop.
            continue;
        };
        // As forward::smtp writes it, before any parameter of ours.
        let hop_line = format!("{verb}:<{path}>\r\n");
        assert_eq!(
            address(read(&hop_line)),
            Some((got.clone(), None)),
            "{hop_line:?} reads back as another address or with a smuggled ORCPT"
        );
    }
}

/// Fuzz target `smtp_command`, second finding (after the first was
/// fixed): `RCPT TO:<z@"[0]">` reaches us as `z@[0]`, which the first fix
/// let through as an address literal; written back as it came, no next hop
/// reads it. An address literal is an IPv4 or an IPv6 address, or refused.
#[test]
fn smtp_command_address_literal_that_is_no_address_is_refused() {
    let (got, _) = address(read("RCPT TO:<z@\"[0]\">\r\n")).expect("smtp-proto reads it");
    assert_eq!(got, "z@[0]");
    assert!(smtp_path(&got).is_err(), "refused at RCPT, not passed on");
    // The literals that route: what smtp-proto reads of them is written so
    // that it reads back the same.
    for line in [
        "RCPT TO:<z@\"[tag:x]\">\r\n",
        "RCPT TO:<z@[192.0.2.1]>\r\n",
        "RCPT TO:<z@[IPv6:2001:db8::1]>\r\n",
    ] {
        let Some((got, _)) = address(read(line)) else {
            continue;
        };
        let Ok(path) = smtp_path(&got) else {
            continue;
        };
        let hop_line = format!("RCPT TO:<{path}>\r\n");
        assert_eq!(
            address(read(&hop_line)),
            Some((got.clone(), None)),
            "{hop_line:?} does not read back as {got:?}"
        );
    }
}
