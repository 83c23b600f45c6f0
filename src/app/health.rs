//! What ops watch besides the counters: the readiness check behind
//! `GET /readyz` (and the gauges it sets, checked every half minute so an
//! alert does not wait for a scrape of `/readyz`), and the samplers of the
//! outbox backlog and of the tickets by status.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Config, NextHop};
use crate::desk::Service;
use crate::metrics::{Check, METRICS, Readiness};
use crate::store::TicketStore;
use crate::ticket::{Status, Timestamp};

/// The next hop counts as reachable this long after it last took a
/// connection; after that the check connects to it.
const RECENT_HOP: u64 = 60;

/// Bound on each part of one check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Health {
    config: Arc<Config>,
    store: TicketStore,
    /// The last check and when it ran: a check writes to the store, so a
    /// client asking `/readyz` in a loop gets this answer again rather
    /// than an fsync each time. The lock also makes concurrent asks wait
    /// for one check.
    last: tokio::sync::Mutex<Option<(Instant, Vec<Check>)>>,
}

/// How long a readiness answer is reused.
const REUSE: Duration = Duration::from_secs(2);

impl Health {
    pub fn new(config: Arc<Config>, store: TicketStore) -> Health {
        Health {
            config,
            store,
            last: tokio::sync::Mutex::new(None),
        }
    }
}

impl Readiness for Health {
    fn check(&self) -> std::pin::Pin<Box<dyn Future<Output = Vec<Check>> + Send + '_>> {
        Box::pin(async move {
            let mut last = self.last.lock().await;
            if let Some((at, checks)) = last.as_ref()
                && at.elapsed() < REUSE
            {
                return checks.clone();
            }
            let checks = self.check_now().await;
            *last = Some((Instant::now(), checks.clone()));
            checks
        })
    }
}

impl Health {
    /// Asks every part now and sets the gauges.
    async fn check_now(&self) -> Vec<Check> {
        let checks = vec![
            self.store_check().await,
            self.hop_check().await,
            self.spool_check().await,
        ];
        let gauge = |ok: bool| u64::from(ok);
        METRICS.store_writable.store(gauge(checks[0].ok), Relaxed);
        METRICS
            .next_hop_reachable
            .store(gauge(checks[1].ok), Relaxed);
        METRICS.spool_writable.store(gauge(checks[2].ok), Relaxed);
        METRICS
            .ready
            .store(gauge(checks.iter().all(|c| c.ok)), Relaxed);
        checks
    }
}

fn check(name: &'static str, result: Result<String, String>) -> Check {
    let ok = result.is_ok();
    Check {
        name,
        ok,
        detail: result.unwrap_or_else(|e| e),
    }
}

impl Health {
    async fn store_check(&self) -> Check {
        let probe = tokio::time::timeout(CHECK_TIMEOUT, self.store.probe()).await;
        check(
            "store",
            match probe {
                Ok(Ok(())) => Ok("took a durable write".into()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer to a write within 5 s".into()),
            },
        )
    }

    async fn hop_check(&self) -> Check {
        let hop = &self.config.server.next_hop;
        if self.config.milter.only {
            return check(
                "next_hop",
                Ok("none: milter only (Postfix delivers)".into()),
            );
        }
        if let Some(ago) = METRICS.next_hop_seen_ago().filter(|s| *s <= RECENT_HOP) {
            return check(
                "next_hop",
                Ok(format!("{hop} took a connection {ago} s ago")),
            );
        }
        let result = match hop {
            NextHop::Smtp(addr) => greeting(addr).await.map(|line| format!("{hop}: {line}")),
            NextHop::Maildir(dir) => writable(&dir.join("tmp"))
                .await
                .map(|()| format!("{hop} is writable")),
        };
        let result = result.map_err(|e| format!("{hop}: {e}"));
        check("next_hop", result)
    }

    async fn spool_check(&self) -> Check {
        let dir = self.config.server.data_dir.join("spool");
        check(
            "spool",
            writable(&dir)
                .await
                .map(|()| format!("{} is writable", dir.display())),
        )
    }
}

/// The next hop's greeting line, if it sends `220` in time.
async fn greeting(addr: &str) -> Result<String, String> {
    let talk = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        let line = String::from_utf8_lossy(&buf[..n]);
        let line = line.lines().next().unwrap_or("").to_string();
        // Leave politely, so the next hop logs a session, not a lost
        // connection, each time we look.
        let _ = stream.write_all(b"QUIT\r\n").await;
        match line.starts_with("220") {
            true => Ok(line),
            false => Err(format!("greeted with {line:?}")),
        }
    };
    match tokio::time::timeout(CHECK_TIMEOUT, talk).await {
        Ok(result) => result,
        Err(_) => Err("no greeting within 5 s".into()),
    }
}

/// Whether a file can be created (and removed) in `dir`.
async fn writable(dir: &std::path::Path) -> Result<(), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let probe = dir.join(format!(".ready-probe-{}", std::process::id()));
    tokio::fs::write(&probe, b"probe")
        .await
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = tokio::fs::remove_file(&probe).await;
    Ok(())
}

/// Runs the readiness check, then samples the outbox every 10 s and counts
/// the tickets every 2 minutes, for the gauges.
pub async fn sample(health: Arc<Health>, service: Arc<Service>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut round: u64 = 0;
    loop {
        tick.tick().await;
        if round.is_multiple_of(3) {
            health.check().await;
        }
        sample_outbox(&service);
        if round.is_multiple_of(12) {
            count_tickets(&health.store).await;
        }
        round += 1;
    }
}

fn sample_outbox(service: &Service) {
    let backlog = service.outbox().backlog();
    METRICS.outbox_queued.store(backlog.queued as u64, Relaxed);
    METRICS.outbox_held.store(backlog.held as u64, Relaxed);
    METRICS
        .outbox_oldest_queued_secs
        .store(backlog.oldest_queued.as_secs(), Relaxed);
    METRICS
        .outbox_oldest_held_secs
        .store(backlog.oldest_held.as_secs(), Relaxed);
}

/// Tickets by status and the overdue ones (a due time passed, not closed
/// or void), a page at a time.
async fn count_tickets(store: &TicketStore) {
    match tally(store).await {
        Ok((by_status, overdue)) => METRICS.set_tickets(&by_status, overdue),
        Err(e) => tracing::warn!(error = %e, "cannot count the tickets for the metrics"),
    }
}

type Tally = ([(Status, u64); 4], u64);

async fn tally(store: &TicketStore) -> Result<Tally, crate::store::StoreError> {
    let now = Timestamp::now();
    let mut by_status = [
        (Status::Open, 0u64),
        (Status::Suspended, 0),
        (Status::Closed, 0),
        (Status::Void, 0),
    ];
    let mut overdue = 0u64;
    for page in store.ticket_index().await?.chunks(crate::store::LIST_PAGE) {
        for t in store.tickets_of(page).await? {
            if let Some(slot) = by_status.iter_mut().find(|(s, _)| *s == t.status) {
                slot.1 += 1;
            }
            let open = !matches!(t.status, Status::Closed | Status::Void);
            overdue += u64::from(open && t.due_at.is_some_and(|d| d < now));
        }
    }
    Ok((by_status, overdue))
}
