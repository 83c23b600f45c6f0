//! kill -9 in a loop over helpdesk mail, through the real binary with the
//! shipped config, in SMTP proxy mode and in milter mode: whatever was
//! accepted is confirmed at least once, each message has one ticket, and
//! no reply is left held or queued. Each attempt carries a fresh trace
//! field, as a front Postfix stamps it, and half the messages have no
//! Message-ID.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MESSAGES: usize = 24;
const ROUNDS: usize = 6;

fn subject(i: usize) -> String {
    format!("Caso di prova {i}: la stampa delle fatture si blocca")
}

fn headers(i: usize, attempt: usize) -> Vec<(String, String)> {
    let mut h = vec![
        (
            "Received".to_string(),
            format!("from client (client [192.0.2.1]) by mx id A{i}x{attempt}"),
        ),
        ("From".into(), format!("op{i}@caf.example")),
        ("To".into(), "nuovocaso@projectpp.it".into()),
        ("Subject".into(), subject(i)),
    ];
    if i.is_multiple_of(2) {
        h.push(("Message-ID".into(), format!("<kill-{i}@caf.example>")));
    }
    h
}

const BODY: &str =
    "La stampa delle fatture del registro VENIMM si blocca con un errore di calcolo.\r\n";

fn raw(i: usize, attempt: usize) -> Vec<u8> {
    let mut m = String::new();
    for (name, value) in headers(i, attempt) {
        m.push_str(&format!("{name}: {value}\r\n"));
    }
    m.push_str("\r\n");
    m.push_str(BODY);
    m.into_bytes()
}

