//! What the process does on signals, for `ticketgate serve`: SIGTERM and
//! SIGINT stop it (drain, then exit), SIGHUP reloads the helpdesks and
//! templates, SIGUSR1 logs the counters (also every `log_interval_secs`).

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{Running, StartError};
use crate::config::Config;

/// Starts ticketgate and serves until SIGTERM or SIGINT. The handlers
/// are installed before the listeners bind: a signal sent as soon as the
/// port answers is handled, not fatal.
pub async fn serve(config: Config, config_path: &Path) -> Result<(), StartError> {
    let log_interval = config.metrics.log_interval_secs;
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let running = super::start(config).await?;
    let counters = tokio::spawn(log_counters(log_interval));
    match handlers {
        (Ok(mut term), Ok(mut int), Ok(hup)) => tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = reload_on_hangup(hup, config_path, &running) => {}
        },
        _ => {
            tracing::error!("cannot install signal handlers; stop with kill -9");
            std::future::pending::<()>().await;
        }
    }
    counters.abort();
    running.stop().await;
    Ok(())
}

/// SIGHUP re-reads the config file and swaps in its helpdesks and reply
/// templates; sessions go on. A file that does not check keeps the running
/// configuration. Other settings (listen, limits, ...) need a restart.
async fn reload_on_hangup(mut hup: Signal, path: &Path, running: &Running) {
    while hup.recv().await.is_some() {
        match running.reload(path) {
            Ok(count) => {
                tracing::info!(config = %path.display(), helpdesks = count, "SIGHUP: helpdesks and templates reloaded")
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reload refused, keeping the running configuration")
            }
        }
    }
    std::future::pending().await
}

/// Logs the counters every `interval_secs` (0: never) and on SIGUSR1.
async fn log_counters(interval_secs: u64) {
    let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
        tracing::error!("cannot install the SIGUSR1 handler");
        return;
    };
    let period = Duration::from_secs(interval_secs.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = tick.tick(), if interval_secs > 0 => {}
            _ = usr1.recv() => {}
        }
        crate::metrics::METRICS.log();
    }
}
