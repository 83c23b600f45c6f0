//! Blob retention: raw messages and attachments older than the retention
//! go, unless a ticket active within it refers to them. The sweep is run
//! with a clock 400 days ahead rather than waiting for one.

use std::fs::File;
use std::time::{Duration, SystemTime};

#[path = "support/tickets.rs"]
mod tickets;

use ticketgate::store::TicketStore;
use ticketgate::ticket::{AttachmentRecord, Ticket, Timestamp};
use tickets::*;

const DAY: Duration = Duration::from_secs(86_400);
const RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// A ticket created long ago whose message arrived at `active_at`,
/// with its raw message and one attachment in blobs.
fn ticket(active_at: &str, raw: &str, attachment: &str) -> Ticket {
    let mut t = sample_ticket("op@caf.example", "s", "2020-01-01T00:00:00Z");
    let m = &mut t.messages[0];
    m.received_at = at(active_at);
    m.raw_sha256 = Some(raw.into());
    m.attachments = vec![AttachmentRecord {
        name: None,
        content_type: "image/png".into(),
        size: 1,
        sha256: attachment.into(),
    }];
    t
}

fn age(store: &TicketStore, sha: &str, by: Duration) {
    let f = File::options()
        .write(true)
        .open(store.blob_path(sha))
        .unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[tokio::test]
async fn old_blobs_go_unless_a_recently_active_ticket_refers_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = TicketStore::open(dir.path()).unwrap();
    let put = |b: &[u8]| store.put_blob(b).unwrap();
    let (young_raw, young_att) = (put(b"young raw"), put(b"young attachment"));
    let (old_raw, old_att) = (put(b"old raw"), put(b"old attachment"));
    let orphan_old = put(b"orphan, old");
    let orphan_new = put(b"orphan, new");
    let reused = put(b"old, used again");
    for sha in [
        &young_raw,
        &young_att,
        &old_raw,
        &old_att,
        &orphan_old,
        &reused,
    ] {
        age(&store, sha, RETENTION + DAY);
    }
    // Created long ago, but a message came in yesterday: still active.
    let yesterday = Timestamp(time::OffsetDateTime::now_utc() - DAY).rfc3339();
    for t in [
        ticket(&yesterday, &young_raw, &young_att),
        ticket("2020-01-01T00:00:00Z", &old_raw, &old_att),
    ] {
        store.submit(create_change(t)).await.unwrap();
    }
    // The same attachment arrives again: its file is young again.
    assert_eq!(store.put_blob(b"old, used again").unwrap(), reused);

    let removed = store.sweep_blobs(SystemTime::now(), RETENTION).unwrap();
    assert_eq!(removed, 3);
    let exists = |sha: &str| store.blob_path(sha).exists();
    for kept in [&young_raw, &young_att, &orphan_new, &reused] {
        assert!(exists(kept), "{kept} kept");
    }
    for gone in [&old_raw, &old_att, &orphan_old] {
        assert!(!exists(gone), "{gone} removed");
    }
    // Nothing else is old enough now.
    assert_eq!(store.sweep_blobs(SystemTime::now(), RETENTION).unwrap(), 0);
}
