//! Milter mode: the same pipeline behind Postfix's `smtpd_milters`, served
//! by the common listener (TCP or a Unix socket, mode 0660: the MTA's user
//! joins ticketgate's group), one task per connection.

mod session;

use std::sync::Arc;

pub use session::MilterSession;

use crate::config::MilterAddr;
use crate::server::{
    Bound, Front, Listener, Peer, SessionContext, SessionFuture, SessionLimits, Shared, Stream,
};

/// The milter front end.
pub struct MilterFront {
    shared: Arc<Shared>,
}

pub type MilterListener = Listener<MilterFront>;

/// Binds the milter listener at `addr`.
pub async fn bind(addr: &MilterAddr, shared: Arc<Shared>) -> std::io::Result<MilterListener> {
    let bound = match addr {
        MilterAddr::Tcp(a) => Bound::tcp(*a).await?,
        MilterAddr::Unix(path) => Bound::unix(path, 0o660)?,
    };
    let limits = SessionLimits::from(&shared.config.limits);
    Ok(Listener::new(bound, limits, MilterFront { shared }))
}

impl Front for MilterFront {
    fn session(&self, stream: Stream, peer: Peer, context: SessionContext) -> SessionFuture {
        // At the limit the connection just closes (no refusal text):
        // Postfix applies its milter_default_action (tempfail) and the
        // client retries.
        let session = MilterSession::new(stream, self.shared.clone(), context.phase);
        tracing::debug!(session = session.id(), %peer, "milter: connected");
        Box::pin(session.run())
    }
}
