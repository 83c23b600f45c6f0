//! End to end through a real, private Postfix instance: ticketgate as a
//! before-queue proxy, as an after-queue content filter and as a milter,
//! with the seed helpdesk scenarios in proxy and milter mode
//! (`tests/postfix/run.sh` does the work; this runs it with the binary
//! cargo just built). Needs the `postfix` package and swaks (installed by
//! .ci/run) and root, as Postfix's master does; under CI their absence is a
//! failure, elsewhere the test says so and returns.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script takes about 30 s; this only catches a hang.
const DEADLINE: Duration = Duration::from_secs(240);

fn skip_or_panic(why: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{why}; .ci/run installs postfix and swaks and runs as root");
    }
    eprintln!("skipping: {why}");
    true
}

fn missing_prerequisite() -> bool {
    for tool in ["postfix", "smtp-sink", "smtp-source", "swaks"] {
        let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
            .iter()
            .any(|dir| Path::new(dir).join(tool).exists());
        if !found {
            return skip_or_panic(&format!(
                "{tool} not installed (apt-get install postfix swaks)"
            ));
        }
    }
    // /proc/self belongs to the effective user.
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    if euid != 0 {
        return skip_or_panic("a private Postfix instance needs root");
    }
    false
}

#[test]
fn postfix_proxy_content_filter_and_milter() {
    if missing_prerequisite() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/postfix/run.sh");
    // Output to a file, not a pipe: a daemon left behind by a broken run
    // would hold a pipe open for ever.
    let out = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(&script)
        .env("TICKETGATE_BIN", env!("CARGO_BIN_EXE_ticketgate"))
        .env_remove("KEEP")
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .expect("run bash tests/postfix/run.sh");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = match status {
        Some(status) => status,
        None => {
            // SIGTERM lets the script's trap stop Postfix and ticketgate.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let grace = Instant::now();
            while child.try_wait().unwrap().is_none() && grace.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(out.path()).unwrap_or_default();
            println!("{output}");
            panic!("tests/postfix/run.sh still running after {DEADLINE:?}");
        }
    };
    let output = std::fs::read_to_string(out.path()).unwrap_or_default();
    println!("{output}");
    println!("run time {:.1}s", started.elapsed().as_secs_f64());
    let summary = output
        .lines()
        .rev()
        .find(|l| l.starts_with("postfix-e2e: ") && l.ends_with(" failed"))
        .unwrap_or("(no summary line)");
    assert!(
        status.success(),
        "tests/postfix/run.sh failed ({status}): {summary}"
    );
    assert!(
        summary.ends_with(" passed, 0 failed") && !summary.starts_with("postfix-e2e: 0 passed"),
        "unexpected summary: {summary}"
    );
}
