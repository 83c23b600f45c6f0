//! The shipped monitoring files against the server: the Prometheus alert
//! rules (`packaging/prometheus/`) must load and pass their unit tests in
//! promtool, and every metric the rules or the Grafana dashboard
//! (`packaging/grafana/`) read must be one `GET /metrics` serves, so a
//! renamed or dropped metric cannot leave an alert silently blind.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &str = "packaging/prometheus/ticketgate-alerts.yml";
const RULE_TESTS: &str = "packaging/prometheus/ticketgate-alerts.test.yml";
const DASHBOARD: &str = "packaging/grafana/ticketgate-dashboard.json";
const PREFIX: &str = "ticketgate_";

/// `promtool <verb> rules <file>`. A missing promtool fails rather than
/// skips: a skipped check would let a rules file Prometheus refuses ship.
fn promtool(verb: &str, file: &str) {
    let out = match Command::new("promtool")
        .args([verb, "rules"])
        .arg(repo_path(file))
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool missing: scripts/setup.sh --test installs Debian's prometheus")
        }
        Err(e) => panic!("promtool {verb} rules {file}: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool {verb} rules {file}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool() {
    promtool("check", RULES);
    promtool("test", RULE_TESTS);
}

/// The whole response to `GET /metrics`, read until the server closes.
async fn scrape(port: u16) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics listener accepts");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    body.to_string()
}

/// The series names the exposition offers, from its `# TYPE` lines. A
/// histogram or summary is queried only through its suffixed series, so
/// its bare family name is left out on purpose.
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            panic!("malformed TYPE line: {line}");
        };
        let suffixes: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

/// Every `ticketgate_...` identifier in `text`, starting at a word
/// boundary (so `foo_ticketgate_x` is not taken for one of ours).
fn names_in(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices(PREFIX) {
        if text[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let len = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(text.len() - at);
        names.insert(text[at..at + len].to_string());
    }
    names
}

/// Every PromQL string in the dashboard: panel targets' `expr`, wherever
/// they nest (rows, library panels), and the template variables' queries,
/// which read metrics too.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(fields) => {
            for (key, value) in fields {
                match (key.as_str(), value.as_str()) {
                    ("expr" | "definition", Some(query)) => out.push(query.to_string()),
                    _ => dashboard_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| dashboard_queries(i, out)),
        _ => {}
    }
}

/// The metric names the rules file and the dashboard read.
fn names_read() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(repo_path(RULES)).expect("rules file");
    let mut names = names_in(&rules);
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path(DASHBOARD)).unwrap())
            .expect("dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(!queries.is_empty(), "no expr found in {DASHBOARD}");
    for query in &queries {
        names.extend(names_in(query));
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_read_is_served() {
    let port = free_port();
    let (dg, _hop, _relay) = desk_gate_with_sinks(|c| {
        c.metrics.listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    let exposition = scrape(port).await;
    dg.gate.stop().await;
    let served = served_names(&exposition);
    let read = names_read();
    // A broken extractor would pass vacuously.
    assert!(read.contains("ticketgate_messages_total"), "{read:?}");
    let missing: Vec<&String> = read.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "read by {RULES} or {DASHBOARD} but not served on /metrics: {missing:?}\n\
         served: {served:?}\n--- exposition ---\n{exposition}"
    );
}
