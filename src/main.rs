//! The `ticketgate` command: serve, check-config, try, tickets.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ticketgate::config::{Config, MilterAddr, NextHop, ReplyRelay, ValueError};
use ticketgate::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "ticketgate",
    version,
    about = "SMTP filter that opens helpdesk tickets in flight"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SMTP filter.
    Serve(ServeArgs),
    /// Check a config file; errors name the file, line and key.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// What serve would do with mail from files (.eml, Maildir, mbox):
    /// parse, route and classify, no store, nothing sent.
    Try {
        #[arg(long)]
        config: PathBuf,
        /// Envelope recipient of every message (default: each message's
        /// X-Original-To or Delivered-To, else To and Cc).
        #[arg(long = "rcpt")]
        rcpts: Vec<String>,
        /// One JSON object per message instead of text.
        #[arg(long)]
        json: bool,
        /// .eml files, Maildir folders, folders of messages, mbox files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Look at and work on tickets, through the running server.
    Tickets(TicketsArgs),
}

#[derive(clap::Args)]
struct TicketsArgs {
    /// Config file, to find the control socket.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Control socket path (overrides the config).
    #[arg(long, global = true)]
    control: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Who is acting, for the ticket's history (default: $USER).
    #[arg(long = "as", global = true)]
    actor: Option<String>,
    #[command(subcommand)]
    command: ticketgate::control::Op,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long)]
    config: PathBuf,
    /// SMTP listen address (overrides server.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// host:port of the next SMTP hop, or maildir:DIR.
    #[arg(long)]
    next_hop: Option<String>,
    /// ip:port of the SMTP relay for automatic replies, or maildir:DIR.
    #[arg(long)]
    reply_relay: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    control: Option<PathBuf>,
    /// Milter listener for Postfix's smtpd_milters: ip:port or unix:PATH
    /// (overrides milter.listen).
    #[arg(long)]
    milter: Option<String>,
    /// Metrics and health endpoint: ip:port, or off (overrides
    /// metrics.listen).
    #[arg(long)]
    metrics: Option<String>,
    /// Serve the milter only, no SMTP listener (milter.only).
    #[arg(long)]
    milter_only: bool,
    /// Classify and log only; change nothing.
    #[arg(long)]
    shadow: bool,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

mod tickets;
mod try_mail;

/// Why a command failed: what it says on stderr, and its exit code.
enum Failure {
    /// The config or an option is wrong (exit 2); the message names the
    /// file, line and key, and is printed as it is.
    Config(String),
    /// `serve` could not start or stopped on an error (exit 1).
    Serve(String),
    /// `tickets` could not do what was asked (exit 1).
    Tickets(tickets::TicketsError),
    /// `try` could not read its config or its mail (exit 1; a config
    /// that does not load is `Config`).
    Try(try_mail::TryError),
}

/// A command-line option of `serve` that cannot be used.
#[derive(Debug, thiserror::Error)]
enum OptionError {
    #[error("--next-hop: {0}")]
    NextHop(ValueError),
    #[error("--reply-relay: {0}")]
    ReplyRelay(ValueError),
    #[error("--milter: {0}")]
    Milter(ValueError),
    #[error("--metrics: `{0}` is neither ip:port nor off")]
    Metrics(String),
    #[error("--milter-only needs --milter ADDR or milter.listen")]
    MilterOnlyWithoutListener,
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Serve(_) | Failure::Tickets(_) | Failure::Try(_) => 1,
        }
    }

    fn text(&self) -> String {
        match self {
            Failure::Config(e) => e.clone(),
            Failure::Serve(e) => format!("ticketgate: {e}"),
            Failure::Tickets(e) => format!("ticketgate tickets: {e}"),
            Failure::Try(e) => format!("ticketgate try: {e}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve(args) => serve(args),
        Command::Try {
            config,
            rcpts,
            json,
            paths,
        } => try_mail::run(try_mail::TryRequest {
            config,
            paths,
            rcpts,
            json,
        })
        .map_err(|e| match e {
            try_mail::TryError::Config(e) => Failure::Config(e.to_string()),
            other => Failure::Try(other),
        }),
        Command::Tickets(args) => tickets::run(args).map_err(Failure::Tickets),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.text());
            ExitCode::from(failure.code())
        }
    }
}

fn check_config(path: &std::path::Path) -> Result<(), Failure> {
    let (config, _) =
        ticketgate::app::load_config(path).map_err(|e| Failure::Config(e.to_string()))?;
    let queues: usize = config.helpdesks.iter().map(|h| h.queues.len()).sum();
    println!(
        "{}: ok ({} helpdesks, {} addresses)",
        path.display(),
        config.helpdesks.len(),
        queues
    );
    Ok(())
}

fn apply_overrides(config: &mut Config, args: &ServeArgs) -> Result<(), OptionError> {
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(hop) = &args.next_hop {
        config.server.next_hop = NextHop::try_from(hop.clone()).map_err(OptionError::NextHop)?;
    }
    if let Some(relay) = &args.reply_relay {
        config.server.reply_relay =
            Some(ReplyRelay::try_from(relay.clone()).map_err(OptionError::ReplyRelay)?);
    }
    if let Some(dir) = &args.data_dir {
        config.server.data_dir = dir.clone();
    }
    if let Some(control) = &args.control {
        config.server.control = Some(control.clone());
    }
    if args.shadow {
        config.server.shadow = true;
    }
    if let Some(milter) = &args.milter {
        config.milter.listen =
            Some(MilterAddr::try_from(milter.clone()).map_err(OptionError::Milter)?);
    }
    if let Some(metrics) = &args.metrics {
        config.metrics.listen = match metrics.as_str() {
            "off" => None,
            addr => Some(
                addr.parse()
                    .map_err(|_| OptionError::Metrics(metrics.clone()))?,
            ),
        };
    }
    if args.milter_only {
        config.milter.only = true;
    }
    if config.milter.only && config.milter.listen.is_none() {
        return Err(OptionError::MilterOnlyWithoutListener);
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    logging::init(args.log_format);
    let mut config = Config::load(&args.config).map_err(|e| Failure::Config(e.to_string()))?;
    apply_overrides(&mut config, &args).map_err(|e| Failure::Config(e.to_string()))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Serve(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(ticketgate::app::signals::serve(config, &args.config))
        .map_err(|e| {
            tracing::error!("{e}");
            Failure::Serve(e.to_string())
        })
}
