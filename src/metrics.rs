//! Counters for ops: served in Prometheus text format on `[metrics] listen`
//! (`GET /metrics`), and logged as one `counters` event periodically and on
//! SIGUSR1. Plain atomics: cheap enough for the hot path.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ticket::{Action, ReplyState};

/// Upper bounds of the next-hop latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

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
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
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
            latency_buckets: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
        }
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
        let secs = d.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Relaxed);
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
            &self.latency_histogram(),
        );
        out
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

    /// Cumulative buckets, then `+Inf` (every observation), sum and count.
    fn latency_histogram(&self) -> Vec<Sample> {
        let count = self.latency_count.load(Relaxed);
        let mut histogram: Vec<Sample> = LATENCY_BUCKETS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(b, n)| {
                (
                    format!("_bucket{{le=\"{b}\"}}"),
                    n.load(Relaxed).to_string(),
                )
            })
            .collect();
        histogram.push(("_bucket{le=\"+Inf\"}".into(), count.to_string()));
        histogram.push((
            "_sum".into(),
            (self.latency_sum_micros.load(Relaxed) as f64 / 1e6).to_string(),
        ));
        histogram.push(("_count".into(), count.to_string()));
        histogram
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
            "counters"
        );
    }
}

/// Serves `GET /metrics` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream));
            }
        }
    }))
}

async fn answer(mut stream: TcpStream) {
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
        _ => ("404 Not Found", "not found: try GET /metrics\n".to_string()),
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
        assert_eq!(m.render(), EXPECTED);
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
";
}
