//! `ticketgate tickets`: a client of the server's control socket.

use std::io::Write;
use std::path::PathBuf;

use ticketgate::config::{Config, ConfigError};
use ticketgate::control::{self, ClientError, Request, Response};
use ticketgate::ticket::Ticket;

use crate::TicketsArgs;

/// Why `ticketgate tickets` did not do what was asked: what to tell the user.
#[derive(Debug, thiserror::Error)]
pub enum TicketsError {
    #[error(
        "no server found: no data/control.sock here or in a parent directory, no {PACKAGED_SOCKET}; give --control PATH or --config FILE, or set {CONTROL_ENV}"
    )]
    NoServer,
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Call(#[from] ClientError),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    /// The server refused the request; its words.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request to the server and prints its answer.
pub fn run(args: TicketsArgs) -> Result<(), TicketsError> {
    let socket = socket_path(&args)?;
    let op = args.command;
    let by = args.actor.or_else(|| std::env::var("USER").ok());
    let request = Request { op, actor: by };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TicketsError::Runtime)?;
    match runtime.block_on(control::call(&socket, &request))? {
        Response::Error { error } => Err(TicketsError::Refused(error)),
        response => {
            let mut out = std::io::stdout().lock();
            match print(&mut out, &response, args.json).and_then(|()| out.flush()) {
                // A reader that stops reading (`| head`) ends it quietly.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(TicketsError::Output(e))
                }
                _ => Ok(()),
            }
        }
    }
}

/// The environment variable that names the control socket.
pub const CONTROL_ENV: &str = "TICKETGATE_CONTROL";

/// Where the packaged server's socket is (the shipped config's data_dir).
const PACKAGED_SOCKET: &str = "/var/lib/ticketgate/control.sock";

/// The control socket: `--control`, else the one `--config` names, else
/// `$TICKETGATE_CONTROL`, else the first that exists of `data/control.sock`
/// in this directory or a parent (the trial run of `scripts/run.sh`) and
/// the packaged server's.
fn socket_path(args: &TicketsArgs) -> Result<PathBuf, TicketsError> {
    if let Some(p) = &args.control {
        return Ok(p.clone());
    }
    if let Some(config) = &args.config {
        return Ok(Config::load(config)?.control_path());
    }
    if let Some(p) = std::env::var_os(CONTROL_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    discoverable_sockets()
        .into_iter()
        .find(|p| p.exists())
        .ok_or(TicketsError::NoServer)
}

fn discoverable_sockets() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        out.extend(cwd.ancestors().map(|d| d.join("data").join("control.sock")));
    }
    out.push(PathBuf::from(PACKAGED_SOCKET));
    out
}

fn print(out: &mut dyn Write, response: &Response, json: bool) -> std::io::Result<()> {
    match response {
        Response::Tickets { tickets } if json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(tickets).unwrap_or_default()
        )?,
        Response::Ticket { ticket } if json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(ticket).unwrap_or_default()
        )?,
        Response::Tickets { tickets } => {
            for t in tickets {
                writeln!(
                    out,
                    "{:<18} {:<9} {:<14} {:<28} {}",
                    t.id,
                    t.status.as_str(),
                    t.helpdesk,
                    t.queue,
                    t.subject
                )?;
            }
        }
        Response::Ticket { ticket } => print_ticket(out, ticket)?,
        // Told by the caller, with the exit code.
        Response::Error { .. } => {}
    }
    Ok(())
}

fn print_ticket(out: &mut dyn Write, t: &Ticket) -> std::io::Result<()> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    writeln!(out, "{}  [{}]  {}", t.id, t.status.as_str(), t.subject)?;
    writeln!(out, "  helpdesk:  {} / {}", t.helpdesk, t.queue)?;
    writeln!(
        out,
        "  procedure: {}   sector: {}",
        opt(&t.procedure),
        opt(&t.sector)
    )?;
    writeln!(
        out,
        "  urgency:   {}   contract: {}",
        t.urgency.as_str(),
        opt(&t.contract)
    )?;
    writeln!(
        out,
        "  severity:  {}   due: {}",
        opt(&t.severity),
        opt(&t.due_at.map(|d| d.to_string()))
    )?;
    writeln!(
        out,
        "  requester: {}   assignee: {}",
        t.requester,
        opt(&t.assignee)
    )?;
    if let Some(v) = &t.void {
        writeln!(
            out,
            "  void:      {} since {} (was {})",
            v.reason,
            v.at,
            v.previous.as_str()
        )?;
    }
    print_trail(out, t)
}

/// What happened on the ticket: its messages, replies and history.
fn print_trail(out: &mut dyn Write, t: &Ticket) -> std::io::Result<()> {
    for m in &t.messages {
        let (at, action) = (m.received_at, m.action.as_str());
        writeln!(out, "  message  {at} {action} {:?} {}", m.from, m.subject)?;
    }
    for r in &t.replies {
        let why = r.reason.map(|c| format!(": {c}")).unwrap_or_default();
        writeln!(
            out,
            "  reply    {:?} to {} ({}{why})",
            r.kind,
            r.to,
            r.state.as_str()
        )?;
    }
    for h in &t.history {
        writeln!(out, "  history  {} {}: {}", h.at, h.by, h.event)?;
    }
    Ok(())
}
