//! Counters and gauges for ops: served in Prometheus text format on
//! `[metrics] listen` (`GET /metrics`, with `GET /healthz` and
//! `GET /readyz`), and logged as one `counters` event periodically and on
//! SIGUSR1. Plain atomics: cheap enough for the hot path. The gauges are
//! set by whoever knows them (the readiness check, the outbox backlog and
//! ticket counts sampled by the app), so that rendering reads only atomics.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::reason::ReasonCode;
use crate::ticket::{Action, ReplyState, Status};

/// Upper bounds of the next-hop latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Upper bounds of the store commit buckets (one group fsync), in seconds.
const COMMIT_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];

/// Upper bounds of the parse-slot wait buckets, in seconds (up to the
/// default data timeout).
const WAIT_BUCKETS: [f64; 9] = [0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 90.0, 180.0];

/// The caps a message or a ticket can hit, in the order
/// `ticketgate_caps_total` lists them; `cap_index` is the position here.
const CAPS: [ReasonCode; 7] = [
    ReasonCode::CapHeaderFields,
    ReasonCode::CapMimeParts,
    ReasonCode::CapAttachments,
    ReasonCode::CapReferenceIds,
    ReasonCode::CapClassifyText,
    ReasonCode::CapTicketMessages,
    ReasonCode::CapTicketAttachments,
];

/// Ticket statuses, in the order `ticketgate_tickets` lists them.
const STATUSES: [Status; 4] = [
    Status::Open,
    Status::Suspended,
    Status::Closed,
    Status::Void,
];

/// Every message kind, in the order `ticketgate_messages_total` lists
/// them; `MessageKind::index` is the position here.
const MESSAGE_KINDS: [MessageKind; 8] = [
    MessageKind::Ticket(Action::Created),
    MessageKind::Ticket(Action::Appended),
    MessageKind::Ticket(Action::Closed),
    MessageKind::Ticket(Action::Reopened),
    MessageKind::Ticket(Action::Resumed),
    MessageKind::Ticket(Action::Refused),
    MessageKind::Passed,
    MessageKind::Rejected,
];

/// Every reply state, in the order `ticketgate_replies_total` lists them;
/// `reply_index` is the position here.
const REPLY_STATES: [ReplyState; 5] = [
    ReplyState::Held,
    ReplyState::Queued,
    ReplyState::Sent,
    ReplyState::Cancelled,
    ReplyState::Failed,
];

pub struct Metrics {
    connections_total: AtomicU64,
    connections_active: AtomicI64,
    connections_refused: AtomicU64,
    messages: [AtomicU64; MESSAGE_KINDS.len()],
    replies: [AtomicU64; REPLY_STATES.len()],
    next_hop: Histogram,
    store_commit: Histogram,
    parse_wait: Histogram,
    parse_waiting: AtomicI64,
    caps: [AtomicU64; CAPS.len()],
    /// Set by the readiness check: 1 when the part answered, else 0.
    pub ready: AtomicU64,
    pub store_writable: AtomicU64,
    pub next_hop_reachable: AtomicU64,
    pub spool_writable: AtomicU64,
    /// When the next hop last took a connection (Unix seconds).
    next_hop_seen: AtomicU64,
    /// The outbox backlog, as last sampled: (queued, held) and the age in
    /// seconds of the oldest of each.
    pub outbox_queued: AtomicU64,
    pub outbox_held: AtomicU64,
    pub outbox_oldest_queued_secs: AtomicU64,
    pub outbox_oldest_held_secs: AtomicU64,
    tickets: [AtomicU64; STATUSES.len()],
    pub tickets_overdue: AtomicU64,
    /// Settings the alert rules compare with.
    pub data_timeout_secs: AtomicU64,
    pub settle_horizon_secs: AtomicU64,
}

/// A histogram over fixed buckets.
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Cumulative buckets, then `+Inf` (every observation), sum and count.
    fn samples(&self) -> Vec<Sample> {
        let count = self.count.load(Relaxed);
        let mut out: Vec<Sample> = self
            .bounds
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                (
                    format!("_bucket{{le=\"{b}\"}}"),
                    n.load(Relaxed).to_string(),
                )
            })
            .collect();
        out.push(("_bucket{le=\"+Inf\"}".into(), count.to_string()));
        out.push((
            "_sum".into(),
            (self.sum_micros.load(Relaxed) as f64 / 1e6).to_string(),
        ));
        out.push(("_count".into(), count.to_string()));
        out
    }
}

