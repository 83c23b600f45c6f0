//! Milter mode: the same pipeline behind Postfix's `smtpd_milters`. The
//! listener accepts connections from the MTA (TCP or a Unix socket), one
//! task per connection, with the SMTP listener's connection limit and
//! two-phase shutdown.

mod session;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

pub use session::MilterSession;

use crate::config::MilterAddr;
use crate::server::{Sessions, Shared, spawn_session};

pub struct MilterListener {
    listener: Listener,
    sessions: Sessions,
}

enum Listener {
    Tcp(TcpListener),
    /// The socket file is removed when the listener stops.
    Unix(UnixListener, PathBuf),
}

impl MilterListener {
    pub async fn bind(addr: &MilterAddr, shared: Arc<Shared>) -> std::io::Result<MilterListener> {
        let listener = match addr {
            MilterAddr::Tcp(a) => Listener::Tcp(TcpListener::bind(a).await?),
            MilterAddr::Unix(path) => Listener::Unix(bind_unix(path)?, path.clone()),
        };
        Ok(MilterListener {
            listener,
            sessions: Sessions::new(shared),
        })
    }

    /// Where it listens, as Postfix's `smtpd_milters` would name it.
    pub fn local_addr(&self) -> String {
        match &self.listener {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("inet:{a}"))
                .unwrap_or_default(),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// The TCP address, when it listens on one.
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let MilterListener { listener, sessions } = self;
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = accept(&listener) => accepted,
                _ = &mut shutdown => break,
            };
            match accepted {
                Ok(connection) => start(&sessions, connection),
                Err(e) => {
                    tracing::error!(error = %e, "milter: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if let Listener::Unix(_, path) = &listener {
            let _ = std::fs::remove_file(path);
        }
        drop(listener);
        sessions.drain().await;
    }
}

type Stream = Box<dyn AsyncReadWrite>;
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, String)> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            (Box::new(stream) as Stream, peer.to_string())
        }
        Listener::Unix(l, path) => {
            let (stream, _) = l.accept().await?;
            (Box::new(stream) as Stream, path.display().to_string())
        }
    })
}

fn start(sessions: &Sessions, (stream, peer): (Stream, String)) {
    // At the limit the connection just closes: Postfix applies its
    // milter_default_action (tempfail) and the client retries.
    let Some(permit) = sessions.admit(&peer) else {
        return;
    };
    let session = MilterSession::new(stream, sessions.shared.clone(), sessions.phase());
    tracing::debug!(session = session.id(), %peer, "milter: connected");
    spawn_session(permit, session.run());
}

/// Binds a Unix socket, replacing a stale one left by a crash (but never
/// another kind of file), readable and writable by owner and group: the
/// MTA's user joins ticketgate's group.
fn bind_unix(path: &std::path::Path) -> std::io::Result<UnixListener> {
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}
