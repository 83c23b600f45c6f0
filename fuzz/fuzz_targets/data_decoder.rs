//! DATA framing: decoding in pieces equals decoding whole, the output
//! never passes the limit, and clean content survives stuffing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ticketgate::wire::data::{DataDecoder, DotStuffer};

fuzz_target!(|input: &[u8]| {
    let Some((&seed, input)) = input.split_first() else {
        return;
    };
    let limit = 1 + seed as u64 * 4;
    let mut whole = DataDecoder::new(limit);
    let mut out_whole = Vec::new();
    let used_whole = whole.feed(input, &mut out_whole);
    let step = 1 + (seed as usize % 13);
    let mut pieces = DataDecoder::new(limit);
    let mut out_pieces = Vec::new();
    let mut used = 0;
    while used < input.len() && !pieces.is_done() {
        let end = (used + step).min(input.len());
        used += pieces.feed(&input[used..end], &mut out_pieces);
    }
    assert_eq!(out_whole, out_pieces);
    assert_eq!(whole.flags(), pieces.flags());
    assert_eq!(whole.is_done(), pieces.is_done());
    if whole.is_done() {
        assert_eq!(used_whole, used);
    }
    assert!(out_whole.len() as u64 <= limit);
    let flags = whole.flags();
    if whole.is_done() && !flags.bare_cr && !flags.bare_lf && !flags.too_large {
        // What the decoder let through goes out and comes back the same.
        let mut stuffer = DotStuffer::default();
        let mut wire = Vec::new();
        stuffer.stuff(&out_whole, &mut wire);
        wire.extend_from_slice(stuffer.finish());
        let mut again = DataDecoder::new(u64::MAX);
        let mut out = Vec::new();
        assert_eq!(again.feed(&wire, &mut out), wire.len());
        assert!(again.is_done());
        assert_eq!(out, out_whole);
    }
});
