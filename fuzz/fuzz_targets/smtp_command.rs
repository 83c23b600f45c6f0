//! SMTP command lines: whatever smtp-proto accepts as a MAIL or RCPT
//! address, the path we write back for the next hop is read back by the
//! same parser as the same address and nothing else (no smuggled
//! parameter), and canonicalising it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::Request;
use ticketgate::envelope::{canonical, smtp_path};

fn reparse(verb: &str, path: &str) -> Option<String> {
    let line = format!("{verb}:<{path}>\r\n");
    match Request::parse(&mut line.as_bytes().iter()).ok()? {
        Request::Mail { from } => Some(from.address.into_owned()),
        Request::Rcpt { to } => Some(to.address.into_owned()),
        _ => None,
    }
}

fuzz_target!(|line: &[u8]| {
    if line.len() > 512 {
        return;
    }
    let mut framed = line.to_vec();
    framed.extend_from_slice(b"\r\n");
    let (verb, address) = match Request::parse(&mut framed.iter()) {
        Ok(Request::Mail { from }) => ("MAIL FROM", from.address.into_owned()),
        Ok(Request::Rcpt { to }) => ("RCPT TO", to.address.into_owned()),
        _ => return,
    };
    let _ = canonical(&address, "+-");
    let Ok(path) = smtp_path(&address) else {
        return;
    };
    assert!(!path.contains(['\r', '\n']), "{path:?}");
    // Our path may be longer than smtp-proto's address limit once quoted.
    if path.len() > 250 {
        return;
    }
    assert_eq!(
        reparse(verb, &path).as_deref(),
        Some(address.as_str()),
        "{path:?}"
    );
});
