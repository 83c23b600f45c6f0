//! The composition root: everything `ticketgate serve` runs, started in one
//! place for `main` and for every test rig. [`start`] opens the store,
//! starts the outbox, the service, the control socket and the listeners
//! and returns a [`Running`]; [`Running::stop`] drains the listeners.

pub mod health;
pub mod signals;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ConfigError;
use crate::config::{Config, StoreConfig};
use crate::control::ControlListener;
use crate::desk::{Pipeline, Service};
use crate::milter::MilterListener;
use crate::outbox::Outbox;
use crate::outbox::msgid::Signer;
use crate::outbox::render::{TemplateError, Templates};
use crate::server::Shared;
use crate::smtp::SmtpListener;
use crate::store::{StoreError, TicketStore};

/// Why the service could not start; each names what it was doing.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ticket store in {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("message-id key in {path}: {source}")]
    Signer {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Templates(#[from] TemplateError),
    #[error("control socket {path}: {source}")]
    Control {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for the milter on {addr}: {source}")]
    Milter {
        addr: String,
        source: std::io::Error,
    },
}

/// A started ticketgate: its addresses, its service, and the handle that
/// stops it.
pub struct Running {
    smtp: Option<SocketAddr>,
    milter: Option<String>,
    milter_tcp: Option<SocketAddr>,
    control: PathBuf,
    service: Arc<Service>,
    stop: watch::Sender<bool>,
    listeners: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Starts everything `config` asks for, in the order each part needs the
/// one before: store, outbox, service, control socket, metrics, listeners.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    // No session runs yet: every spool file is a leftover of a kill.
    let leftovers = crate::spool::remove_leftovers(&data_dir.join("spool"));
    if leftovers > 0 {
        tracing::info!(
            files = leftovers,
            "removed spool files left by an earlier run"
        );
    }
    let store = TicketStore::open(&data_dir).map_err(|source| StartError::Store {
        path: data_dir.clone(),
        source,
    })?;
    let mut background = vec![tokio::spawn(sweep_blobs(
        store.clone(),
        config.store.clone(),
    ))];
    let service = Arc::new(start_service(&config, store).await?);
    let control = config.control_path();
    let control_listener =
        crate::control::bind(&control, service.clone()).map_err(|source| StartError::Control {
            path: control.clone(),
            source,
        })?;
    let health = Arc::new(health::Health::new(config.clone(), service.store().clone()));
    watch_health(&config, &health, &service, &mut background).await?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        pipeline: Pipeline::new(service.clone()),
    });
    let smtp = bind_smtp(&shared).await?;
    let milter = bind_milter(&shared).await?;
    let (stop, stopped) = watch::channel(false);
    let running = Running {
        smtp: smtp.as_ref().and_then(SmtpListener::tcp_addr),
        milter: milter.as_ref().map(MilterListener::local_addr),
        milter_tcp: milter.as_ref().and_then(MilterListener::tcp_addr),
        control,
        service,
        stop,
        listeners: tokio::spawn(serve_listeners(smtp, milter, control_listener, stopped)),
        background,
    };
    tracing::info!("ticketgate ready");
    Ok(running)
}

/// The settings the alert rules compare with, the sampler of the
/// readiness, backlog and ticket gauges, and the endpoint that serves them.
async fn watch_health(
    config: &Config,
    health: &Arc<health::Health>,
    service: &Arc<Service>,
    background: &mut Vec<JoinHandle<()>>,
) -> Result<(), StartError> {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &crate::metrics::METRICS;
    m.data_timeout_secs
        .store(config.limits.data_timeout_secs, Relaxed);
    m.settle_horizon_secs
        .store(config.outbox.settle_horizon_secs, Relaxed);
    let sampler = health::sample(health.clone(), service.clone());
    background.push(tokio::spawn(sampler));
    if let Some(addr) = config.metrics.listen {
        let task = crate::metrics::serve(addr, health.clone())
            .await
            .map_err(|source| StartError::Metrics { addr, source })?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics, also /healthz and /readyz");
        background.push(task);
    }
    Ok(())
}

