//! The listener: accepts connections, one task per session, a semaphore
//! for the connection limit, and a two-phase shutdown (drain, then close).

pub mod pressure;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::Config;
use crate::metrics::METRICS;
use crate::pipeline::Pipeline;
use crate::smtp::Session;
use pressure::Pressure;

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

pub struct Shared {
    pub config: Config,
    pub pipeline: Pipeline,
}

pub struct Server {
    listener: TcpListener,
    sessions: Sessions,
}

/// What outlives a listener during shutdown: the connection slots and the
/// phase its sessions watch. The SMTP and the milter listener have one each.
pub(crate) struct Sessions {
    pub(crate) shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    phase: watch::Sender<Phase>,
    pressure: Arc<Pressure>,
}

impl Server {
    pub async fn bind(shared: Arc<Shared>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(shared.config.server.listen).await?;
        Ok(Server {
            listener,
            sessions: Sessions::new(shared),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, sessions } = self;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => sessions.start(stream, peer),
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = &mut shutdown => break,
            }
        }
        // Closing the listening socket makes new connections fail at once
        // instead of waiting in the backlog until we exit.
        drop(listener);
        sessions.drain().await;
    }
}

impl Sessions {
    pub(crate) fn new(shared: Arc<Shared>) -> Sessions {
        let limits = &shared.config.limits;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let pressure = Pressure::new(
            slots.clone(),
            limits.max_connections,
            limits.stress_threshold_percent,
        );
        let (phase, _) = watch::channel(Phase::Running);
        Sessions {
            shared,
            slots,
            phase,
            pressure,
        }
    }

    /// A slot for one more connection, or `None` at the limit.
    pub(crate) fn admit(&self, peer: &dyn std::fmt::Display) -> Option<OwnedSemaphorePermit> {
        let permit = self.slots.clone().try_acquire_owned().ok();
        if permit.is_none() {
            tracing::warn!(%peer, "connection limit reached");
            METRICS.connection_refused();
        }
        permit
    }

    pub(crate) fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    fn start(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            self.serve(permit, stream, peer);
            return;
        }
        if !self.pressure.evict_longest_idle() {
            match self.admit(&peer) {
                Some(permit) => self.serve(permit, stream, peer),
                None => drop(tokio::spawn(refuse(stream))),
            }
            return;
        }
        // The idle session says 421 and leaves; its slot is this client's.
        let slots = self.slots.clone();
        let starter = self.starter();
        tokio::spawn(async move {
            match tokio::time::timeout(EVICTION_WAIT, slots.acquire_owned()).await {
                Ok(Ok(permit)) => starter.serve(permit, stream, peer),
                _ => {
                    tracing::warn!(%peer, "connection limit reached");
                    METRICS.connection_refused();
                    refuse(stream).await;
                }
            }
        });
    }

    fn starter(&self) -> Starter {
        Starter {
            shared: self.shared.clone(),
            phase: self.phase(),
            pressure: self.pressure.clone(),
        }
    }

    fn serve(&self, permit: OwnedSemaphorePermit, stream: TcpStream, peer: SocketAddr) {
        self.starter().serve(permit, stream, peer);
    }

    pub(crate) async fn drain(&self) {
        let limits = &self.shared.config.limits;
        let total = limits.max_connections as u32;
        tracing::info!(
            grace_secs = limits.shutdown_grace_secs,
            "shutting down: draining sessions"
        );
        let _ = self.phase.send(Phase::Draining);
        if tokio::time::timeout(limits.shutdown_grace(), self.slots.acquire_many(total))
            .await
            .is_ok()
        {
            tracing::info!("all sessions finished");
            return;
        }
        tracing::info!("grace period over: closing remaining sessions");
        let _ = self.phase.send(Phase::Closing);
        // A session in the middle of forwarding finishes that step (bounded
        // by the next hop timeout) before it can say 421.
        let rest = limits.next_hop_timeout() + Duration::from_secs(5);
        if tokio::time::timeout(rest, self.slots.acquire_many(total))
            .await
            .is_err()
        {
            tracing::warn!("sessions still running at exit");
        }
    }
}

/// What starting an SMTP session needs, detached from the listener so a
/// task waiting for an evicted slot can do it.
struct Starter {
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    pressure: Arc<Pressure>,
}

impl Starter {
    fn serve(self, permit: OwnedSemaphorePermit, stream: TcpStream, peer: SocketAddr) {
        let load = self.pressure.register();
        let session = Session::new(stream, peer, self.shared, self.phase, load);
        tracing::debug!(session = session.id(), %peer, "connected");
        spawn_session(permit, session.run());
    }
}

/// Runs one session to its end on its own task, counted in the metrics and
/// holding its connection slot until it is done.
pub(crate) fn spawn_session(
    permit: OwnedSemaphorePermit,
    session: impl Future<Output = ()> + Send + 'static,
) {
    METRICS.connection_opened();
    tokio::spawn(async move {
        session.await;
        METRICS.connection_closed();
        drop(permit);
    });
}

async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
        .await;
    let _ = stream.shutdown().await;
}
