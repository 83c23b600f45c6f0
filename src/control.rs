//! The control socket: a Unix socket (mode 0600) speaking one JSON request
//! per line, one JSON answer per line. `ticketgate tickets` is its client,
//! so the running server stays the store's only owner.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::desk::Service;
use crate::desk::transitions::WorkgroupCommand;
use crate::server::{
    Bound, Front, Listener, Peer, SessionContext, SessionFuture, SessionLimits, Stream,
};
use crate::store::{LIST_PAGE, TicketStore};
use crate::ticket::{Category, Status, Ticket};

const MAX_REQUEST: u64 = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

/// One request: the operation and who asks (recorded in the history).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    #[serde(flatten)]
    pub op: Op,
    /// Who acts; not `by`, which `take --by` already uses.
    #[serde(default)]
    pub actor: Option<String>,
}

/// The operations, as sent over the socket and as `ticketgate tickets`
/// subcommands (one definition for both).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Subcommand)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Op {
    /// List tickets (void ones, whose mail was never delivered, only with
    /// --all or --status void).
    List {
        #[arg(long, value_enum)]
        status: Option<Status>,
        #[arg(long)]
        helpdesk: Option<String>,
        /// Include void tickets.
        #[arg(long)]
        #[serde(default)]
        all: bool,
    },
    /// Show one ticket.
    Show { id: String },
    /// Take a ticket in charge.
    Take {
        id: String,
        #[arg(long)]
        by: String,
    },
    /// Set the severity (sets the resolution deadline).
    Severity { id: String, level: String },
    /// Classify as incident or maintenance (Manutenzione Ordinaria).
    Classify {
        id: String,
        #[arg(value_enum)]
        category: Category,
    },
    /// Suspend with an information request mailed to the requester.
    Suspend {
        id: String,
        #[arg(long)]
        message: String,
    },
    /// Resume a suspended ticket.
    Resume { id: String },
    /// Close a ticket.
    Close { id: String },
    /// Reopen a closed ticket.
    Reopen { id: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Tickets { tickets: Vec<Ticket> },
    Ticket { ticket: Box<Ticket> },
    Error { error: String },
}

/// The control front end: one request per connection.
pub struct ControlFront {
    desks: Arc<Service>,
}

pub type ControlListener = Listener<ControlFront>;

/// Control connections served at once: the workgroup's commands are few,
/// and each is a short exchange.
const MAX_CONNECTIONS: usize = 32;

/// Binds the socket (mode 0600), replacing a stale one.
pub fn bind(path: &Path, desks: Arc<Service>) -> std::io::Result<ControlListener> {
    let limits = SessionLimits {
        max_connections: MAX_CONNECTIONS,
        stress_threshold_percent: 100,
        shutdown_grace: TIMEOUT,
        closing_wait: Duration::from_secs(1),
    };
    let bound = Bound::unix(path, 0o600)?;
    Ok(Listener::new(bound, limits, ControlFront { desks }))
}

impl Front for ControlFront {
    fn session(&self, stream: Stream, _peer: Peer, _context: SessionContext) -> SessionFuture {
        let desks = self.desks.clone();
        Box::pin(async move {
            if let Err(e) = serve_one(stream, &desks).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        })
    }

    fn counted(&self) -> bool {
        false
    }
}

async fn serve_one(stream: Stream, desks: &Arc<Service>) -> std::io::Result<()> {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r.take(MAX_REQUEST));
    let mut line = String::new();
    tokio::time::timeout(TIMEOUT, r.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => match answer(desks, request).await {
            Answer::Done(response) => response,
            Answer::List(filter) => {
                stream_list(&mut w, desks.store(), &filter).await?;
                return w.shutdown().await;
            }
        },
        Err(e) => Response::Error {
            error: format!("bad request: {e}"),
        },
    };
    let mut out =
        serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"error\":\"encoding\"}".to_vec());
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// What a request gets: an answer, or a listing written a page at a time.
enum Answer {
    Done(Response),
    List(ListFilter),
}