/// Its counter in `Metrics::caps`, if it is a cap.
fn cap_index(code: ReasonCode) -> Option<usize> {
    CAPS.iter().position(|c| *c == code)
}

fn status_index(status: Status) -> usize {
    match status {
        Status::Open => 0,
        Status::Suspended => 1,
        Status::Closed => 2,
        Status::Void => 3,
    }
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// What happened to one message, for `ticketgate_messages_total{action}`.
#[derive(Debug, Clone, Copy)]
pub enum MessageKind {
    Ticket(Action),
    /// Forwarded untouched (no helpdesk recipient).
    Passed,
    /// Refused before or by the next hop.
    Rejected,
}

impl MessageKind {
    fn label(self) -> &'static str {
        match self {
            MessageKind::Ticket(a) => a.as_str(),
            MessageKind::Passed => "passed",
            MessageKind::Rejected => "rejected",
        }
    }

    /// Its counter in `Metrics::messages`. A match rather than a search, so
    /// a new action does not compile until it has a counter.
    fn index(self) -> usize {
        match self {
            MessageKind::Ticket(Action::Created) => 0,
            MessageKind::Ticket(Action::Appended) => 1,
            MessageKind::Ticket(Action::Closed) => 2,
            MessageKind::Ticket(Action::Reopened) => 3,
            MessageKind::Ticket(Action::Resumed) => 4,
            MessageKind::Ticket(Action::Refused) => 5,
            MessageKind::Passed => 6,
            MessageKind::Rejected => 7,
        }
    }
}

/// Its counter in `Metrics::replies`; a match for the same reason as
/// `MessageKind::index`.
fn reply_index(state: ReplyState) -> usize {
    match state {
        ReplyState::Held => 0,
        ReplyState::Queued => 1,
        ReplyState::Sent => 2,
        ReplyState::Cancelled => 3,
        ReplyState::Failed => 4,
    }
}

/// One sample of a family: what follows the family's name (labels, or a
/// histogram's `_bucket`, `_sum`, `_count`) and the value.
type Sample = (String, String);

/// Appends a family in the text exposition format: its HELP and TYPE
/// lines right before its samples.
fn family(out: &mut String, name: &str, help: &str, kind: &str, samples: &[Sample]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (suffix, value) in samples {
        let _ = writeln!(out, "{name}{suffix} {value}");
    }
}

fn single(value: impl ToString) -> Vec<Sample> {
    vec![(String::new(), value.to_string())]
}

