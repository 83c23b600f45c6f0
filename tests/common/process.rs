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
    /// Takes care of a process started elsewhere (killed when dropped).
    pub fn adopt(child: std::process::Child) -> Running {
        Running(child)
    }

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
    // The shipped metrics port is one for the whole machine: a test that
    // wants the endpoint passes its own --metrics.
    if !extra.contains(&"--metrics") {
        args.extend(["--metrics".to_string(), "off".to_string()]);
    }
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
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ticketgate exited before listening on {port}: {status}");
        }
        // Someone else's listener on the port is not ours: a connect that
        // succeeds proves nothing (another test binary may have got the
        // same free port), the child's own listening socket does.
        if listens_on(child.id(), port) && greets(port) {
            return Running(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ticketgate did not start listening");
}

/// Whether process `pid` holds a TCP socket listening on `port` (from
/// /proc: the socket's inode among the process's descriptors).
pub fn listens_on(pid: u32, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            let (state, inode) = (*f.get(3)?, *f.get(9)?);
            (local_port == port && state == LISTEN).then(|| format!("socket:[{inode}]"))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

/// Whether the listener on `port` answers with an SMTP greeting.
fn greets(port: u16) -> bool {
    use std::io::BufRead;
    let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    let greeted = std::io::BufReader::new(&stream)
        .read_line(&mut line)
        .is_ok()
        && line.starts_with("220");
    let _ = std::io::Write::write_all(&mut &stream, b"QUIT\r\n");
    greeted
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
