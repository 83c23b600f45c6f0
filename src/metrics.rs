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

const ACTIONS: [&str; 8] = [
    "created", "appended", "closed", "reopened", "resumed", "refused", "passed", "rejected",
];
const REPLY_STATES: [&str; 5] = ["held", "queued", "sent", "cancelled", "failed"];

pub struct Metrics {
    connections_total: AtomicU64,
    connections_active: AtomicI64,
    connections_refused: AtomicU64,
    messages: [AtomicU64; ACTIONS.len()],
    replies: [AtomicU64; REPLY_STATES.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    connections_total: AtomicU64::new(0),
    connections_active: AtomicI64::new(0),
    connections_refused: AtomicU64::new(0),
    messages: Default::default(),
    replies: Default::default(),
    latency_buckets: Default::default(),
    latency_count: AtomicU64::new(0),
    latency_sum_micros: AtomicU64::new(0),
});

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
}

fn index_of(labels: &[&str], label: &str) -> usize {
    labels.iter().position(|l| *l == label).unwrap_or(0)
}

impl Metrics {
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
        self.messages[index_of(&ACTIONS, kind.label())].fetch_add(1, Relaxed);
    }

    pub fn reply(&self, state: ReplyState) {
        self.replies[index_of(&REPLY_STATES, state.as_str())].fetch_add(1, Relaxed);
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

    /// The Prometheus text exposition format (version 0.0.4); each family's
    /// HELP and TYPE lines come right before its samples.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut family = |name: &str, help: &str, kind: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (suffix, value) in samples {
                let _ = writeln!(out, "{name}{suffix} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        family(
            "ticketgate_connections_total",
            "SMTP connections accepted.",
            "counter",
            &one(self.connections_total.load(Relaxed).to_string()),
        );
        family(
            "ticketgate_connections_active",
            "SMTP sessions running now.",
            "gauge",
            &one(self.connections_active.load(Relaxed).to_string()),
        );
        family(
            "ticketgate_connections_refused_total",
            "Connections refused at the connection limit.",
            "counter",
            &one(self.connections_refused.load(Relaxed).to_string()),
        );
        let labelled =
            |label: &str, names: &[&str], values: &[AtomicU64]| -> Vec<(String, String)> {
                names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| (format!("{{{label}=\"{n}\"}}"), v.load(Relaxed).to_string()))
                    .collect()
            };
        family(
            "ticketgate_messages_total",
            "Messages by what they did.",
            "counter",
            &labelled("action", &ACTIONS, &self.messages),
        );
        family(
            "ticketgate_replies_total",
            "Automatic replies entering each state.",
            "counter",
            &labelled("state", &REPLY_STATES, &self.replies),
        );
        let count = self.latency_count.load(Relaxed);
        let mut histogram: Vec<(String, String)> = LATENCY_BUCKETS
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
        family(
            "ticketgate_next_hop_seconds",
            "Time from DATA to the next hop's final reply.",
            "histogram",
            &histogram,
        );
        out
    }

    /// One log event with every counter, for admins who read logs only.
    pub fn log(&self) {
        let m = |label: &str| self.messages[index_of(&ACTIONS, label)].load(Relaxed);
        let r = |label: &str| self.replies[index_of(&REPLY_STATES, label)].load(Relaxed);
        tracing::info!(
            target: "ticketgate::counters",
            connections = self.connections_total.load(Relaxed),
            active = self.connections_active.load(Relaxed),
            refused_connections = self.connections_refused.load(Relaxed),
            created = m("created"), appended = m("appended"), closed = m("closed"),
            reopened = m("reopened"), resumed = m("resumed"), refused = m("refused"),
            passed = m("passed"), rejected = m("rejected"),
            replies_sent = r("sent"), replies_failed = r("failed"), replies_cancelled = r("cancelled"),
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
