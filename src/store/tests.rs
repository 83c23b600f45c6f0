//! Unit tests that need the store's internals (group commit accounting).

use super::*;

fn ticket() -> Ticket {
    Ticket {
        id: String::new(),
        helpdesk: "projectpp".into(),
        created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        ..Ticket::sample("a@example.com")
    }
}

/// The embedded store, and its backend for the writer's counters.
fn open(dir: &Path) -> (TicketStore, Arc<embedded::Embedded>) {
    let backend = Arc::new(embedded::Embedded::open(dir).unwrap());
    (TicketStore::with_backend(backend.clone()), backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_group_commit_uses_fewer_syncs_than_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path());
    let before = backend.syncs();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.submit(Change::Create {
                prefix: "PP".into(),
                year: 2026,
                ticket: ticket(),
                dedupe_key: Some(format!("m{i}")),
                draft: None,
            })
            .await
        }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(Outcome::Created(_))));
    }
    let syncs = backend.syncs() - before;
    assert!((1..200).contains(&syncs), "syncs = {syncs}");
    assert_eq!(store.list().await.unwrap().len(), 200);
    store.close().await;
}

#[tokio::test]
async fn store_duplicates_and_rejections_need_no_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, backend) = open(dir.path());
    let create = || Change::Create {
        prefix: "PP".into(),
        year: 2026,
        ticket: ticket(),
        dedupe_key: Some("k".into()),
        draft: None,
    };
    store.submit(create()).await.unwrap();
    let syncs = backend.syncs();
    assert!(matches!(
        store.submit(create()).await,
        Ok(Outcome::Duplicate(_))
    ));
    let rejected = store
        .modify("PP-2026-000001", None, |_| Err("no".into()))
        .await;
    assert!(matches!(rejected, Err(StoreError::Rejected(m)) if m == "no"));
    assert_eq!(backend.syncs(), syncs);
    store.close().await;
}

#[tokio::test]
async fn store_panicking_apply_is_rejected_and_writer_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let created = store
        .submit(Change::Create {
            prefix: "PP".into(),
            year: 2026,
            ticket: ticket(),
            dedupe_key: None,
            draft: None,
        })
        .await
        .unwrap();
    let id = created.ticket().id.clone();
    let r = store.modify(&id, None, |_| panic!("boom")).await;
    assert!(matches!(r, Err(StoreError::Rejected(_))));
    let r = store
        .modify(&id, None, |t| {
            t.subject = "after".into();
            Ok(())
        })
        .await;
    assert!(matches!(r, Ok(Outcome::Updated(t)) if t.subject == "after"));
    store.close().await;
}

#[test]
fn store_blob_names_cannot_escape() {
    let p = blobs::blob_path(Path::new("/data/blobs"), "../../etc/passwd");
    assert!(p.starts_with("/data/blobs"));
    assert!(!p.to_string_lossy().contains(".."));
    let sha = "a".repeat(64);
    assert_eq!(
        blobs::blob_path(Path::new("/data/blobs"), &sha),
        Path::new("/data/blobs").join(&sha)
    );
}
