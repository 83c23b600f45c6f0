//! The ticket store's conformance suite: what every backend of
//! `ticketgate::store` must do (ids gapless per prefix and year, dedupe,
//! atomic create with its draft, updates at a version, no lost change
//! under concurrency, durability across restarts and kill -9, refusal when
//! the disk refuses). `open_store` is the backend under test.
//!
//! Two tests re-execute this test binary as a child process (the test
//! `child_process_entry`, which does nothing unless `CHILD_ENV` is set):
//! one is killed with SIGKILL in the middle of a stream of creates, the
//! other runs with a tiny RLIMIT_FSIZE so that the disk refuses writes.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ticketgate::store::{Change, Outcome, StoreError, TicketStore};
use ticketgate::ticket::{AttachmentRecord, ReplyState, Status, Ticket};

#[path = "support/tickets.rs"]
mod tickets;
use tickets::*;

/// The backend under test.
fn open_store(dir: &Path) -> Result<TicketStore, StoreError> {
    TicketStore::open(dir)
}

const CHILD_ENV: &str = "TICKETGATE_STORE_TEST_CHILD";
const DIR_ENV: &str = "TICKETGATE_STORE_TEST_DIR";

/// A ticket of one undelivered message with an attachment and its held
/// confirmation; the store must ignore the id it comes with.
fn ticket(subject: &str) -> Ticket {
    let requester = "mario@example.com";
    let mut t = sample_ticket(requester, subject, "2026-03-02T10:00:00Z");
    t.id = "ignored".into();
    t.helpdesk = "projectpp".into();
    t.sector = Some("tecnico".into());
    t.recipients = vec!["nuovocaso@projectpp.it".into()];
    let m = &mut t.messages[0];
    m.message_id = Some("<m1@example.com>".into());
    m.recipients = t.recipients.clone();
    m.delivered = false;
    m.attachments = vec![AttachmentRecord {
        name: Some("a.pdf".into()),
        content_type: "application/pdf".into(),
        size: 3,
        sha256: "ab".repeat(32),
    }];
    let raw = "Subject: ok\r\n\r\nbody\r\n".to_string();
    t.replies = vec![sample_reply(
        requester,
        "<r1@ticketgate>",
        ReplyState::Held,
        raw,
    )];
    t
}

fn create(prefix: &str, year: i32, subject: &str, key: Option<&str>) -> Change {
    Change::Create {
        prefix: prefix.into(),
        year,
        ticket: ticket(subject),
        dedupe_key: key.map(str::to_string),
        draft: None,
    }
}

async fn created_id(store: &TicketStore, change: Change) -> String {
    match store.submit(change).await {
        Ok(Outcome::Created(t)) => t.id,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn set_subject(s: &'static str) -> impl FnMut(&mut Ticket) -> Result<(), String> {
    move |t: &mut Ticket| {
        t.subject = s.into();
        Ok(())
    }
}

#[tokio::test]
async fn create_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let out = store
        .submit(create(
            "PP",
            2026,
            "Mago non parte",
            Some("<m1@example.com>|projectpp"),
        ))
        .await;
    let Ok(Outcome::Created(t)) = out else {
        panic!("{out:?}")
    };
    assert_eq!(t.id, "PP-2026-000001");

    let back = store
        .get("PP-2026-000001")
        .await
        .unwrap()
        .expect("ticket stored");
    assert_eq!(back, t);
    // The pending reply's raw text is not in the JSON contract but must be stored.
    assert_eq!(back.replies[0].raw, "Subject: ok\r\n\r\nbody\r\n");
    assert_eq!(store.list().await.unwrap(), vec![t.clone()]);
    assert_eq!(
        store
            .find_by_dedupe_key("<m1@example.com>|projectpp")
            .await
            .unwrap()
            .as_deref(),
        Some("PP-2026-000001")
    );
    assert_eq!(
        store
            .find_by_dedupe_key("<other@example.com>")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get("PP-2026-000002").await.unwrap(), None);

    let json = serde_json::to_value(&back).unwrap();
    for key in [
        "id",
        "helpdesk",
        "queue",
        "procedure",
        "sector",
        "urgency",
        "status",
        "messages",
        "replies",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    store.close().await;
}

#[tokio::test]
async fn ids_increment_per_prefix_and_year() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    assert_eq!(
        created_id(&store, create("PP", 2026, "a", None)).await,
        "PP-2026-000001"
    );
    assert_eq!(
        created_id(&store, create("PP", 2026, "b", None)).await,
        "PP-2026-000002"
    );
    assert_eq!(
        created_id(&store, create("SIS", 2026, "c", None)).await,
        "SIS-2026-000001"
    );
    assert_eq!(
        created_id(&store, create("PP", 2027, "d", None)).await,
        "PP-2027-000001"
    );
    assert_eq!(
        created_id(&store, create("PP", 2026, "e", None)).await,
        "PP-2026-000003"
    );
    let ids: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        ids,
        [
            "PP-2026-000001",
            "PP-2026-000002",
            "PP-2026-000003",
            "PP-2027-000001",
            "SIS-2026-000001"
        ]
    );
    store.close().await;
}

