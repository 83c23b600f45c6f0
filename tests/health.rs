//! Health and readiness for systemd and load balancers: `GET /healthz`
//! answers while the process serves; `GET /readyz` is 200 only when the
//! store took a durable write, the next hop answers and the spool takes a
//! file, and 503 naming the part that failed otherwise; the gauges the
//! alert rules read follow the check. The gauges are one process's: the
//! tests take turns (`ONE_AT_A_TIME`), and the first runs its two servers
//! one after the other.

mod common;

use common::*;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn gauge(metrics: &str, name: &str) -> Option<String> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_when_every_part_answers_and_503_naming_the_one_that_does_not() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let hop = Sink::start(SinkBehaviour::default()).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = metrics.parse().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dg = start_desk_gate_with(&hop.addr.to_string(), None, data, |c| {
        c.metrics.listen = Some(listen)
    })
    .await;
    let health = http_get(&metrics, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let ready = http_get(&metrics, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    for part in [
        "ok store: took a durable write",
        "ok next_hop:",
        "ok spool:",
    ] {
        assert!(ready.contains(part), "{part}: {ready}");
    }
    let scraped = http_get(&metrics, "/metrics").await;
    assert_eq!(gauge(&scraped, "ticketgate_ready").as_deref(), Some("1"));
    assert_eq!(
        gauge(&scraped, "ticketgate_store_writable").as_deref(),
        Some("1")
    );
    assert!(
        scraped.contains(&format!(
            "ticketgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{scraped}"
    );
    dg.gate.stop().await;

    // The next hop is down (nothing listens there) and has not taken a
    // connection: not ready, and the answer says which part.
    let down = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = metrics.parse().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dg = start_desk_gate_with(&down, None, data, |c| c.metrics.listen = Some(listen)).await;
    let ready = http_get(&metrics, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains(&format!("FAIL next_hop: {down}: ")),
        "{ready}"
    );
    assert!(ready.contains("ok store:"), "{ready}");
    let scraped = http_get(&metrics, "/metrics").await;
    assert_eq!(gauge(&scraped, "ticketgate_ready").as_deref(), Some("0"));
    assert_eq!(
        gauge(&scraped, "ticketgate_next_hop_reachable").as_deref(),
        Some("0")
    );
    assert_eq!(
        gauge(&scraped, "ticketgate_store_writable").as_deref(),
        Some("1")
    );
    dg.gate.stop().await;
}

/// `/readyz` writes to the store; asked in a loop it answers from its last
/// check (2 s) rather than committing a probe each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_in_a_loop_commits_one_probe_not_one_per_ask() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let hop = Sink::start(SinkBehaviour::default()).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let listen = metrics.parse().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dg = start_desk_gate_with(&hop.addr.to_string(), None, data, |c| {
        c.metrics.listen = Some(listen)
    })
    .await;
    let commits = |text: &str| -> u64 {
        gauge(text, "ticketgate_store_commit_seconds_count")
            .unwrap()
            .parse()
            .unwrap()
    };
    // The sampler's first check at start, then a fresh one of ours.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        http_get(&metrics, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let before = commits(&http_get(&metrics, "/metrics").await);
    for _ in 0..50 {
        assert!(
            http_get(&metrics, "/readyz")
                .await
                .starts_with("HTTP/1.1 200")
        );
    }
    let after = commits(&http_get(&metrics, "/metrics").await);
    assert!(
        after - before <= 1,
        "{before} -> {after} commits for 50 asks"
    );
    dg.gate.stop().await;
}
