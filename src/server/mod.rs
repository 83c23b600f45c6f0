//! The listener, one for every front end (SMTP, milter, control socket):
//! accepts connections on TCP or a Unix socket, one task per session, a
//! semaphore for the connection limit, stress mode ([`pressure`]) for the
//! front ends that want it, and a two-phase shutdown (drain, then close).
//! What a session does is the front end's ([`Front`]).

pub mod pressure;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::{Config, LimitsConfig};
use crate::desk::Pipeline;
use crate::metrics::METRICS;
use pressure::{Pressure, SessionLoad};

/// How long a new client waits for the slot of an idle session that was
/// told to leave.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// Where the server is in its life; sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// No new connections; sessions finish their transaction.
    Draining,
    /// The grace period is over: sessions say `421` and close.
    Closing,
}

/// What the SMTP and milter sessions share.
pub struct Shared {
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
}

/// A connection, whichever socket it came in on.
pub type Stream = Box<dyn Connection>;
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// Who connected.
#[derive(Debug, Clone)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What a session gets from its listener.
pub struct SessionContext {
    pub phase: watch::Receiver<Phase>,
    /// Its idleness, for stress mode: a session that says when it waits
    /// for its client may be closed for a new one (front ends that evict).
    pub load: SessionLoad,
}

pub type SessionFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A front end: what one accepted connection becomes.
pub trait Front: Send + Sync + 'static {
    /// Runs one session on `stream` until it ends.
    fn session(&self, stream: Stream, peer: Peer, context: SessionContext) -> SessionFuture;

    /// Written to a client refused at the connection limit (SMTP's `421`);
    /// empty: the connection just closes.
    fn refusal(&self) -> &'static [u8] {
        b""
    }

    /// Whether, at the limit, a new client closes the session idle longest
    /// (Postfix's stress mode).
    fn evicts_idle(&self) -> bool {
        false
    }

    /// Whether its connections count in the metrics (the SMTP and milter
    /// clients, not the workgroup's control connections).
    fn counted(&self) -> bool {
        true
    }
}

/// How many sessions a listener serves and how it stops them.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_connections: usize,
    pub stress_threshold_percent: u8,
    pub shutdown_grace: Duration,
    /// After the grace period: a session in the middle of forwarding
    /// finishes that step before it can say `421`.
    pub closing_wait: Duration,
}

impl From<&LimitsConfig> for SessionLimits {
    fn from(l: &LimitsConfig) -> Self {
        SessionLimits {
            max_connections: l.max_connections,
            stress_threshold_percent: l.stress_threshold_percent,
            shutdown_grace: l.shutdown_grace(),
            closing_wait: l.next_hop_timeout() + Duration::from_secs(5),
        }
    }
}

/// A bound socket.
pub enum Bound {
    Tcp(TcpListener),
    /// The socket file is removed when the listener stops.
    Unix(UnixListener, PathBuf),
}

impl Bound {
    pub async fn tcp(addr: SocketAddr) -> std::io::Result<Bound> {
        Ok(Bound::Tcp(TcpListener::bind(addr).await?))
    }

    /// Binds a Unix socket with permissions `mode`, replacing a stale one
    /// left by a crash, but never another kind of file.
    pub fn unix(path: &Path, mode: u32) -> std::io::Result<Bound> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(Bound::Unix(listener, path.to_path_buf()))
    }

    /// Where it listens, as Postfix names it (`inet:` or `unix:`).
    pub fn local_addr(&self) -> String {
        match self {
            Bound::Tcp(l) => l
                .local_addr()
                .map(|a| format!("inet:{a}"))
                .unwrap_or_default(),
            Bound::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// The TCP address, when it listens on one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Bound::Tcp(l) => l.local_addr().ok(),
            Bound::Unix(..) => None,
        }
    }

    async fn accept(&self) -> std::io::Result<(Stream, Peer)> {
        Ok(match self {
            Bound::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                (Box::new(stream) as Stream, Peer::Tcp(peer))
            }
            Bound::Unix(l, path) => {
                let (stream, _) = l.accept().await?;
                (Box::new(stream) as Stream, Peer::Unix(path.clone()))
            }
        })
    }
}

/// A bound socket and the front end its connections go to.
pub struct Listener<F> {
    bound: Bound,
    sessions: Sessions,
    front: Arc<F>,
}

