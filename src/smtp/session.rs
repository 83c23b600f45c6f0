//! One SMTP session: the state machine and the command loop. Each verb's
//! handling lives in `commands/`.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::envelope::ClientInfo;
use crate::forward::{MailParams, NextHopConn};
use crate::server::pressure::SessionLoad;
use crate::server::{Phase, Shared};
use crate::wire::io::{Line, MAX_COMMAND_LINE, ReadError, SmtpIo};
use crate::wire::reply::Reply;

pub enum State {
    /// Connected (or reset by XCLIENT); EHLO or HELO must come first.
    Connected,
    Ready,
    Transaction(Transaction),
}

pub struct Transaction {
    pub from: String,
    pub params: MailParams,
    pub rcpts: Vec<String>,
}

pub enum Flow {
    Continue,
    Quit,
}

pub struct Session<S> {
    pub(super) io: SmtpIo<S>,
    pub(super) shared: Arc<Shared>,
    pub(super) id: String,
    pub(super) peer: SocketAddr,
    pub(super) client: ClientInfo,
    pub(super) helo: Option<String>,
    pub(super) esmtp: bool,
    pub(super) state: State,
    pub(super) hop: Option<NextHopConn>,
    /// XFORWARD details changed since the hop last saw them.
    pub(super) hop_needs_xforward: bool,
    /// `session_timeout_secs` from the start: no read goes past it.
    pub(super) deadline: tokio::time::Instant,
    pub(super) phase: watch::Receiver<Phase>,
    pub(super) load: SessionLoad,
    /// Refusals logged so far; past [`LOGGED_REFUSALS`] a client that
    /// repeats bad commands gets no log line per line it sends.
    refusals_logged: u32,
}

/// Refusal lines one session may log; the one after says the rest are not.
const LOGGED_REFUSALS: u32 = 20;

