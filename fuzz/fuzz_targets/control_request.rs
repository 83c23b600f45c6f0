//! Control-socket requests: one JSON line; whatever parses re-encodes to a
//! line that parses to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticketgate::control::Request;

fuzz_target!(|line: &[u8]| {
    let Ok(text) = std::str::from_utf8(line) else {
        return;
    };
    let Ok(request) = serde_json::from_str::<Request>(text) else {
        return;
    };
    let again = serde_json::to_string(&request).expect("a request encodes");
    assert!(!again.contains('\n'));
    let back: Request = serde_json::from_str(&again).expect("what we encode parses");
    assert_eq!(
        serde_json::to_string(&back).unwrap(),
        again,
        "round trip changed the request"
    );
});