#[tokio::test]
async fn finish_sees_the_id_and_can_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let refused = store
        .submit(Change::Create {
            prefix: "PP".into(),
            year: 2026,
            ticket: ticket("a"),
            dedupe_key: Some("k".into()),
            draft: Some(Box::new(|_| Err("cannot render".into()))),
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Rejected(ref m)) if m == "cannot render"),
        "{refused:?}"
    );
    assert_eq!(store.find_by_dedupe_key("k").await.unwrap(), None);
    let r = store
        .submit(Change::Create {
            prefix: "PP".into(),
            year: 2026,
            ticket: ticket("a"),
            dedupe_key: Some("k".into()),
            draft: Some(Box::new(|t: &mut Ticket| {
                t.replies[0].raw = format!("Subject: [{}] ok\r\n", t.id);
                Ok(())
            })),
        })
        .await;
    // The refused create used no sequence number.
    let Ok(Outcome::Created(t)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(t.id, "PP-2026-000001");
    assert_eq!(
        store.get(&t.id).await.unwrap().unwrap().replies[0].raw,
        "Subject: [PP-2026-000001] ok\r\n"
    );
    store.close().await;
}

#[tokio::test]
async fn invalid_prefix_or_year_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    for (prefix, year) in [
        ("", 2026),
        ("P-P", 2026),
        ("../x", 2026),
        ("PP", -1),
        ("PP", 10000),
    ] {
        let r = store.submit(create(prefix, year, "x", None)).await;
        assert!(
            matches!(r, Err(StoreError::Invalid(_))),
            "{prefix} {year}: {r:?}"
        );
    }
    assert!(store.list().await.unwrap().is_empty());
    store.close().await;
}

/// Readiness asks the store for a durable write; a closed store says no.
#[tokio::test]
async fn probe_is_a_durable_write_and_a_closed_store_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    store.probe().await.expect("an open store takes the probe");
    store.probe().await.expect("and takes it again");
    let t = store
        .submit(create("PP", 2026, "after probes", None))
        .await
        .unwrap();
    // The probe is no ticket and uses no ticket number.
    assert_eq!(t.ticket().id, "PP-2026-000001");
    assert_eq!(store.list().await.unwrap().len(), 1);
    let other = store.clone();
    store.close().await;
    assert!(matches!(
        other.probe().await,
        Err(StoreError::Unavailable(_))
    ));
    drop(other);
    // Reopened, the probe record is no ticket either.
    let store = open_store(dir.path()).unwrap();
    assert_eq!(store.list().await.unwrap().len(), 1);
    store.probe().await.unwrap();
}