/// One sample a counter, labelled `label="<name>"`.
fn labelled<'a>(
    label: &str,
    counters: impl IntoIterator<Item = (&'a str, &'a AtomicU64)>,
) -> Vec<Sample> {
    counters
        .into_iter()
        .map(|(n, v)| (format!("{{{label}=\"{n}\"}}"), v.load(Relaxed).to_string()))
        .collect()
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            connections_total: AtomicU64::new(0),
            connections_active: AtomicI64::new(0),
            connections_refused: AtomicU64::new(0),
            messages: Default::default(),
            replies: Default::default(),
            next_hop: Histogram::new(&LATENCY_BUCKETS),
            store_commit: Histogram::new(&COMMIT_BUCKETS),
            parse_wait: Histogram::new(&WAIT_BUCKETS),
            parse_waiting: AtomicI64::new(0),
            caps: Default::default(),
            ready: AtomicU64::new(0),
            store_writable: AtomicU64::new(0),
            next_hop_reachable: AtomicU64::new(0),
            spool_writable: AtomicU64::new(0),
            next_hop_seen: AtomicU64::new(0),
            outbox_queued: AtomicU64::new(0),
            outbox_held: AtomicU64::new(0),
            outbox_oldest_queued_secs: AtomicU64::new(0),
            outbox_oldest_held_secs: AtomicU64::new(0),
            tickets: Default::default(),
            tickets_overdue: AtomicU64::new(0),
            data_timeout_secs: AtomicU64::new(0),
            settle_horizon_secs: AtomicU64::new(0),
        }
    }

    pub fn store_commit(&self, d: Duration) {
        self.store_commit.observe(d);
    }

    /// A message starts waiting for a parse slot; `parse_waited` when it
    /// has one (or gave up).
    pub fn parse_waiting(&self) {
        self.parse_waiting.fetch_add(1, Relaxed);
    }

    pub fn parse_waited(&self, d: Duration) {
        self.parse_waiting.fetch_sub(1, Relaxed);
        self.parse_wait.observe(d);
    }

    /// Counts a cap hit; other codes are not caps and count nothing.
    pub fn cap(&self, code: ReasonCode) {
        if let Some(i) = cap_index(code) {
            self.caps[i].fetch_add(1, Relaxed);
        }
    }

    /// The next hop took a connection now.
    pub fn next_hop_seen(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.next_hop_seen.store(now, Relaxed);
    }

    /// Seconds since the next hop last took a connection; `None` if never.
    pub fn next_hop_seen_ago(&self) -> Option<u64> {
        let seen = self.next_hop_seen.load(Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (seen > 0).then(|| now.saturating_sub(seen))
    }

    /// Tickets by status and overdue ones, as last counted.
    pub fn set_tickets(&self, by_status: &[(Status, u64)], overdue: u64) {
        for (status, n) in by_status {
            self.tickets[status_index(*status)].store(*n, Relaxed);
        }
        self.tickets_overdue.store(overdue, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_active.fetch_sub(1, Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    pub fn message(&self, kind: MessageKind) {
        self.messages[kind.index()].fetch_add(1, Relaxed);
    }

    pub fn reply(&self, state: ReplyState) {
        self.replies[reply_index(state)].fetch_add(1, Relaxed);
    }

    pub fn next_hop_latency(&self, d: Duration) {
        self.next_hop.observe(d);
    }

    fn messages_of(&self, kind: MessageKind) -> u64 {
        self.messages[kind.index()].load(Relaxed)
    }

    fn replies_of(&self, state: ReplyState) -> u64 {
        self.replies[reply_index(state)].load(Relaxed)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        family(
            &mut out,
            "ticketgate_connections_total",
            "SMTP connections accepted.",
            "counter",
            &single(self.connections_total.load(Relaxed)),
        );
        family(
            &mut out,
            "ticketgate_connections_active",
            "SMTP sessions running now.",
            "gauge",
            &single(self.connections_active.load(Relaxed)),
        );
        family(
            &mut out,
            "ticketgate_connections_refused_total",
            "Connections refused at the connection limit.",
            "counter",
            &single(self.connections_refused.load(Relaxed)),
        );
        self.render_outcomes(&mut out);
        family(
            &mut out,
            "ticketgate_next_hop_seconds",
            "Time from DATA to the next hop's final reply.",
            "histogram",
            &self.next_hop.samples(),
        );
        self.render_health(&mut out);
        self.render_backlog(&mut out);
        out
    }

    /// Build, readiness and the settings the alert rules compare with.
    fn render_health(&self, out: &mut String) {
        let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        family(
            out,
            "ticketgate_build_info",
            "The running build.",
            "gauge",
            &[(version, "1".into())],
        );
        let gauges: [(&str, &str, &AtomicU64); 6] = [
            (
                "ticketgate_ready",
                "1 when the last readiness check passed.",
                &self.ready,
            ),
            (
                "ticketgate_store_writable",
                "1 when the store took the last probe write.",
                &self.store_writable,
            ),
            (
                "ticketgate_next_hop_reachable",
                "1 when the next hop took a connection recently or at the last check.",
                &self.next_hop_reachable,
            ),
            (
                "ticketgate_spool_writable",
                "1 when the spool directory took the last probe file.",
                &self.spool_writable,
            ),
            (
                "ticketgate_data_timeout_seconds",
                "limits.data_timeout_secs.",
                &self.data_timeout_secs,
            ),
            (
                "ticketgate_settle_horizon_seconds",
                "outbox.settle_horizon_secs: how long a sender may retry.",
                &self.settle_horizon_secs,
            ),
        ];
        for (name, help, value) in gauges {
            family(out, name, help, "gauge", &single(value.load(Relaxed)));
        }
        family(
            out,
            "ticketgate_store_commit_seconds",
            "Time to make one group of store changes durable (write and fsync).",
            "histogram",
            &self.store_commit.samples(),
        );
    }

    /// The outbox's backlog: how many replies wait in each state, and how
    /// long the oldest has.
    fn render_outbox(&self, out: &mut String) {
        let by_state = |queued: &AtomicU64, held: &AtomicU64| {
            [("queued", queued), ("held", held)]
                .map(|(state, n)| {
                    (
                        format!("{{state=\"{state}\"}}"),
                        n.load(Relaxed).to_string(),
                    )
                })
                .to_vec()
        };
        family(
            out,
            "ticketgate_outbox_replies",
            "Replies waiting: queued to send, held for the next hop's answer.",
            "gauge",
            &by_state(&self.outbox_queued, &self.outbox_held),
        );
        let oldest = by_state(
            &self.outbox_oldest_queued_secs,
            &self.outbox_oldest_held_secs,
        );
        family(
            out,
            "ticketgate_outbox_oldest_seconds",
            "Age of the oldest waiting reply of each state.",
            "gauge",
            &oldest,
        );
    }

    /// What waits: the outbox, the parse queue, the caps hit, the tickets.
    fn render_backlog(&self, out: &mut String) {
        self.render_outbox(out);
        family(
            out,
            "ticketgate_parse_waiting",
            "Messages waiting for a share of the parse budget.",
            "gauge",
            &single(self.parse_waiting.load(Relaxed)),
        );
        family(
            out,
            "ticketgate_parse_wait_seconds",
            "Time a message waited for its parse slot.",
            "histogram",
            &self.parse_wait.samples(),
        );
        let caps = CAPS
            .iter()
            .map(|c| (c.as_str(), &self.caps[cap_index(*c).unwrap_or(0)]));
        family(
            out,
            "ticketgate_caps_total",
            "Caps hit, by reason code.",
            "counter",
            &labelled("reason", caps),
        );
        let tickets = STATUSES
            .iter()
            .map(|s| (s.as_str(), &self.tickets[status_index(*s)]));
        family(
            out,
            "ticketgate_tickets",
            "Tickets by status, as last counted.",
            "gauge",
            &labelled("status", tickets),
        );
        family(
            out,
            "ticketgate_tickets_overdue",
            "Tickets past their due time and not closed.",
            "gauge",
            &single(self.tickets_overdue.load(Relaxed)),
        );
    }

    /// The families counted by message kind and by reply state.
    fn render_outcomes(&self, out: &mut String) {
        let messages = MESSAGE_KINDS
            .iter()
            .map(|k| (k.label(), &self.messages[k.index()]));
        family(
            out,
            "ticketgate_messages_total",
            "Messages by what they did.",
            "counter",
            &labelled("action", messages),
        );
        let replies = REPLY_STATES
            .iter()
            .map(|s| (s.as_str(), &self.replies[reply_index(*s)]));
        family(
            out,
            "ticketgate_replies_total",
            "Automatic replies entering each state.",
            "counter",
            &labelled("state", replies),
        );
    }

    /// One log event with every counter, for admins who read logs only.
    pub fn log(&self) {
        let m = |action: Action| self.messages_of(MessageKind::Ticket(action));
        tracing::info!(
            target: "ticketgate::counters",
            connections = self.connections_total.load(Relaxed),
            active = self.connections_active.load(Relaxed),
            refused_connections = self.connections_refused.load(Relaxed),
            created = m(Action::Created), appended = m(Action::Appended),
            closed = m(Action::Closed), reopened = m(Action::Reopened),
            resumed = m(Action::Resumed), refused = m(Action::Refused),
            passed = self.messages_of(MessageKind::Passed),
            rejected = self.messages_of(MessageKind::Rejected),
            replies_sent = self.replies_of(ReplyState::Sent),
            replies_failed = self.replies_of(ReplyState::Failed),
            replies_cancelled = self.replies_of(ReplyState::Cancelled),
            ready = self.ready.load(Relaxed),
            store_writable = self.store_writable.load(Relaxed),
            next_hop_reachable = self.next_hop_reachable.load(Relaxed),
            outbox_queued = self.outbox_queued.load(Relaxed),
            outbox_held = self.outbox_held.load(Relaxed),
            outbox_oldest_queued_secs = self.outbox_oldest_queued_secs.load(Relaxed),
            outbox_oldest_held_secs = self.outbox_oldest_held_secs.load(Relaxed),
            parse_waiting = self.parse_waiting.load(Relaxed),
            caps_hit = self.caps.iter().map(|c| c.load(Relaxed)).sum::<u64>(),
            tickets_overdue = self.tickets_overdue.load(Relaxed),
            "counters"
        );
    }
}

/// What `GET /readyz` asks: each part's name, whether it answered, and
/// what it said. Implemented above the leaves (it writes to the store,
/// talks to the next hop), handed to [`serve`].
pub trait Readiness: Send + Sync + 'static {
    fn check(&self) -> Pin<Box<dyn Future<Output = Vec<Check>> + Send + '_>>;
}

/// One part of the readiness check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Serves `GET /metrics`, `/healthz` and `/readyz` on `addr` until the
/// task is dropped.
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<dyn Readiness>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    // A scraper and a health check or two is the load; more at once is
    // someone's loop, and is closed at once rather than queued.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let readiness = readiness.clone();
            tokio::spawn(async move {
                answer(stream, readiness).await;
                drop(slot);
            });
        }
    }))
}

