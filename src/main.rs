//! The `ticketgate` command: serve, check-config, tickets.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ticketgate::config::{Config, MilterAddr, NextHop};
use ticketgate::logging::{self, LogFormat};
use ticketgate::outbox::render::Templates;

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
    #[arg(long)]
    reply_relay: Option<std::net::SocketAddr>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    control: Option<PathBuf>,
    /// Milter listener for Postfix's smtpd_milters: ip:port or unix:PATH
    /// (overrides milter.listen).
    #[arg(long)]
    milter: Option<String>,
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

/// Why a command failed: what it says on stderr, and its exit code.
enum Failure {
    /// The config or an option is wrong (exit 2); the message names the
    /// file, line and key, and is printed as it is.
    Config(String),
    /// `serve` could not start or stopped on an error (exit 1).
    Serve(String),
    /// `tickets` could not do what was asked (exit 1).
    Tickets(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Serve(_) | Failure::Tickets(_) => 1,
        }
    }

    fn text(&self) -> String {
        match self {
            Failure::Config(e) => e.clone(),
            Failure::Serve(e) => format!("ticketgate: {e}"),
            Failure::Tickets(e) => format!("ticketgate tickets: {e}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve(args) => serve(args),
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
    let config = Config::load(path).map_err(|e| Failure::Config(e.to_string()))?;
    Templates::load(&config.templates_dir()).map_err(|e| Failure::Config(e.to_string()))?;
    let queues: usize = config.helpdesks.iter().map(|h| h.queues.len()).sum();
    println!(
        "{}: ok ({} helpdesks, {} addresses)",
        path.display(),
        config.helpdesks.len(),
        queues
    );
    Ok(())
}

fn apply_overrides(config: &mut Config, args: &ServeArgs) -> Result<(), String> {
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(hop) = &args.next_hop {
        config.server.next_hop =
            NextHop::try_from(hop.clone()).map_err(|e| format!("--next-hop: {e}"))?;
    }
    if let Some(relay) = args.reply_relay {
        config.server.reply_relay = Some(relay);
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
            Some(MilterAddr::try_from(milter.clone()).map_err(|e| format!("--milter: {e}"))?);
    }
    if args.milter_only {
        config.milter.only = true;
    }
    if config.milter.only && config.milter.listen.is_none() {
        return Err("--milter-only needs --milter ADDR or milter.listen".into());
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), Failure> {
    logging::init(args.log_format);
    let mut config = Config::load(&args.config).map_err(|e| Failure::Config(e.to_string()))?;
    apply_overrides(&mut config, &args).map_err(Failure::Config)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::Serve(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(ticketgate::app::signals::serve(config, &args.config))
        .map_err(|e| {
            tracing::error!("{e}");
            Failure::Serve(e.to_string())
        })
}