#[tokio::test]
async fn same_dedupe_key_twice_is_one_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let first = created_id(&store, create("PP", 2026, "a", Some("k1"))).await;
    match store
        .submit(create("PP", 2026, "a again", Some("k1")))
        .await
    {
        Ok(Outcome::Duplicate(t)) => {
            assert_eq!(t.id, first);
            assert_eq!(t.subject, "a");
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    // An update carrying a known key is a duplicate too, and apply does not run.
    let r = store
        .modify(&first, Some("k1"), |_| {
            panic!("apply must not run for a duplicate")
        })
        .await;
    assert!(
        matches!(r, Ok(Outcome::Duplicate(ref t)) if t.id == first),
        "{r:?}"
    );
    assert_eq!(store.list().await.unwrap().len(), 1);
    // A duplicate consumes no sequence number.
    assert_eq!(
        created_id(&store, create("PP", 2026, "b", Some("k2"))).await,
        "PP-2026-000002"
    );
    store.close().await;
}

#[tokio::test]
async fn update_applies_and_records_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let id = created_id(&store, create("PP", 2026, "a", Some("m1"))).await;
    let r = store
        .modify(&id, Some("m2"), |t: &mut Ticket| {
            t.status = Status::Closed;
            t.id = "PP-2026-999999".into(); // the id is not the closure's to change
            t.replies[0].raw = "changed raw".into();
            Ok(())
        })
        .await;
    let Ok(Outcome::Updated(t)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(t.id, id);
    assert_eq!(t.status, Status::Closed);
    let back = store.get(&id).await.unwrap().unwrap();
    assert_eq!(back, t);
    assert_eq!(back.replies[0].raw, "changed raw");
    assert_eq!(store.get("PP-2026-999999").await.unwrap(), None);
    assert_eq!(
        store.find_by_dedupe_key("m2").await.unwrap().as_deref(),
        Some(id.as_str())
    );
    let again = store.modify(&id, Some("m2"), set_subject("x")).await;
    assert!(
        matches!(again, Ok(Outcome::Duplicate(ref t)) if t.subject == "a"),
        "{again:?}"
    );

    let missing = store.modify("PP-2026-000042", None, set_subject("x")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(ref m)) if m == "PP-2026-000042"),
        "{missing:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn an_update_of_a_stale_version_is_a_conflict_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let id = created_id(&store, create("PP", 2026, "a", None)).await;
    let read = store.get_versioned(&id).await.unwrap().unwrap();
    let mut first = read.ticket.clone();
    first.subject = "first".into();
    let r = store
        .submit(Change::Update {
            ticket: first,
            version: read.version,
            dedupe_key: None,
        })
        .await;
    assert!(matches!(r, Ok(Outcome::Updated(_))), "{r:?}");
    let mut late = read.ticket.clone();
    late.subject = "late".into();
    let r = store
        .submit(Change::Update {
            ticket: late,
            version: read.version,
            dedupe_key: Some("late-key".into()),
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict(ref t)) if *t == id),
        "{r:?}"
    );
    assert_eq!(store.get(&id).await.unwrap().unwrap().subject, "first");
    assert_eq!(store.find_by_dedupe_key("late-key").await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn concurrent_modifies_of_one_ticket_lose_no_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let id = created_id(&store, create("PP", 2026, "a", None)).await;
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .modify(&id, Some(&format!("m{i}")), |t| {
                        t.reasons
                            .push(ticketgate::reason::ReasonCode::FollowupInReplyTo);
                        t.recipients.push(format!("r{i}@example.org"));
                        Ok(())
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let r = task.await.unwrap();
        assert!(matches!(r, Ok(Outcome::Updated(_))), "{r:?}");
    }
    let t = store.get(&id).await.unwrap().unwrap();
    for i in 0..12 {
        assert!(
            t.recipients.contains(&format!("r{i}@example.org")),
            "{:?}",
            t.recipients
        );
    }
    assert_eq!(t.recipients.len(), 1 + 12, "each change once");
    store.close().await;
}

#[tokio::test]
async fn rejected_apply_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let id = created_id(&store, create("PP", 2026, "a", None)).await;
    let before = store.get(&id).await.unwrap().unwrap();
    let r = store
        .modify(&id, Some("refused-msg"), |t: &mut Ticket| {
            t.subject = "half-applied".into();
            Err("not the requester".into())
        })
        .await;
    assert!(
        matches!(r, Err(StoreError::Rejected(ref m)) if m == "not the requester"),
        "{r:?}"
    );
    assert_eq!(store.get(&id).await.unwrap().unwrap(), before);
    assert_eq!(store.find_by_dedupe_key("refused-msg").await.unwrap(), None);
    store.close().await;
}