enum Next {
    Line(Vec<u8>),
    TooLong,
    Stop(Option<Reply>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        stream: S,
        peer: SocketAddr,
        shared: Arc<Shared>,
        phase: watch::Receiver<Phase>,
        load: SessionLoad,
    ) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase();
        let limits = &shared.config.limits;
        let deadline = tokio::time::Instant::now() + limits.session_timeout();
        let mut io = SmtpIo::new(stream);
        io.set_write_timeout(limits.command_timeout());
        Session {
            io,
            shared,
            id,
            peer,
            client: ClientInfo {
                addr: Some(peer.ip().to_string()),
                port: Some(peer.port().to_string()),
                ..ClientInfo::default()
            },
            helo: None,
            esmtp: false,
            state: State::Connected,
            hop: None,
            hop_needs_xforward: false,
            deadline,
            phase,
            load,
            refusals_logged: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn is_trusted_upstream(&self) -> bool {
        self.shared
            .config
            .server
            .trusted_upstreams
            .contains(&self.peer.ip())
    }

    pub async fn run(mut self) {
        let greeting = self.greeting();
        self.io.queue(greeting.to_wire().as_bytes());
        if self.io.flush().await.is_err() {
            return;
        }
        loop {
            let line = match self.next_line().await {
                Next::Line(line) => line,
                Next::TooLong => {
                    self.reply(Reply::new(
                        500,
                        "5.5.2",
                        "Line too long (RFC 5321 limit is 512 octets)",
                    ));
                    if self.io.flush_if_idle().await.is_err() {
                        break;
                    }
                    continue;
                }
                Next::Stop(reply) => {
                    if let Some(reply) = reply {
                        self.reply(reply);
                        let _ = self.io.flush().await;
                    }
                    break;
                }
            };
            let flow = self.dispatch(&line).await;
            if self.io.flush_if_idle().await.is_err() {
                break;
            }
            if let Flow::Quit = flow {
                let _ = self.io.flush().await;
                break;
            }
        }
        if let Some(hop) = self.hop.take() {
            hop.quit().await;
        }
    }

    pub(super) fn greeting(&self) -> Reply {
        Reply {
            code: 220,
            enhanced: String::new(),
            lines: vec![format!(
                "{} ESMTP ticketgate",
                self.shared.config.server.hostname
            )],
        }
    }

    /// Queues a reply; a refusal gets its log line here, with its reason.
    pub(super) fn reply(&mut self, reply: Reply) {
        if let Some(reason) = reply.refusal_reason() {
            self.log_refusal(reason, &reply);
        }
        self.reply_logged(reply);
    }

    fn log_refusal(&mut self, reason: crate::reason::ReasonCode, reply: &Reply) {
        self.refusals_logged = self.refusals_logged.saturating_add(1);
        let client = self.client.addr.as_deref().unwrap_or("");
        match self.refusals_logged {
            n if n <= LOGGED_REFUSALS => tracing::info!(
                target: "ticketgate::refusal",
                session = %self.id, client, reason = reason.as_str(),
                reply = %reply.summary(), "refused"
            ),
            n if n == LOGGED_REFUSALS + 1 => tracing::info!(
                target: "ticketgate::refusal",
                session = %self.id, client, logged = LOGGED_REFUSALS,
                "further refusals of this session are not logged"
            ),
            _ => {}
        }
    }

    /// Queues a reply whose message summary line already told the logs.
    pub(super) fn reply_logged(&mut self, reply: Reply) {
        self.io.queue(reply.to_wire().as_bytes());
    }

    fn in_transaction(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// Reads the next command, racing the read against the session's time
    /// budget, the server's shutdown and the listener's need for our slot.
    async fn next_line(&mut self) -> Next {
        self.load.idle();
        let next = self.wait_for_line().await;
        self.load.busy();
        next
    }

    async fn wait_for_line(&mut self) -> Next {
        loop {
            match *self.phase.borrow() {
                Phase::Closing => return Next::Stop(Some(shutting_down())),
                // Draining: a session between transactions has nothing to
                // finish, so it is told to come back now.
                Phase::Draining if !self.in_transaction() && !self.io.has_buffered_input() => {
                    return Next::Stop(Some(shutting_down()));
                }
                _ => {}
            }
            if self.deadline <= tokio::time::Instant::now() {
                return Next::Stop(Some(session_expired()));
            }
            let deadline = self.line_deadline();
            tokio::select! {
                read = self.io.read_line(MAX_COMMAND_LINE, deadline) => {
                    return match read {
                        Ok(Line::Complete(line)) => Next::Line(line),
                        Ok(Line::TooLong) => Next::TooLong,
                        Err(ReadError::Timeout) => Next::Stop(Some(self.timed_out("a command"))),
                        Err(ReadError::Closed | ReadError::Io(_)) => Next::Stop(None),
                    };
                }
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        return Next::Stop(Some(shutting_down()));
                    }
                }
                () = self.load.evicted(), if !self.io.has_buffered_input() => {
                    tracing::info!(session = %self.id, "idle session closed for a new client");
                    return Next::Stop(Some(Reply::new(421, "4.7.0", "Too many connections, closing idle session")));
                }
            }
        }
    }

    /// The whole command line must arrive by then: the idle timeout (short
    /// under connection pressure), never past the session's deadline.
    fn line_deadline(&self) -> tokio::time::Instant {
        let limits = &self.shared.config.limits;
        let idle = self
            .load
            .idle_timeout(limits.command_timeout(), limits.stress_idle_timeout());
        (tokio::time::Instant::now() + idle).min(self.deadline)
    }

    /// The reply for a read that ran out of time waiting for `what`.
    pub(super) fn timed_out(&self, what: &str) -> Reply {
        if self.deadline <= tokio::time::Instant::now() {
            session_expired()
        } else {
            Reply::new(421, "4.4.2", format!("Timeout waiting for {what}, closing"))
        }
    }
}

fn session_expired() -> Reply {
    Reply::new(421, "4.4.2", "Session time limit exceeded, closing")
}

pub(super) fn shutting_down() -> Reply {
    Reply::new(421, "4.3.2", "Service shutting down, try again later")
}
