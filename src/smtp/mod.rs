//! The SMTP server side: session state and the command handlers (one file
//! per verb in `commands/`), served by the common listener.
pub mod commands;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

pub use session::Session;

use crate::server::{
    Bound, Front, Listener, Peer, SessionContext, SessionFuture, SessionLimits, Shared, Stream,
};

/// The SMTP front end.
pub struct SmtpFront {
    shared: Arc<Shared>,
}

pub type SmtpListener = Listener<SmtpFront>;

/// Binds the SMTP listener on `server.listen`.
pub async fn bind(shared: Arc<Shared>) -> std::io::Result<SmtpListener> {
    let bound = Bound::tcp(shared.config.server.listen).await?;
    let limits = SessionLimits::from(&shared.config.limits);
    Ok(Listener::new(bound, limits, SmtpFront { shared }))
}

impl Front for SmtpFront {
    fn session(&self, stream: Stream, peer: Peer, context: SessionContext) -> SessionFuture {
        let addr = match peer {
            Peer::Tcp(a) => a,
            Peer::Unix(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let session = Session::new(
            stream,
            addr,
            self.shared.clone(),
            context.phase,
            context.load,
        );
        tracing::debug!(session = session.id(), %peer, "connected");
        Box::pin(session.run())
    }

    fn refusal(&self) -> &'static [u8] {
        b"421 4.7.0 Too many connections, try again later\r\n"
    }

    fn evicts_idle(&self) -> bool {
        true
    }
}