/// The signer, templates, outbox and the service over them.
async fn start_service(config: &Arc<Config>, store: TicketStore) -> Result<Service, StartError> {
    let data_dir = &config.server.data_dir;
    let signer = Signer::load_or_create(data_dir, &config.server.hostname).map_err(|source| {
        StartError::Signer {
            path: data_dir.clone(),
            source,
        }
    })?;
    let templates = Templates::load(&config.templates_dir())?;
    let outbox = Outbox::start(
        store.clone(),
        config.server.reply_relay.clone(),
        &config.server.hostname,
        config.outbox.clone(),
    )
    .await;
    Ok(Service::new(
        config.clone(),
        store,
        outbox,
        signer,
        templates,
    ))
}

async fn bind_smtp(shared: &Arc<Shared>) -> Result<Option<SmtpListener>, StartError> {
    let config = &shared.config;
    if config.milter.only {
        return Ok(None);
    }
    let addr = config.server.listen;
    let listener = crate::smtp::bind(shared.clone())
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let next_hop = config.server.next_hop.to_string();
    tracing::info!(listen = %listener.local_addr(), next_hop, "SMTP listener ready");
    Ok(Some(listener))
}

async fn bind_milter(shared: &Arc<Shared>) -> Result<Option<MilterListener>, StartError> {
    let Some(addr) = &shared.config.milter.listen else {
        return Ok(None);
    };
    let listener = crate::milter::bind(addr, shared.clone())
        .await
        .map_err(|source| StartError::Milter {
            addr: addr.to_string(),
            source,
        })?;
    tracing::info!(listen = %listener.local_addr(), "milter listener ready");
    Ok(Some(listener))
}

/// Serves the listeners until the stop signal, then drains them.
async fn serve_listeners(
    smtp: Option<SmtpListener>,
    milter: Option<MilterListener>,
    control: ControlListener,
    stopped: watch::Receiver<bool>,
) {
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
    tokio::join!(smtp, milter, control.run(until_stopped()));
    tracing::info!("ticketgate stopped");
}

impl Running {
    /// The SMTP listener's address (`None` with `milter.only`).
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp
    }

    /// The milter listener, as Postfix's `smtpd_milters` names it.
    pub fn milter_addr(&self) -> Option<&str> {
        self.milter.as_deref()
    }

    /// The milter listener's TCP address, when it listens on one.
    pub fn milter_tcp_addr(&self) -> Option<SocketAddr> {
        self.milter_tcp
    }

    pub fn control_path(&self) -> &std::path::Path {
        &self.control
    }

    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Swaps in the helpdesks and templates of `path` (SIGHUP); a file
    /// that does not check leaves the running configuration as it is.
    pub fn reload(&self, path: &std::path::Path) -> Result<usize, ReloadError> {
        let (config, templates) = load_config(path)?;
        let helpdesks = config.helpdesks;
        let count = helpdesks.len();
        self.service.reload(helpdesks, templates);
        Ok(count)
    }

    /// Starts shutdown without waiting for it: no new connections,
    /// sessions finish their transaction.
    pub fn begin_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the listeners have stopped (after [`Running::begin_stop`]).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.listeners).await;
    }

    /// Stops the listeners, waits for their sessions (within the grace
    /// period), then the background tasks.
    pub async fn stop(mut self) {
        self.begin_stop();
        self.stopped().await;
        for task in &self.background {
            task.abort();
        }
    }
}

/// Why a config (with its templates) cannot be used: a reload is refused,
/// `check-config` says so.
#[derive(Debug, Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Templates(#[from] TemplateError),
}

/// Loads a config file and the templates it names, as a reload and
/// `check-config` do.
pub fn load_config(path: &std::path::Path) -> Result<(Config, Templates), ReloadError> {
    let config = Config::load(path)?;
    let templates = Templates::load(&config.templates_dir())?;
    Ok((config, templates))
}

/// Removes blobs past their retention, at start and then periodically.
async fn sweep_blobs(store: TicketStore, config: StoreConfig) {
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
