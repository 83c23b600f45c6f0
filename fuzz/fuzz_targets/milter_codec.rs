//! Milter packets from the MTA: any command byte and data decode to a
//! command or an error, never a panic; our responses encode to a frame
//! whose length says what follows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticketgate::wire::milter::{Command, Response};

fuzz_target!(|input: &[u8]| {
    let Some((&code, data)) = input.split_first() else {
        return;
    };
    let _ = Command::parse(code, data);
    let text = String::from_utf8_lossy(data).into_owned();
    for response in [
        Response::ReplyCode(text.clone()),
        Response::InsertHeader {
            index: code as u32,
            name: text.clone(),
            value: text.clone(),
        },
        Response::ChangeHeader {
            index: code as u32,
            name: text.clone(),
            value: text,
        },
    ] {
        let mut out = Vec::new();
        response.encode(&mut out);
        assert!(out.len() >= 5);
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
    }
});
