//! The `ticketgate` command: serve, check-config, tickets.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use ticketgate::config::{Config, MilterAddr, NextHop};
use ticketgate::lifecycle::Helpdesks;
use ticketgate::logging::{self, LogFormat};
use ticketgate::milter::MilterListener;
use ticketgate::outbox::Outbox;
use ticketgate::outbox::msgid::Signer;
use ticketgate::outbox::render::Templates;
use ticketgate::pipeline::Pipeline;
use ticketgate::server::{Server, Shared};
use ticketgate::store::TicketStore;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve(args) => serve(args),
        Command::Tickets(args) => tickets::run(args),
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let checked = Config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|c| Templates::load(&c.templates_dir()).map(|_| c));
    match checked {
        Ok(config) => {
            let queues: usize = config.helpdesks.iter().map(|h| h.queues.len()).sum();
            println!(
                "{}: ok ({} helpdesks, {} addresses)",
                path.display(),
                config.helpdesks.len(),
                queues
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
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

fn serve(args: ServeArgs) -> ExitCode {
    logging::init(args.log_format);
    let mut config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = apply_overrides(&mut config, &args) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, args.config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ticketgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, config_path: PathBuf) -> Result<(), String> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("data dir {}: {e}", data_dir.display()))?;
    // No session runs yet: every spool file is a leftover of a kill.
    let leftovers = ticketgate::spool::remove_leftovers(&data_dir.join("spool"));
    if leftovers > 0 {
        tracing::info!(
            files = leftovers,
            "removed spool files left by an earlier run"
        );
    }
    let store = TicketStore::open(&data_dir)
        .map_err(|e| format!("ticket store in {}: {e}", data_dir.display()))?;
    tokio::spawn(sweep_blobs(store.clone(), config.store.clone()));
    let signer = Signer::load_or_create(&data_dir, &config.server.hostname)
        .map_err(|e| format!("message-id key in {}: {e}", data_dir.display()))?;
    let templates = Templates::load(&config.templates_dir())?;
    let outbox = Outbox::start(
        store.clone(),
        config.server.reply_relay,
        &config.server.hostname,
        config.outbox.clone(),
    );
    let control_path = config.control_path();
    let desks = Arc::new(Helpdesks::new(
        config.clone(),
        store,
        outbox,
        signer,
        templates,
    ));
    let _control = ticketgate::control::start(&control_path, desks.clone())
        .map_err(|e| format!("control socket {}: {e}", control_path.display()))?;
    tokio::spawn(reload_on_hangup(config_path, desks.clone()));
    if let Some(addr) = config.metrics.listen {
        ticketgate::metrics::serve(addr)
            .await
            .map_err(|e| format!("metrics endpoint {addr}: {e}"))?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
    }
    tokio::spawn(log_counters(config.metrics.log_interval_secs));
    let pipeline = Pipeline::new(desks);
    let shared = Arc::new(Shared { config, pipeline });
    let smtp = bind_smtp(&shared).await?;
    let milter = bind_milter(&shared).await?;
    // One signal stops both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let smtp = async {
        if let Some(server) = smtp {
            server.run(until_stopped()).await;
        }
    };
    let milter = async {
        if let Some(listener) = milter {
            listener.run(until_stopped()).await;
        }
    };
    tracing::info!("ticketgate ready");
    tokio::join!(smtp, milter);
    tracing::info!("ticketgate stopped");
    Ok(())
}

async fn bind_smtp(shared: &Arc<Shared>) -> Result<Option<Server>, String> {
    let config = &shared.config;
    if config.milter.only {
        return Ok(None);
    }
    let listen = config.server.listen;
    let server = Server::bind(shared.clone())
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let next_hop = config.server.next_hop.to_string();
    tracing::info!(listen = %addr, next_hop, "SMTP listener ready");
    Ok(Some(server))
}

async fn bind_milter(shared: &Arc<Shared>) -> Result<Option<MilterListener>, String> {
    let Some(addr) = &shared.config.milter.listen else {
        return Ok(None);
    };
    let listener = MilterListener::bind(addr, shared.clone())
        .await
        .map_err(|e| format!("cannot listen for the milter on {addr}: {e}"))?;
    tracing::info!(listen = %listener.local_addr(), "milter listener ready");
    Ok(Some(listener))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with kill -9");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Removes blobs past their retention, at start and then periodically.
async fn sweep_blobs(store: TicketStore, config: ticketgate::config::StoreConfig) {
    let period = std::time::Duration::from_secs(u64::from(config.retention_sweep_hours) * 3600);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let store = store.clone();
        let retention = config.retention();
        let swept = tokio::task::spawn_blocking(move || {
            store.sweep_blobs(std::time::SystemTime::now(), retention)
        })
        .await;
        match swept {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "retention: removed old blobs"),
            Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed"),
            Err(e) => tracing::error!(error = %e, "retention sweep task failed"),
        }
    }
}

/// Logs the counters every `interval_secs` (0: never) and on SIGUSR1.
async fn log_counters(interval_secs: u64) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::error!("cannot install the SIGUSR1 handler");
        return;
    };
    let period = std::time::Duration::from_secs(interval_secs.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = tick.tick(), if interval_secs > 0 => {}
            _ = usr1.recv() => {}
        }
        ticketgate::metrics::METRICS.log();
    }
}

/// SIGHUP re-reads the config file and swaps in its helpdesks and reply
/// templates; sessions go on. A file that does not check keeps the running
/// configuration. Other settings (listen, limits, ...) need a restart.
async fn reload_on_hangup(path: PathBuf, desks: Arc<Helpdesks>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler: reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        let loaded = Config::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|c| Templates::load(&c.templates_dir()).map(|t| (c, t)));
        match loaded {
            Ok((config, templates)) => {
                let count = config.helpdesks.len();
                desks.reload(config.helpdesks, templates);
                tracing::info!(config = %path.display(), helpdesks = count, "SIGHUP: helpdesks and templates reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused, keeping the running configuration")
            }
        }
    }
}