#[tokio::test]
async fn restart_keeps_tickets_counters_and_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(dir.path()).unwrap();
        created_id(&store, create("PP", 2026, "a", Some("k1"))).await;
        created_id(&store, create("PP", 2026, "b", Some("k2"))).await;
        created_id(&store, create("SIS", 2026, "c", Some("k3"))).await;
        store.close().await;
    }
    {
        let store = open_store(dir.path()).unwrap();
        assert_eq!(store.list().await.unwrap().len(), 3);
        assert_eq!(
            store.get("PP-2026-000002").await.unwrap().unwrap().subject,
            "b"
        );
        let r = store
            .submit(create("PP", 2026, "a retried", Some("k1")))
            .await;
        assert!(
            matches!(r, Ok(Outcome::Duplicate(ref t)) if t.id == "PP-2026-000001"),
            "{r:?}"
        );
        assert_eq!(
            created_id(&store, create("PP", 2026, "d", None)).await,
            "PP-2026-000003"
        );
        assert_eq!(
            created_id(&store, create("SIS", 2026, "e", None)).await,
            "SIS-2026-000002"
        );
        // Dropping the last handle without close also stops the writer and
        // releases the database.
        drop(store);
    }
    let store = open_store(dir.path()).unwrap();
    assert_eq!(store.list().await.unwrap().len(), 5);
    assert_eq!(
        created_id(&store, create("PP", 2026, "f", None)).await,
        "PP-2026-000004"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submits_get_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let prefix = if i % 5 == 0 { "SIS" } else { "PP" };
            created_id(
                &store,
                create(prefix, 2026, &format!("t{i}"), Some(&format!("key{i}"))),
            )
            .await
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        assert!(ids.insert(t.await.unwrap()));
    }
    let mut expected: HashSet<String> = (1..=40).map(|n| format!("PP-2026-{n:06}")).collect();
    expected.extend((1..=10).map(|n| format!("SIS-2026-{n:06}")));
    assert_eq!(ids, expected);
    assert_eq!(store.list().await.unwrap().len(), 50);
    store.close().await;
}

#[tokio::test]
async fn closed_store_refuses_submits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let other = store.clone();
    store.close().await;
    let r = other.submit(create("PP", 2026, "late", None)).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // Reads through a remaining clone still work.
    assert!(other.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn blobs_are_content_addressed_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).unwrap();
    let sha = store.put_blob(b"hello").unwrap();
    assert_eq!(
        sha,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let path = store.blob_path(&sha);
    assert_eq!(path, dir.path().join("blobs").join(&sha));
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    assert_eq!(store.put_blob(b"hello").unwrap(), sha);
    assert_eq!(store.put_blob(b"").unwrap().len(), 64);
    let names: Vec<String> = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temp files left: {names:?}");
    assert!(!store.blob_path("../db").starts_with(dir.path().join("db")));
    store.close().await;
}

#[tokio::test]
async fn open_on_unwritable_path_is_unavailable() {
    // Running as root, chmod 0555 does not stop writes; a path whose parent
    // is a regular file cannot be created by anyone.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    for path in [file.clone(), file.join("data")] {
        let r = open_store(&path);
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "{}: {:?}",
            path.display(),
            r.err()
        );
    }
}

// ---------------------------------------------------------------------------
// Child processes

fn child_command(role: &str, dir: &Path) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, role)
    .env(DIR_ENV, dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// The `ACK <key> <id>` a crash child printed on this line (libtest may put
/// its own "test child_process_entry ... " in front of the first one).
fn ack_of(line: &str) -> Option<&str> {
    line.find("ACK ").map(|at| &line[at + 4..])
}

/// Does nothing in a normal test run; runs a child role when `CHILD_ENV` is set.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match role.as_str() {
            "crash" => crash_child(&dir).await,
            "diskfull" => diskfull_child(&dir).await,
            other => panic!("unknown child role {other}"),
        }
    });
}

