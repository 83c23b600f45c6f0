//! The command line: check-config verdicts name the file, line and key.

use std::process::Command;

fn ticketgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ticketgate"))
        .args(args)
        .output()
        .unwrap()
}

fn repo(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_config_checks_ok() {
    let out = ticketgate(&["check-config", "--config", &repo("config/ticketgate.toml")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 helpdesks"), "{text}");
}

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = ticketgate(&["check-config", "--config", path.to_str().unwrap()]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "FILE"),
    )
}

#[test]
fn syntax_error_names_file_and_line() {
    let (code, err) = check(
        "[server]\nlisten = \"127.0.0.1:10025\"\nnext_hop = \"127.0.0.1:10026\"\ndata_dir = \"/tmp/x\"\nmax = = 3\n",
    );
    assert_eq!(code, 2);
    assert!(err.starts_with("FILE:5:"), "{err}");
}

#[test]
fn unknown_key_is_named() {
    let (code, err) = check(
        "[server]\nlisten = \"127.0.0.1:10025\"\nnext_hop = \"127.0.0.1:10026\"\ndata_dir = \"/tmp/x\"\nlisten_typo = 1\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("FILE:5:") && err.contains("listen_typo"),
        "{err}"
    );
}

#[test]
fn bad_next_hop_value_names_its_line() {
    let (code, err) = check(
        "[server]\nlisten = \"127.0.0.1:10025\"\nnext_hop = \"nowhere\"\ndata_dir = \"/tmp/x\"\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("FILE:3:") && err.contains("maildir:DIR"),
        "{err}"
    );
}

#[test]
fn invalid_helpdesk_address_names_the_key() {
    let (code, err) = check(
        "[server]\nlisten = \"127.0.0.1:10025\"\nnext_hop = \"127.0.0.1:10026\"\ndata_dir = \"/tmp/x\"\n\
         [[helpdesk]]\nname = \"X\"\nticket_prefix = \"X\"\nreply_from = \"help@x.example\"\n\
         [[helpdesk.queue]]\naddress = \"not-an-address\"\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("key `helpdesk[0] (X).queue[0].address`"),
        "{err}"
    );
}

#[test]
fn duplicate_queue_address_across_helpdesks_is_refused() {
    let desk = |name: &str, prefix: &str| {
        format!(
            "[[helpdesk]]\nname = \"{name}\"\nticket_prefix = \"{prefix}\"\nreply_from = \"help@x.example\"\n[[helpdesk.queue]]\naddress = \"Same@x.example\"\n"
        )
    };
    let (code, err) = check(&format!(
        "[server]\nlisten = \"127.0.0.1:10025\"\nnext_hop = \"127.0.0.1:10026\"\ndata_dir = \"/tmp/x\"\n{}{}",
        desk("A", "A"),
        desk("B", "B")
    ));
    assert_eq!(code, 2);
    assert!(err.contains("already a queue of A"), "{err}");
}

#[test]
fn template_with_unknown_placeholder_fails_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ticketgate.toml");
    std::fs::copy(repo("config/ticketgate.toml"), &config).unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/closed.txt"),
        "Subject: [{ticket}] chiuso\n\nIl ticket {tiket} è chiuso.\n",
    )
    .unwrap();
    let out = ticketgate(&["check-config", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("closed.txt") && err.contains("{tiket}"),
        "{err}"
    );
}

const SERVER: &str = "[server]\nlisten = \"127.0.0.1:10025\"\nnext_hop = \"127.0.0.1:10026\"\ndata_dir = \"/tmp/x\"\n";

#[test]
fn bad_milter_address_names_its_line() {
    let (code, err) = check(&format!("{SERVER}[milter]\nlisten = \"localhost\"\n"));
    assert_eq!(code, 2);
    assert!(
        err.starts_with("FILE:6:") && err.contains("unix:PATH"),
        "{err}"
    );
}

#[test]
fn milter_only_without_a_milter_listener_is_refused() {
    let (code, err) = check(&format!("{SERVER}[milter]\nonly = true\n"));
    assert_eq!(code, 2);
    assert!(err.contains("milter.only"), "{err}");
    let (code, err) = check(&format!(
        "{SERVER}[milter]\nonly = true\nlisten = \"unix:/run/ticketgate/milter.sock\"\n"
    ));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn milter_only_flag_needs_a_milter_address() {
    let out = ticketgate(&[
        "serve",
        "--config",
        &repo("config/ticketgate.toml"),
        "--milter-only",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--milter-only needs --milter"));
}
