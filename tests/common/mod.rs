//! Test rig: an SMTP sink playing the next hop, a raw SMTP client, and a
//! ticketgate server started in-process on 127.0.0.1:0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use ticketgate::app::Running as App;
use ticketgate::config::Config;

/// A message as the sink received it: envelope and unstuffed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    pub xforward: Vec<String>,
    /// The MAIL and RCPT command lines exactly as the sink read them
    /// (without CRLF).
    pub mail_line: String,
    pub rcpt_lines: Vec<String>,
}

/// How the sink answers.
#[derive(Debug, Clone, Default)]
pub struct SinkBehaviour {
    /// RCPT to an address containing the key gets this reply line.
    pub rcpt_replies: Vec<(String, String)>,
    /// Reply after the end of data instead of 250.
    pub data_reply: Option<String>,
    /// Reply to DATA instead of 354.
    pub data_command_reply: Option<String>,
    /// Close the connection after this many bytes of data.
    pub close_mid_data_after: Option<usize>,
    /// Wait this long before answering the end of data.
    pub data_delay: Option<Duration>,
    pub advertise_xforward: bool,
    pub advertise_dsn: bool,
}

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub behaviour: Arc<Mutex<SinkBehaviour>>,
}

impl Sink {
    pub async fn start(behaviour: SinkBehaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Sink::serve(listener, behaviour).await
    }

    /// A sink on a listener the test bound itself (e.g. a fixed port).
    pub async fn serve(listener: TcpListener, behaviour: SinkBehaviour) -> Sink {
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
        };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(stream).await;
                });
            }
        });
        sink
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 sink ESMTP\r\n").await?;
        let mut from = String::new();
        let mut rcpts = Vec::new();
        let mut xforward = Vec::new();
        let mut mail_line = String::new();
        let mut rcpt_lines = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let upper = line.to_ascii_uppercase();
            let b = self.behaviour.lock().unwrap().clone();
            if upper.starts_with("EHLO") {
                let mut caps =
                    "250-sink\r\n250-PIPELINING\r\n250-SIZE 100000000\r\n250-8BITMIME\r\n"
                        .to_string();
                if b.advertise_xforward {
                    caps.push_str("250-XFORWARD NAME ADDR PROTO HELO\r\n");
                }
                if b.advertise_dsn {
                    caps.push_str("250-DSN\r\n");
                }
                caps.push_str("250 ENHANCEDSTATUSCODES\r\n");
                w.write_all(caps.as_bytes()).await?;
            } else if upper.starts_with("XFORWARD") {
                xforward.push(line.trim_end().to_string());
                w.write_all(b"250 2.0.0 Ok\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                from = addr_of(&line);
                mail_line = line.trim_end().to_string();
                rcpts.clear();
                rcpt_lines.clear();
                w.write_all(b"250 2.1.0 Ok\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                let to = addr_of(&line);
                let custom = b.rcpt_replies.iter().find(|(k, _)| to.contains(k.as_str()));
                match custom {
                    Some((_, reply)) => w.write_all(format!("{reply}\r\n").as_bytes()).await?,
                    None => {
                        rcpts.push(to);
                        rcpt_lines.push(line.trim_end().to_string());
                        w.write_all(b"250 2.1.5 Ok\r\n").await?
                    }
                }
            } else if upper.starts_with("DATA") {
                if let Some(reply) = &b.data_command_reply {
                    w.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    continue;
                }
                w.write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                let mut seen = 0usize;
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    seen += l.len();
                    if let Some(limit) = b.close_mid_data_after
                        && seen > limit
                    {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    if l.starts_with(b".") {
                        l.remove(0);
                    }
                    data.extend_from_slice(&l);
                }
                if let Some(d) = b.data_delay {
                    tokio::time::sleep(d).await;
                }
                match &b.data_reply {
                    Some(reply) => w.write_all(format!("{reply}\r\n").as_bytes()).await?,
                    None => {
                        self.received.lock().unwrap().push(Received {
                            from: from.clone(),
                            rcpts: rcpts.clone(),
                            data,
                            xforward: xforward.clone(),
                            mail_line: mail_line.clone(),
                            rcpt_lines: rcpt_lines.clone(),
                        });
                        w.write_all(b"250 2.0.0 Ok: queued as SINK1\r\n").await?
                    }
                }
            } else if upper.starts_with("RSET") {
                rcpts.clear();
                rcpt_lines.clear();
                w.write_all(b"250 2.0.0 Ok\r\n").await?;
            } else if upper.starts_with("QUIT") {
                w.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                w.write_all(b"502 5.5.1 what\r\n").await?;
            }
        }
    }
}

fn addr_of(line: &str) -> String {
    let start = line.find('<').map(|i| i + 1).unwrap_or(0);
    let end = line.find('>').unwrap_or(line.len());
    line[start..end].to_string()
}

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

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
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

/// A raw SMTP client that checks each reply's code.
pub struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        c.expect(220).await;
        c
    }

    /// Connected and past EHLO, ready for a transaction.
    pub async fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        c.cmd("EHLO client.test", 250).await;
        c
    }

    /// Reads one (possibly multi-line) reply; returns its full text.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut line))
                .await
                .expect("reply within 20 s")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    pub async fn expect(&mut self, code: u16) -> String {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(&code.to_string()),
            "expected {code}, got {reply:?}"
        );
        reply
    }

    /// Sends bytes; an error when the server has closed the connection.
    pub async fn send_checked(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes).await?;
        self.w.flush().await
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    pub async fn cmd(&mut self, line: &str, code: u16) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.expect(code).await
    }

    /// Sends a command; returns the reply whatever its code.
    pub async fn cmd_any(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL, RCPTs, DATA; returns the reply to the end of data.
    pub async fn send_mail(&mut self, from: &str, rcpts: &[&str], wire_data: &[u8]) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250).await;
        for r in rcpts {
            self.cmd(&format!("RCPT TO:<{r}>"), 250).await;
        }
        self.cmd("DATA", 354).await;
        self.send(wire_data).await;
        self.reply().await
    }

    /// True when the server closed the connection.
    pub async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(20), self.r.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Dot-stuffs content and terminates it, as a sending client does.
pub fn wire(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    for &b in content {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
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
    config.server.reply_relay = relay;
    config.server.hostname = "gate.test".into();
    config.outbox.retry_initial_secs = 1;
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

/// The value of the first header `name` in a raw message.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

/// All values of header `name`.
pub fn headers(raw: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .collect()
}

/// Waits until `f` holds, up to 20 s (replies go out asynchronously).
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..400 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
