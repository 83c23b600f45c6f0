//! The real binary as a child process, for what an in-process gate cannot
//! show: restarts, kill -9, signals, the command line. [`Running`] kills
//! and reaps the child when dropped, so a failing test leaves no server
//! behind.

use std::path::Path;
use std::time::Duration;

use super::repo_path;

/// A port free now and never handed out before in this test process: two
/// tests running side by side once got the same port, and the second
/// binary (which could not bind it) was mistaken for ready by talking to
/// the first.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A ticketgate process; killed (SIGKILL) and reaped when dropped, so a
/// failing assertion leaves no server behind.
pub struct Running(std::process::Child);

impl Running {
    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// The real binary with the shipped config, for restart and kill -9 tests.
pub fn spawn_binary(port: u16, hop: &str, data: &Path, relay: Option<u16>) -> Running {
    let relay = relay.map(|r| format!("127.0.0.1:{r}"));
    let extra: Vec<&str> = match &relay {
        Some(r) => vec!["--reply-relay", r],
        None => vec![],
    };
    spawn_ticketgate(
        &repo_path("config/ticketgate.toml"),
        port,
        hop,
        data,
        &extra,
        None,
    )
}

/// The real binary with `config`, listening on `port`; stderr (the logs)
/// goes to `log` when given.
pub fn spawn_ticketgate(
    config: &Path,
    port: u16,
    hop: &str,
    data: &Path,
    extra: &[&str],
    log: Option<&Path>,
) -> Running {
    let listen = format!("127.0.0.1:{port}");
    let control = data.join("control.sock");
    let mut args = vec![
        "serve".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        listen,
        "--next-hop".into(),
        hop.to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--control".into(),
        control.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let stderr = match log {
        Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
        None => std::process::Stdio::null(),
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start ticketgate");
    for _ in 0..200 {
        // Someone else's listener on the port is not ours.
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ticketgate exited before listening on {port}: {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Running(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ticketgate did not start listening");
}

/// `ticketgate tickets list --json` against a running binary.
pub fn list_tickets_json(data: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .args([
            "tickets",
            "--control",
            data.join("control.sock").to_str().unwrap(),
            "list",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