/// Requests the endpoint answers at once.
const MAX_HTTP_CONNECTIONS: usize = 16;

/// `200` and one line a part when every part answered, else `503`.
async fn readyz(readiness: &dyn Readiness) -> (&'static str, String) {
    let checks = readiness.check().await;
    let ok = checks.iter().all(|c| c.ok);
    let mut body = String::new();
    for c in &checks {
        let _ = writeln!(
            body,
            "{} {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    match ok {
        true => ("200 OK", body),
        false => ("503 Service Unavailable", body),
    }
}

async fn answer(mut stream: TcpStream, readiness: Arc<dyn Readiness>) {
    // A request head is small; anything slow or long is dropped.
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let (status, body) = match head.split_whitespace().take(2).collect::<Vec<_>>()[..] {
        ["GET", "/metrics"] => ("200 OK", METRICS.render()),
        ["GET", "/healthz"] => ("200 OK", "ok\n".to_string()),
        ["GET", "/readyz"] => readyz(readiness.as_ref()).await,
        _ => (
            "404 Not Found",
            "not found: try GET /metrics, /healthz or /readyz\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_and_state_has_its_own_counter() {
        for (i, kind) in MESSAGE_KINDS.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
        for (i, state) in REPLY_STATES.iter().enumerate() {
            assert_eq!(reply_index(*state), i, "{state:?}");
        }
    }

    /// The exposition text, to the byte: dashboards and tests scrape it.
    #[test]
    fn renders_every_family_as_scraped() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.connection_refused();
        for (n, kind) in MESSAGE_KINDS.into_iter().enumerate() {
            for _ in 0..=n {
                m.message(kind);
            }
        }
        for (n, state) in REPLY_STATES.into_iter().enumerate() {
            for _ in 0..=(n + 10) {
                m.reply(state);
            }
        }
        m.next_hop_latency(Duration::from_micros(1500));
        m.next_hop_latency(Duration::from_millis(30));
        m.next_hop_latency(Duration::from_secs(9));
        m.store_commit(Duration::from_micros(800));
        m.parse_waiting();
        m.parse_waiting();
        m.parse_waited(Duration::from_millis(200));
        m.cap(ReasonCode::CapMimeParts);
        m.cap(ReasonCode::CapMimeParts);
        m.cap(ReasonCode::AuthNone);
        m.set_tickets(&[(Status::Open, 3), (Status::Closed, 1)], 2);
        m.ready.store(1, Relaxed);
        m.store_writable.store(1, Relaxed);
        m.outbox_queued.store(4, Relaxed);
        m.outbox_oldest_queued_secs.store(61, Relaxed);
        m.data_timeout_secs.store(180, Relaxed);
        m.settle_horizon_secs.store(432000, Relaxed);
        let got = m.render();
        let expected = EXPECTED.replace("{VERSION}", env!("CARGO_PKG_VERSION"));
        for (n, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "line {}", n + 1);
        }
        assert_eq!(got, expected);
    }

    const EXPECTED: &str = "\
# HELP ticketgate_connections_total SMTP connections accepted.
# TYPE ticketgate_connections_total counter
ticketgate_connections_total 2
# HELP ticketgate_connections_active SMTP sessions running now.
# TYPE ticketgate_connections_active gauge
ticketgate_connections_active 1
# HELP ticketgate_connections_refused_total Connections refused at the connection limit.
# TYPE ticketgate_connections_refused_total counter
ticketgate_connections_refused_total 1
# HELP ticketgate_messages_total Messages by what they did.
# TYPE ticketgate_messages_total counter
ticketgate_messages_total{action=\"created\"} 1
ticketgate_messages_total{action=\"appended\"} 2
ticketgate_messages_total{action=\"closed\"} 3
ticketgate_messages_total{action=\"reopened\"} 4
ticketgate_messages_total{action=\"resumed\"} 5
ticketgate_messages_total{action=\"refused\"} 6
ticketgate_messages_total{action=\"passed\"} 7
ticketgate_messages_total{action=\"rejected\"} 8
# HELP ticketgate_replies_total Automatic replies entering each state.
# TYPE ticketgate_replies_total counter
ticketgate_replies_total{state=\"held\"} 11
ticketgate_replies_total{state=\"queued\"} 12
ticketgate_replies_total{state=\"sent\"} 13
ticketgate_replies_total{state=\"cancelled\"} 14
ticketgate_replies_total{state=\"failed\"} 15
# HELP ticketgate_next_hop_seconds Time from DATA to the next hop's final reply.
# TYPE ticketgate_next_hop_seconds histogram
ticketgate_next_hop_seconds_bucket{le=\"0.001\"} 0
ticketgate_next_hop_seconds_bucket{le=\"0.0025\"} 1
ticketgate_next_hop_seconds_bucket{le=\"0.005\"} 1
ticketgate_next_hop_seconds_bucket{le=\"0.01\"} 1
ticketgate_next_hop_seconds_bucket{le=\"0.025\"} 1
ticketgate_next_hop_seconds_bucket{le=\"0.05\"} 2
ticketgate_next_hop_seconds_bucket{le=\"0.1\"} 2
ticketgate_next_hop_seconds_bucket{le=\"0.25\"} 2
ticketgate_next_hop_seconds_bucket{le=\"1\"} 2
ticketgate_next_hop_seconds_bucket{le=\"5\"} 2
ticketgate_next_hop_seconds_bucket{le=\"+Inf\"} 3
ticketgate_next_hop_seconds_sum 9.0315
ticketgate_next_hop_seconds_count 3
# HELP ticketgate_build_info The running build.
# TYPE ticketgate_build_info gauge
ticketgate_build_info{version=\"{VERSION}\"} 1
# HELP ticketgate_ready 1 when the last readiness check passed.
# TYPE ticketgate_ready gauge
ticketgate_ready 1
# HELP ticketgate_store_writable 1 when the store took the last probe write.
# TYPE ticketgate_store_writable gauge
ticketgate_store_writable 1
# HELP ticketgate_next_hop_reachable 1 when the next hop took a connection recently or at the last check.
# TYPE ticketgate_next_hop_reachable gauge
ticketgate_next_hop_reachable 0
# HELP ticketgate_spool_writable 1 when the spool directory took the last probe file.
# TYPE ticketgate_spool_writable gauge
ticketgate_spool_writable 0
# HELP ticketgate_data_timeout_seconds limits.data_timeout_secs.
# TYPE ticketgate_data_timeout_seconds gauge
ticketgate_data_timeout_seconds 180
# HELP ticketgate_settle_horizon_seconds outbox.settle_horizon_secs: how long a sender may retry.
# TYPE ticketgate_settle_horizon_seconds gauge
ticketgate_settle_horizon_seconds 432000
# HELP ticketgate_store_commit_seconds Time to make one group of store changes durable (write and fsync).
# TYPE ticketgate_store_commit_seconds histogram
ticketgate_store_commit_seconds_bucket{le=\"0.0005\"} 0
ticketgate_store_commit_seconds_bucket{le=\"0.001\"} 1
ticketgate_store_commit_seconds_bucket{le=\"0.0025\"} 1
ticketgate_store_commit_seconds_bucket{le=\"0.005\"} 1
ticketgate_store_commit_seconds_bucket{le=\"0.01\"} 1
ticketgate_store_commit_seconds_bucket{le=\"0.025\"} 1
ticketgate_store_commit_seconds_bucket{le=\"0.05\"} 1
ticketgate_store_commit_seconds_bucket{le=\"0.1\"} 1
ticketgate_store_commit_seconds_bucket{le=\"0.5\"} 1
ticketgate_store_commit_seconds_bucket{le=\"2\"} 1
ticketgate_store_commit_seconds_bucket{le=\"+Inf\"} 1
ticketgate_store_commit_seconds_sum 0.0008
ticketgate_store_commit_seconds_count 1
# HELP ticketgate_outbox_replies Replies waiting: queued to send, held for the next hop's answer.
# TYPE ticketgate_outbox_replies gauge
ticketgate_outbox_replies{state=\"queued\"} 4
ticketgate_outbox_replies{state=\"held\"} 0
# HELP ticketgate_outbox_oldest_seconds Age of the oldest waiting reply of each state.
# TYPE ticketgate_outbox_oldest_seconds gauge
ticketgate_outbox_oldest_seconds{state=\"queued\"} 61
ticketgate_outbox_oldest_seconds{state=\"held\"} 0
# HELP ticketgate_parse_waiting Messages waiting for a share of the parse budget.
# TYPE ticketgate_parse_waiting gauge
ticketgate_parse_waiting 1
# HELP ticketgate_parse_wait_seconds Time a message waited for its parse slot.
# TYPE ticketgate_parse_wait_seconds histogram
ticketgate_parse_wait_seconds_bucket{le=\"0.001\"} 0
ticketgate_parse_wait_seconds_bucket{le=\"0.01\"} 0
ticketgate_parse_wait_seconds_bucket{le=\"0.1\"} 0
ticketgate_parse_wait_seconds_bucket{le=\"0.5\"} 1
ticketgate_parse_wait_seconds_bucket{le=\"1\"} 1
ticketgate_parse_wait_seconds_bucket{le=\"5\"} 1
ticketgate_parse_wait_seconds_bucket{le=\"30\"} 1
ticketgate_parse_wait_seconds_bucket{le=\"90\"} 1
ticketgate_parse_wait_seconds_bucket{le=\"180\"} 1
ticketgate_parse_wait_seconds_bucket{le=\"+Inf\"} 1
ticketgate_parse_wait_seconds_sum 0.2
ticketgate_parse_wait_seconds_count 1
# HELP ticketgate_caps_total Caps hit, by reason code.
# TYPE ticketgate_caps_total counter
ticketgate_caps_total{reason=\"cap.header_fields\"} 0
ticketgate_caps_total{reason=\"cap.mime_parts\"} 2
ticketgate_caps_total{reason=\"cap.attachments\"} 0
ticketgate_caps_total{reason=\"cap.reference_ids\"} 0
ticketgate_caps_total{reason=\"cap.classify_text\"} 0
ticketgate_caps_total{reason=\"cap.ticket_messages\"} 0
ticketgate_caps_total{reason=\"cap.ticket_attachments\"} 0
# HELP ticketgate_tickets Tickets by status, as last counted.
# TYPE ticketgate_tickets gauge
ticketgate_tickets{status=\"open\"} 3
ticketgate_tickets{status=\"suspended\"} 0
ticketgate_tickets{status=\"closed\"} 1
ticketgate_tickets{status=\"void\"} 0
# HELP ticketgate_tickets_overdue Tickets past their due time and not closed.
# TYPE ticketgate_tickets_overdue gauge
ticketgate_tickets_overdue 2
";
}
