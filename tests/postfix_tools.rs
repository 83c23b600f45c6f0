//! End to end with Postfix's own test tools: `smtp-source` sends through
//! ticketgate to `smtp-sink`; every message must arrive, once.
//! Needs the `postfix` package (installed by .ci/run); under CI its
//! absence is a failure, elsewhere the test says so and returns.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, start_gate};

fn tool(name: &str) -> Option<String> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return Some(p);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} not installed; .ci/run installs postfix");
    }
    eprintln!("skipping: {name} not installed (apt-get install postfix)");
    None
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_source_through_ticketgate_reaches_smtp_sink_complete() {
    let (Some(source), Some(sink)) = (tool("smtp-source"), tool("smtp-sink")) else {
        return;
    };
    let dump = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sink_port = free_port();
    let template = format!("{}/msg.", dump.path().display());
    let mut sink_proc = Command::new(&sink)
        .args([
            "-u",
            "nobody",
            "-d",
            &template,
            &format!("127.0.0.1:{sink_port}"),
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start smtp-sink");
    // Wait until the sink listens.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", sink_port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gate = start_gate(&format!("127.0.0.1:{sink_port}"), "").await;
    const COUNT: usize = 200;
    let gate_addr = gate.addr.to_string();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(&source)
            .args([
                "-m",
                &COUNT.to_string(),
                "-s",
                "10",
                "-l",
                "5000",
                "-f",
                "sender@example.org",
                "-t",
                "rcpt@example.com",
                &gate_addr,
            ])
            .status()
            .expect("run smtp-source")
    })
    .await
    .unwrap();
    assert!(status.success(), "smtp-source failed: {status}");
    // smtp-sink writes each dump after it answered; give it a moment.
    let mut received = 0;
    for _ in 0..100 {
        received = count_files(dump.path());
        if received >= COUNT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = sink_proc.kill();
    let _ = sink_proc.wait();
    gate.stop().await;
    assert_eq!(
        received, COUNT,
        "every message sent reached smtp-sink exactly once"
    );
}
