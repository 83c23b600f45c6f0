//! The gate under test, in-process: a ticketgate started by the library's
//! composition root on 127.0.0.1:0, either with a minimal config
//! ([`start_gate`]) or with the shipped helpdesks and a real store
//! ([`start_desk_gate`], [`desk_gate_with_sinks`]), and stopped by the test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ticketgate::app::Running as App;
use ticketgate::config::Config;

use super::repo_path;
use super::sink::{Sink, SinkBehaviour};

/// A ticketgate instance running in this test process, started by the
/// library's composition root (`ticketgate::app::start`), as `serve` is.
pub struct Gate {
    pub addr: SocketAddr,
    /// The milter listener, when the config has `[milter] listen`.
    pub milter: Option<SocketAddr>,
    pub data_dir: tempfile::TempDir,
    app: Option<App>,
}

impl Gate {
    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), app.stop()).await;
        }
    }

    /// Starts shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(app) = &self.app {
            app.begin_stop();
        }
    }

    /// The running service (store, outbox, config).
    pub fn service(&self) -> std::sync::Arc<ticketgate::desk::Service> {
        self.app.as_ref().expect("running").service().clone()
    }
}

/// A minimal config; `extra` is appended (e.g. a [limits] table).
pub fn test_config(next_hop: &str, data_dir: &Path, extra: &str) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nhostname = \"gate.test\"\nnext_hop = \"{next_hop}\"\ndata_dir = \"{}\"\n{extra}\n",
        data_dir.display()
    );
    Config::parse(Path::new("test.toml"), &text).expect("test config parses")
}

pub async fn start_gate(next_hop: &str, extra: &str) -> Gate {
    let data_dir = tempfile::tempdir().unwrap();
    let config = test_config(next_hop, data_dir.path(), extra);
    start_gate_with(config, data_dir).await
}

pub async fn start_gate_with(config: Config, data_dir: tempfile::TempDir) -> Gate {
    let app = ticketgate::app::start(config)
        .await
        .expect("ticketgate starts");
    Gate {
        addr: app.smtp_addr().unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
        milter: app.milter_tcp_addr(),
        data_dir,
        app: Some(app),
    }
}

/// A ticketgate with the shipped helpdesks, a real store under `data_dir`,
/// and `relay` as reply relay.
pub struct DeskGate {
    pub gate: Gate,
    pub desks: std::sync::Arc<ticketgate::desk::Service>,
    pub control: PathBuf,
}

pub async fn start_desk_gate(
    next_hop: &str,
    relay: Option<SocketAddr>,
    data_dir: tempfile::TempDir,
) -> DeskGate {
    start_desk_gate_with(next_hop, relay, data_dir, |_| {}).await
}

/// A desk gate between a next-hop sink and a reply-relay sink, the setup
/// most helpdesk tests want: `(gate, hop, relay)`.
pub async fn desk_gate_with_sinks(tweak: impl FnOnce(&mut Config)) -> (DeskGate, Sink, Sink) {
    let hop = Sink::start(SinkBehaviour::default()).await;
    let relay = Sink::start(SinkBehaviour::default()).await;
    let dg = start_desk_gate_with(
        &hop.addr.to_string(),
        Some(relay.addr),
        tempfile::tempdir().unwrap(),
        tweak,
    )
    .await;
    (dg, hop, relay)
}

pub async fn start_desk_gate_with(
    next_hop: &str,
    relay: Option<SocketAddr>,
    data_dir: tempfile::TempDir,
    tweak: impl FnOnce(&mut Config),
) -> DeskGate {
    let mut config =
        Config::load(&repo_path("config/ticketgate.toml")).expect("shipped config loads");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.next_hop = ticketgate::config::NextHop::try_from(next_hop.to_string()).unwrap();
    config.server.data_dir = data_dir.path().to_path_buf();
    config.server.reply_relay = relay.map(ticketgate::config::ReplyRelay::Smtp);
    config.server.hostname = "gate.test".into();
    config.outbox.retry_initial_secs = 1;
    // The shipped port is one for the whole machine: a test that wants the
    // endpoint gives its own.
    config.metrics.listen = None;
    let control = data_dir.path().join("control.sock");
    config.server.control = Some(control.clone());
    tweak(&mut config);
    let gate = start_gate_with(config, data_dir).await;
    DeskGate {
        desks: gate.service(),
        gate,
        control,
    }
}