impl<F: Front> Listener<F> {
    pub fn new(bound: Bound, limits: SessionLimits, front: F) -> Listener<F> {
        Listener {
            bound,
            sessions: Sessions::new(limits),
            front: Arc::new(front),
        }
    }

    pub fn local_addr(&self) -> String {
        self.bound.local_addr()
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.bound.tcp_addr()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Listener {
            bound,
            sessions,
            front,
        } = self;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = bound.accept() => match accepted {
                    Ok((stream, peer)) => sessions.start(&front, stream, peer),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::error!(error = %e, listen = %bound.local_addr(), "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = &mut shutdown => break,
            }
        }
        if let Bound::Unix(_, path) = &bound {
            let _ = std::fs::remove_file(path);
        }
        // Closing the listening socket makes new connections fail at once
        // instead of waiting in the backlog until we exit.
        drop(bound);
        sessions.drain().await;
    }
}

/// What outlives the accept loop during shutdown: the connection slots
/// and the phase the sessions watch.
struct Sessions {
    limits: SessionLimits,
    slots: Arc<Semaphore>,
    phase: watch::Sender<Phase>,
    pressure: Arc<Pressure>,
}

impl Sessions {
    fn new(limits: SessionLimits) -> Sessions {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let pressure = Pressure::new(
            slots.clone(),
            limits.max_connections,
            limits.stress_threshold_percent,
        );
        let (phase, _) = watch::channel(Phase::Running);
        Sessions {
            limits,
            slots,
            phase,
            pressure,
        }
    }

    fn start<F: Front>(&self, front: &Arc<F>, stream: Stream, peer: Peer) {
        let starter = self.starter(front);
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            starter.serve(permit, stream, peer);
            return;
        }
        if !front.evicts_idle() || !self.pressure.evict_longest_idle() {
            tracing::warn!(%peer, "connection limit reached");
            METRICS.connection_refused();
            drop(tokio::spawn(refuse(stream, front.refusal())));
            return;
        }
        // The idle session says 421 and leaves; its slot is this client's.
        let slots = self.slots.clone();
        let refusal = front.refusal();
        tokio::spawn(async move {
            match tokio::time::timeout(EVICTION_WAIT, slots.acquire_owned()).await {
                Ok(Ok(permit)) => starter.serve(permit, stream, peer),
                _ => {
                    tracing::warn!(%peer, "connection limit reached");
                    METRICS.connection_refused();
                    refuse(stream, refusal).await;
                }
            }
        });
    }

    fn starter<F: Front>(&self, front: &Arc<F>) -> Starter<F> {
        Starter {
            front: front.clone(),
            phase: self.phase.subscribe(),
            pressure: self.pressure.clone(),
        }
    }

    async fn drain(&self) {
        let limits = &self.limits;
        let total = limits.max_connections as u32;
        tracing::info!(
            grace_secs = limits.shutdown_grace.as_secs(),
            "shutting down: draining sessions"
        );
        let _ = self.phase.send(Phase::Draining);
        if tokio::time::timeout(limits.shutdown_grace, self.slots.acquire_many(total))
            .await
            .is_ok()
        {
            tracing::info!("all sessions finished");
            return;
        }
        tracing::info!("grace period over: closing remaining sessions");
        let _ = self.phase.send(Phase::Closing);
        if tokio::time::timeout(limits.closing_wait, self.slots.acquire_many(total))
            .await
            .is_err()
        {
            tracing::warn!("sessions still running at exit");
        }
    }
}

/// What starting a session needs, detached from the listener so a task
/// waiting for an evicted slot can do it.
struct Starter<F> {
    front: Arc<F>,
    phase: watch::Receiver<Phase>,
    pressure: Arc<Pressure>,
}

impl<F: Front> Starter<F> {
    /// Runs one session to its end on its own task, counted in the metrics
    /// and holding its connection slot until it is done.
    fn serve(self, permit: OwnedSemaphorePermit, stream: Stream, peer: Peer) {
        let context = SessionContext {
            phase: self.phase,
            load: self.pressure.register(),
        };
        let counted = self.front.counted();
        let session = self.front.session(stream, peer, context);
        if counted {
            METRICS.connection_opened();
        }
        tokio::spawn(async move {
            session.await;
            if counted {
                METRICS.connection_closed();
            }
            drop(permit);
        });
    }
}

async fn refuse(mut stream: Stream, refusal: &'static [u8]) {
    if !refusal.is_empty() {
        let _ = stream.write_all(refusal).await;
    }
    let _ = stream.shutdown().await;
}