/// Submits creates from 8 tasks forever, printing `ACK <key> <id>` after each
/// acknowledged one, until the parent kills it.
async fn crash_child(dir: &Path) {
    let store = open_store(dir).unwrap();
    let run = std::env::var("TICKETGATE_STORE_TEST_RUN").unwrap_or_default();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let key = format!("crash-{run}-{task}-{n}");
                match store.submit(create("PP", 2026, &key, Some(&key))).await {
                    Ok(Outcome::Created(t)) => println!("ACK {key} {}", t.id),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn acknowledged_creates_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(String, String)> = Vec::new();
    for run in 0..2 {
        let mut child = child_command("crash", dir.path())
            .env("TICKETGATE_STORE_TEST_RUN", run.to_string())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut this_run = 0;
        while this_run < 300 {
            let line = lines.next().expect("child ended early").unwrap();
            if let Some(rest) = ack_of(&line) {
                let (key, id) = rest.split_once(' ').unwrap();
                acked.push((key.to_string(), id.to_string()));
                this_run += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Lines the child printed before it died are acknowledged too.
        for line in lines {
            let line = line.unwrap();
            if let Some(rest) = ack_of(&line) {
                let (key, id) = rest.split_once(' ').unwrap();
                acked.push((key.to_string(), id.to_string()));
            }
        }
        child.wait().unwrap();

        let store = open_store(dir.path()).unwrap();
        let tickets = store.list().await.unwrap();
        let ids: HashSet<&str> = tickets.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids.len(), tickets.len(), "duplicate ticket ids");
        // The counter is written with the ticket: ids have no gaps.
        let expected: HashSet<String> = (1..=tickets.len())
            .map(|n| format!("PP-2026-{n:06}"))
            .collect();
        assert_eq!(ids, expected.iter().map(String::as_str).collect());
        let subjects: HashSet<&str> = tickets.iter().map(|t| t.subject.as_str()).collect();
        assert_eq!(subjects.len(), tickets.len(), "one ticket per dedupe key");
        for (key, id) in &acked {
            let t = store
                .get(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {id} lost"));
            assert_eq!(&t.subject, key);
            assert_eq!(
                store.find_by_dedupe_key(key).await.unwrap().as_deref(),
                Some(id.as_str())
            );
        }
        // A retried delivery after the crash makes no duplicate.
        let (key, id) = &acked[acked.len() / 2];
        let r = store.submit(create("PP", 2026, key, Some(key))).await;
        assert!(
            matches!(r, Ok(Outcome::Duplicate(ref t)) if &t.id == id),
            "{r:?}"
        );
        store.close().await;
        eprintln!(
            "run {run}: {} acknowledged so far, {} tickets on disk",
            acked.len(),
            tickets.len()
        );
    }
}

/// Under a small RLIMIT_FSIZE (SIGXFSZ ignored, so writes fail with EFBIG):
/// prints one line per step with the outcome kind.
async fn diskfull_child(dir: &Path) {
    let kind = |r: &Result<Outcome, StoreError>| match r {
        Ok(Outcome::Created(_)) => "created".to_string(),
        Ok(o) => format!("ok-other {o:?}"),
        Err(StoreError::Unavailable(m)) => format!("unavailable {m}"),
        Err(e) => format!("error {e}"),
    };
    let store = match open_store(dir) {
        Ok(s) => s,
        Err(e) => {
            println!("STEP OPEN {e}");
            return;
        }
    };
    println!("STEP OPEN ok");
    let r = store
        .submit(create("PP", 2026, "small", Some("small")))
        .await;
    println!("STEP SMALL {}", kind(&r));
    let big = "x".repeat(4 << 20);
    let r = store.submit(create("PP", 2026, &big, Some("big"))).await;
    println!("STEP BIG {}", kind(&r));
    let r = store
        .submit(create("PP", 2026, "after", Some("after")))
        .await;
    println!("STEP AFTER {}", kind(&r));
    match store.put_blob(big.as_bytes()) {
        Ok(sha) => println!("STEP BLOB ok {sha}"),
        Err(e) => println!("STEP BLOB {e}"),
    }
    store.close().await;
}

#[tokio::test]
async fn full_disk_gives_unavailable_never_ok() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // `ulimit -f 2048`: at most 1-2 MiB per file (512- or 1024-byte blocks
    // depending on the shell); SIGXFSZ ignored so write(2) returns EFBIG.
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 2048 && exec "$0" "$@""#)
        .arg(exe)
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "diskfull")
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    eprintln!("child said:\n{out}");
    let step = |name: &str| {
        out.lines()
            .find_map(|l| l.split_once(&format!("STEP {name} ")).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {name} line in {out}"))
            .to_string()
    };
    assert_eq!(step("OPEN"), "ok");
    assert_eq!(step("SMALL"), "created");
    assert!(
        step("BIG").starts_with("unavailable"),
        "BIG: {}",
        step("BIG")
    );
    assert!(
        !step("AFTER").starts_with("created") && !step("AFTER").starts_with("ok"),
        "AFTER: {}",
        step("AFTER")
    );
    assert!(!step("BLOB").starts_with("ok"), "BLOB: {}", step("BLOB"));

    // The acknowledged ticket is there after a normal reopen; the refused one is not.
    let store = open_store(dir.path()).unwrap();
    let ids: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["PP-2026-000001"]);
    assert_eq!(store.find_by_dedupe_key("big").await.unwrap(), None);
    store.close().await;
}
