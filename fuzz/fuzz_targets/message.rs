//! Whole messages: parse within the shipped limits, classify for every
//! helpdesk queue of the shipped config, and find the header fields to cut.
//! Scanning in pieces equals scanning whole, and after the cuts no forged
//! `X-Ticketgate-*` field is left in the header section.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ticketgate::config::Config;
use ticketgate::parse::{ParseLimits, parse_with, sha256_hex};
use ticketgate::tag::{HeaderScanner, apply_cuts, scan};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/ticketgate.toml");
        Config::load(std::path::Path::new(path)).expect("shipped config")
    })
}

fuzz_target!(|raw: &[u8]| {
    let config = config();
    let limits = ParseLimits::from(&config.limits);
    let mut keep = |b: &[u8]| Ok::<_, ()>(sha256_hex(b));
    let mail = parse_with(raw, &limits, &mut keep).expect("hashing cannot fail");
    assert!(mail.attachments.len() <= limits.attachments);
    assert!(mail.new_text.len() <= limits.text_bytes);
    for desk in &config.helpdesks {
        for queue in &desk.queues {
            let _ = ticketgate::classify::classify(desk, queue, &mail);
        }
    }
    let whole = scan(raw, "gate.test");
    let mut pieces = HeaderScanner::new("gate.test");
    for chunk in raw.chunks(1 + raw.len() % 97) {
        pieces.feed(chunk);
    }
    assert_eq!(pieces.finish(), whole);
    if !whole.too_many {
        let out = apply_cuts(raw, &whole.cuts);
        assert!(out.len() <= raw.len());
        assert_eq!(scan(&out, "gate.test").forged_tags, 0);
    }
});
