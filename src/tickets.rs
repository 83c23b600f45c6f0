//! `ticketgate tickets`: a client of the server's control socket.

use std::path::PathBuf;

use ticketgate::config::Config;
use ticketgate::control::{self, Request, Response};
use ticketgate::ticket::Ticket;

use crate::TicketsArgs;

/// Sends one request to the server; `Err` is what to tell the user.
pub fn run(args: TicketsArgs) -> Result<(), String> {
    let socket = socket_path(&args)?;
    let op = args.command;
    let by = args.actor.or_else(|| std::env::var("USER").ok());
    let request = Request { op, actor: by };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match runtime
        .block_on(control::call(&socket, &request))
        .map_err(|e| e.to_string())?
    {
        Response::Error { error } => Err(error),
        response => {
            print(&response, args.json);
            Ok(())
        }
    }
}

fn socket_path(args: &TicketsArgs) -> Result<PathBuf, String> {
    if let Some(p) = &args.control {
        return Ok(p.clone());
    }
    let config = args
        .config
        .as_ref()
        .ok_or("give --control PATH or --config FILE to find the server")?;
    Config::load(config)
        .map(|c| c.control_path())
        .map_err(|e| e.to_string())
}

fn print(response: &Response, json: bool) {
    match response {
        Response::Tickets { tickets } if json => println!(
            "{}",
            serde_json::to_string_pretty(tickets).unwrap_or_default()
        ),
        Response::Ticket { ticket } if json => println!(
            "{}",
            serde_json::to_string_pretty(ticket).unwrap_or_default()
        ),
        Response::Tickets { tickets } => {
            for t in tickets {
                println!(
                    "{:<18} {:<9} {:<14} {:<28} {}",
                    t.id,
                    t.status.as_str(),
                    t.helpdesk,
                    t.queue,
                    t.subject
                );
            }
        }
        Response::Ticket { ticket } => print_ticket(ticket),
        // Told by the caller, with the exit code.
        Response::Error { .. } => {}
    }
}

fn print_ticket(t: &Ticket) {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!("{}  [{}]  {}", t.id, t.status.as_str(), t.subject);
    println!("  helpdesk:  {} / {}", t.helpdesk, t.queue);
    println!(
        "  procedure: {}   sector: {}",
        opt(&t.procedure),
        opt(&t.sector)
    );
    println!(
        "  urgency:   {}   contract: {}",
        t.urgency.as_str(),
        opt(&t.contract)
    );
    println!(
        "  severity:  {}   due: {}",
        opt(&t.severity),
        opt(&t.due_at)
    );
    println!(
        "  requester: {}   assignee: {}",
        t.requester,
        opt(&t.assignee)
    );
    if let Some(v) = &t.void {
        println!(
            "  void:      {} since {} (was {})",
            v.reason,
            v.at.rfc3339(),
            v.previous.as_str()
        );
    }
    for m in &t.messages {
        println!(
            "  message  {} {} {:?} {}",
            m.received_at,
            m.action.as_str(),
            m.from,
            m.subject
        );
    }
    for r in &t.replies {
        let why = r.reason.map(|c| format!(": {c}")).unwrap_or_default();
        println!(
            "  reply    {:?} to {} ({}{why})",
            r.kind,
            r.to,
            r.state.as_str()
        );
    }
    for h in &t.history {
        println!("  history  {} {}: {}", h.at, h.by, h.event);
    }
}