/// Sends message `i` over SMTP; true only on a 250 to its DATA.
async fn smtp_send(port: u16, i: usize, attempt: usize) -> bool {
    let attempt = async {
        let mut c = Line::new(TcpStream::connect(("127.0.0.1", port)).await.ok()?);
        c.expect("220").await?;
        c.cmd("EHLO kill.test", "250").await?;
        c.cmd(&format!("MAIL FROM:<op{i}@caf.example>"), "250")
            .await?;
        c.cmd("RCPT TO:<nuovocaso@projectpp.it>", "250").await?;
        c.cmd("DATA", "354").await?;
        c.w.write_all(&wire(&raw(i, attempt))).await.ok()?;
        c.expect("250").await
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

struct Line {
    r: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Line {
    fn new(s: TcpStream) -> Line {
        let (r, w) = s.into_split();
        Line {
            r: tokio::io::BufReader::new(r),
            w,
        }
    }
    async fn expect(&mut self, code: &str) -> Option<()> {
        loop {
            let mut line = String::new();
            let n = tokio::io::AsyncBufReadExt::read_line(&mut self.r, &mut line)
                .await
                .ok()?;
            if n == 0 || !line.starts_with(code) {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(());
            }
        }
    }
    async fn cmd(&mut self, line: &str, code: &str) -> Option<()> {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .ok()?;
        self.expect(code).await
    }
}

fn packet(code: u8, parts: &[&[u8]], nul: bool) -> Vec<u8> {
    let mut data = Vec::new();
    for p in parts {
        data.extend_from_slice(p);
        if nul {
            data.push(0);
        }
    }
    let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(code);
    p.extend(data);
    p
}

async fn milter_reply(s: &mut TcpStream) -> Option<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.ok()?;
    body.first().copied()
}

async fn milter_call(s: &mut TcpStream, p: Vec<u8>) -> Option<u8> {
    s.write_all(&p).await.ok()?;
    milter_reply(s).await
}

/// Sends message `i` as an MTA does through the milter (every step
/// answered); true only when the milter's verdict is accept.
async fn milter_send(port: u16, i: usize, attempt: usize) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut optneg = 6u32.to_be_bytes().to_vec();
        optneg.extend(0x1ffu32.to_be_bytes());
        optneg.extend(0u32.to_be_bytes());
        (milter_call(&mut s, packet(b'O', &[&optneg], false)).await? == b'O').then_some(())?;
        let mut conn = b"client\0".to_vec();
        conn.push(b'4');
        conn.extend(40000u16.to_be_bytes());
        conn.extend(b"192.0.2.1\0");
        let steps = [
            packet(b'C', &[&conn], false),
            packet(b'H', &[b"client"], true),
            packet(b'M', &[format!("<op{i}@caf.example>").as_bytes()], true),
            packet(b'R', &[b"<nuovocaso@projectpp.it>"], true),
        ];
        for p in steps {
            (milter_call(&mut s, p).await? == b'c').then_some(())?;
        }
        for (name, value) in headers(i, attempt) {
            let p = packet(b'L', &[name.as_bytes(), value.as_bytes()], true);
            (milter_call(&mut s, p).await? == b'c').then_some(())?;
        }
        (milter_call(&mut s, packet(b'N', &[], false)).await? == b'c').then_some(())?;
        (milter_call(&mut s, packet(b'B', &[BODY.as_bytes()], false)).await? == b'c')
            .then_some(())?;
        s.write_all(&packet(b'E', &[], false)).await.ok()?;
        loop {
            match milter_reply(&mut s).await? {
                b'a' => return Some(()),
                b'h' | b'i' | b'm' => continue,
                _ => return None,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Smtp,
    Milter,
}

struct Server {
    config: std::path::PathBuf,
    hop: String,
    data: std::path::PathBuf,
    relay: String,
    smtp: u16,
    milter: u16,
}

impl Server {
    fn start(&self) -> Running {
        let milter = format!("127.0.0.1:{}", self.milter);
        let child = spawn_ticketgate(
            &self.config,
            self.smtp,
            &self.hop,
            &self.data,
            &["--reply-relay", &self.relay, "--milter", &milter],
            None,
        );
        for _ in 0..200 {
            if listens_on(child.pid(), self.milter) {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        child
    }
}

/// The shipped config with a 1 s first reply retry.
fn config_in(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ticketgate.toml");
    let shipped = std::fs::read_to_string(repo_path("config/ticketgate.toml")).unwrap();
    let templates = repo_path("config/templates");
    std::fs::write(
        &path,
        shipped
            .replace("retry_initial_secs = 30", "retry_initial_secs = 1")
            .replace(
                "templates_dir = \"templates\"",
                &format!("templates_dir = \"{}\"", templates.display()),
            ),
    )
    .unwrap();
    path
}

/// Sends the messages over four connections at a time; `acked` counts
/// those accepted so far.
async fn send_all(
    mode: Mode,
    server: &Server,
    ids: &[usize],
    attempt: usize,
    acked: Arc<AtomicUsize>,
) -> Vec<bool> {
    let mut out = Vec::new();
    for chunk in ids.chunks(4) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let (smtp, milter) = (server.smtp, server.milter);
                let acked = acked.clone();
                tokio::spawn(async move {
                    let ok = match mode {
                        Mode::Smtp => smtp_send(smtp, i, attempt).await,
                        Mode::Milter => milter_send(milter, i, attempt).await,
                    };
                    if ok {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    ok
                })
            })
            .collect();
        for t in tasks {
            out.push(t.await.unwrap_or(false));
        }
    }
    out
}

async fn kill_loop(mode: Mode) {
    let hop = Sink::start(SinkBehaviour::default()).await;
    let relay = Sink::start(SinkBehaviour::default()).await;
    let data = tempfile::tempdir().unwrap();
    let server = Server {
        config: config_in(data.path()),
        hop: hop.addr.to_string(),
        data: data.path().join("data"),
        relay: relay.addr.to_string(),
        smtp: free_port(),
        milter: free_port(),
    };
    let mut accepted: BTreeSet<usize> = BTreeSet::new();
    let mut attempt = 0;
    for round in 0..ROUNDS {
        let mut child = server.start();
        let pending: Vec<usize> = (0..MESSAGES).filter(|i| !accepted.contains(i)).collect();
        attempt += 1;
        let acked = Arc::new(AtomicUsize::new(0));
        let sends = {
            let pending = pending.clone();
            let server = server_clone(&server);
            let acked = acked.clone();
            tokio::spawn(async move { send_all(mode, &server, &pending, attempt, acked).await })
        };
        // Kill at a different moment each round, while mail is in flight:
        // after a few acceptances, then a little later each round.
        let target = (1 + round).min(pending.len());
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            while acked.load(Ordering::SeqCst) < target {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(3 * round as u64)).await;
        child.kill_9();
        for (i, ok) in pending.iter().zip(sends.await.unwrap()) {
            if ok {
                accepted.insert(*i);
            }
        }
    }
    // Last run: no kill; what was not accepted yet is sent until it is.
    let _child = server.start();
    for _ in 0..5 {
        let pending: Vec<usize> = (0..MESSAGES).filter(|i| !accepted.contains(i)).collect();
        if pending.is_empty() {
            break;
        }
        attempt += 1;
        let acked = Arc::new(AtomicUsize::new(0));
        for (i, ok) in pending
            .iter()
            .zip(send_all(mode, &server, &pending, attempt, acked).await)
        {
            if ok {
                accepted.insert(*i);
            }
        }
    }
    assert_eq!(accepted.len(), MESSAGES, "everything accepted in the end");
    let settled = eventually(|| {
        let tickets = list_tickets_json(&server.data);
        tickets.as_array().unwrap().iter().all(|t| {
            t["replies"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["state"] != "held" && r["state"] != "queued")
        })
    })
    .await;
    let tickets = list_tickets_json(&server.data);
    assert!(settled, "a reply left held or queued: {tickets:#}");
    let tickets = tickets.as_array().unwrap();
    // One ticket per message, none void: every one was delivered.
    let mut by_subject: HashMap<String, String> = HashMap::new();
    for t in tickets {
        let subject = t["subject"].as_str().unwrap().to_string();
        let id = t["id"].as_str().unwrap().to_string();
        assert!(
            by_subject.insert(subject, id).is_none(),
            "a duplicate ticket: {t:#}"
        );
        assert_ne!(t["status"], "void", "{t:#}");
        assert_eq!(t["replies"][0]["state"], "sent", "{t:#}");
    }
    assert_eq!(by_subject.len(), MESSAGES);
    // The relay got a confirmation of each, to its sender.
    let confirmed: BTreeSet<(String, Vec<String>)> = relay
        .messages()
        .iter()
        .map(|m| {
            (
                header(&m.data, "X-Ticketgate-Ticket").unwrap_or_default(),
                m.rcpts.clone(),
            )
        })
        .collect();
    for i in 0..MESSAGES {
        let id = &by_subject[&subject(i)];
        assert!(
            confirmed.contains(&(id.clone(), vec![format!("op{i}@caf.example")])),
            "message {i} ({id}) not confirmed"
        );
    }
    if mode == Mode::Smtp {
        // Each message reached the next hop (at least once: a kill between
        // its 250 and ours makes the client send it again).
        let subjects: BTreeSet<String> = hop
            .messages()
            .iter()
            .filter_map(|m| header(&m.data, "Subject"))
            .collect();
        assert_eq!(subjects.len(), MESSAGES);
    }
}

fn server_clone(s: &Server) -> Server {
    Server {
        config: s.config.clone(),
        hop: s.hop.clone(),
        data: s.data.clone(),
        relay: s.relay.clone(),
        smtp: s.smtp,
        milter: s.milter,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_in_smtp_mode_confirms_every_accepted_message() {
    kill_loop(Mode::Smtp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_in_milter_mode_confirms_every_accepted_message() {
    kill_loop(Mode::Milter).await;
}

#[tokio::test]
async fn spool_files_left_by_a_kill_are_removed_at_start() {
    let hop = Sink::start(SinkBehaviour::default()).await;
    let data = tempfile::tempdir().unwrap();
    let spool = data.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("spool-0123456789abcdef"), b"half a message").unwrap();
    let _child = spawn_binary(free_port(), &hop.addr.to_string(), data.path(), None);
    let left: Vec<_> = std::fs::read_dir(&spool).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `ticketgate tickets ARGS...` against a running binary.
fn tickets_cli(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .arg("tickets")
        .arg("--control")
        .arg(data.join("control.sock"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_cli_lists_a_void_ticket_only_when_asked() {
    let hop = Sink::start(SinkBehaviour {
        data_reply: Some("550 5.7.1 no thanks".into()),
        ..SinkBehaviour::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _child = spawn_binary(port, &hop.addr.to_string(), data.path(), None);
    assert!(!smtp_send(port, 1, 1).await, "the next hop's 550 is ours");
    let listed = |args: &[&str]| {
        let out = tickets_cli(data.path(), args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(listed(&["list", "--json"]), serde_json::json!([]));
    let all = listed(&["list", "--all", "--json"]);
    assert_eq!(all[0]["status"], "void", "{all:#}");
    assert_eq!(all[0]["void"]["reason"], "ticket.void_refused");
    assert_eq!(all[0]["replies"][0]["state"], "cancelled");
    assert_eq!(listed(&["list", "--status", "void", "--json"]), all);
    let id = all[0]["id"].as_str().unwrap();
    let shown = tickets_cli(data.path(), &["show", id]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("void:      ticket.void_refused"), "{text}");
}
