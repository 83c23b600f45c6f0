//! The first five minutes: `scripts/run.sh` as the README runs it (with
//! the binary under test instead of a release build, and its folders in a
//! temporary directory), mail from swaks as the README sends it, the
//! tagged message in the next hop's Maildir, the Italian confirmation with
//! the case number in the replies Maildir, and `ticketgate tickets list`
//! without flags finding the server. Needs swaks (scripts/setup.sh
//! installs it): without it the test fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The files in `dir/new` of a Maildir, oldest first.
fn delivered(maildir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn wait_for(maildir: &Path, n: usize) -> Vec<Vec<u8>> {
    for _ in 0..200 {
        let got = delivered(maildir);
        if got.len() >= n {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} has fewer than {n} messages", maildir.display());
}

/// `scripts/run.sh --listen 127.0.0.1:PORT --metrics 127.0.0.1:METRICS`
/// with its folders in `trial`.
fn start_trial(trial: &Path, port: u16, metrics: u16) -> Running {
    let log = std::fs::File::create(trial.join("run.log")).unwrap();
    let child = Command::new("bash")
        .arg(repo_path("scripts/run.sh"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics}")])
        .env("TICKETGATE_BIN", env!("CARGO_BIN_EXE_ticketgate"))
        .env("TICKETGATE_TRIAL_DIR", trial)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("bash runs scripts/run.sh");
    let child = Running::adopt(child);
    // `run.sh` execs the server: the listener is the child's own.
    for _ in 0..400 {
        if listens_on(child.pid(), port) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(trial.join("run.log")).unwrap_or_default();
    panic!("the trial run did not listen on {port}:\n{log}");
}

fn swaks(port: u16, from: &str, to: &str, subject: &str, body: &str) {
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", from, "--to", to])
        .args(["--header", &format!("Subject: {subject}")])
        .args(["--body", body])
        .output()
        .expect("swaks is installed (scripts/setup.sh --test)");
    assert!(
        out.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `ticketgate tickets ARGS` run in `dir`, without --control or --config.
fn tickets_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .arg("tickets")
        .args(args)
        .current_dir(dir)
        .env_remove("TICKETGATE_CONTROL")
        .output()
        .unwrap()
}

#[test]
fn the_trial_run_shows_the_ticket_its_tags_and_its_confirmation() {
    let trial = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let _server = start_trial(trial.path(), port, metrics);
    swaks(
        port,
        "mario@example.org",
        "nuovocaso@projectpp.it",
        "Mago4 non stampa le fatture",
        "Da stamattina Mago4 non stampa le fatture di vendita: il modulo si chiude con un errore.",
    );
    let forwarded = wait_for(&trial.path().join("maildir"), 1).remove(0);
    let id = header(&forwarded, "X-Ticketgate-Ticket").expect("the message is tagged");
    assert_eq!(
        header(&forwarded, "X-Ticketgate-Sector").as_deref(),
        Some("gestionale")
    );
    let reply = wait_for(&trial.path().join("replies"), 1).remove(0);
    assert_eq!(
        header(&reply, "Delivered-To").as_deref(),
        Some("mario@example.org")
    );
    assert_eq!(header(&reply, "Return-Path").as_deref(), Some("<>"));
    let parsed = mail_parser::MessageParser::default().parse(&reply).unwrap();
    assert!(
        parsed.subject().unwrap().contains(&id),
        "{:?}",
        parsed.subject()
    );
    let body = parsed.body_text(0).unwrap().to_string();
    assert!(body.contains(&id) && body.contains("registrata"), "{body}");

    let listed = tickets_in(trial.path(), &["list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.contains(&id) && listed.contains("Project++"),
        "{listed}"
    );
    // From a subfolder of the trial too, as git finds its repository.
    let sub = trial.path().join("maildir");
    assert!(tickets_in(&sub, &["show", &id]).status.success());

    // A fresh install is live and ready: store, next hop (the Maildir)
    // and spool all answer.
    let addr = format!("127.0.0.1:{metrics}");
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    let ready = http_get(&addr, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains("ok next_hop: maildir:"), "{ready}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn tickets_without_a_server_says_how_to_find_one() {
    let nowhere = tempfile::tempdir().unwrap();
    let out = tickets_in(nowhere.path(), &["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no server found")
            && err.contains("--control")
            && err.contains("TICKETGATE_CONTROL"),
        "{err}"
    );
}

#[test]
fn version_prints_the_package_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("ticketgate {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `ticketgate try ... | head` once panicked on the closed pipe
/// ("failed printing to stdout: Broken pipe").
#[test]
fn try_piped_into_head_ends_quietly_instead_of_panicking() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("big.mbox");
    let one = std::fs::read_to_string(repo_path("tests/fixtures/corpus/03-sis-730.eml")).unwrap();
    let mut text = String::new();
    for _ in 0..3000 {
        text.push_str("From archive@example Mon Mar  2 09:00:00 2026\n");
        text.push_str(&one);
        text.push('\n');
    }
    std::fs::write(&mbox, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .arg("try")
        .arg("--config")
        .arg(repo_path("config/ticketgate.toml"))
        .arg(&mbox)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reader is gone: the rest of ~1 MB of output meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