/// Dispatches one request; a workgroup command runs as one durable change
/// (`take --by` names who acts, the others the request's actor).
async fn answer(desks: &Service, request: Request) -> Answer {
    let by = request.actor.unwrap_or_else(|| "workgroup".into());
    let (id, by, command) = match request.op {
        Op::List {
            status,
            helpdesk,
            all,
        } => {
            return Answer::List(ListFilter {
                status,
                helpdesk,
                all,
            });
        }
        Op::Show { id } => return Answer::Done(show(desks.store(), &id).await),
        Op::Take { id, by: taker } => (id, taker.clone(), WorkgroupCommand::Take(taker)),
        Op::Severity { id, level } => (id, by, WorkgroupCommand::Severity(level)),
        Op::Classify { id, category } => (id, by, WorkgroupCommand::Classify(category)),
        Op::Suspend { id, message } => (id, by, WorkgroupCommand::Suspend(message)),
        Op::Resume { id } => (id, by, WorkgroupCommand::Resume),
        Op::Close { id } => (id, by, WorkgroupCommand::Close),
        Op::Reopen { id } => (id, by, WorkgroupCommand::Reopen),
    };
    Answer::Done(match desks.command(&id, &by, command).await {
        Ok(t) => Response::Ticket {
            ticket: Box::new(t),
        },
        Err(e) => Response::Error {
            error: e.to_string(),
        },
    })
}

async fn show(store: &TicketStore, id: &str) -> Response {
    match store.get(id).await {
        Ok(Some(t)) => Response::Ticket {
            ticket: Box::new(t),
        },
        Ok(None) => Response::Error {
            error: format!("no ticket {id}"),
        },
        Err(e) => Response::Error {
            error: e.to_string(),
        },
    }
}

/// What `list` shows.
struct ListFilter {
    status: Option<Status>,
    helpdesk: Option<String>,
    /// Void tickets too, without `--status void`.
    all: bool,
}

impl ListFilter {
    fn matches(&self, t: &Ticket) -> bool {
        let status = match self.status {
            Some(s) => t.status == s,
            None => self.all || t.status != Status::Void,
        };
        status
            && self
                .helpdesk
                .as_deref()
                .is_none_or(|h| t.helpdesk.eq_ignore_ascii_case(h))
    }
}

/// The `list` answer (`{"tickets":[...]}`, the line `Response::Tickets`
/// makes) written a page of tickets at a time: the server never holds a
/// large store whole (10,000 tickets made 27 MB of JSON and +140 MB of
/// memory at once).
async fn stream_list(
    w: &mut (impl AsyncWriteExt + Unpin),
    store: &TicketStore,
    filter: &ListFilter,
) -> std::io::Result<()> {
    let index = match store.ticket_index().await {
        Ok(index) => index,
        Err(e) => {
            let mut out = serde_json::to_vec(&Response::Error {
                error: e.to_string(),
            })?;
            out.push(b'\n');
            return w.write_all(&out).await;
        }
    };
    w.write_all(b"{\"tickets\":[").await?;
    let mut first = true;
    for page in index.chunks(LIST_PAGE) {
        // Once the answer has begun, an error can only cut it short: the
        // client then reports a bad answer rather than a partial list.
        let tickets = store
            .tickets_of(page)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut out = Vec::new();
        for t in tickets.iter().filter(|t| filter.matches(t)) {
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut out, t)?;
        }
        w.write_all(&out).await?;
    }
    w.write_all(b"]}\n").await
}

/// Why `ticketgate tickets` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {}: {source} (is ticketgate serve running?)", path.display())]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server did not answer in time")]
    Timeout,
    #[error("bad answer from the server: {0}")]
    BadAnswer(serde_json::Error),
}

/// Client side, for `ticketgate tickets`.
pub async fn call(path: &PathBuf, request: &Request) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| ClientError::Unreachable {
            path: path.clone(),
            source,
        })?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::from)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut answer = String::new();
    let mut r = BufReader::new(r.take(256 * 1024 * 1024));
    tokio::time::timeout(TIMEOUT, r.read_line(&mut answer))
        .await
        .map_err(|_| ClientError::Timeout)??;
    serde_json::from_str(&answer).map_err(ClientError::BadAnswer)
}
