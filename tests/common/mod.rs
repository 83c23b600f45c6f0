//! Test rigs shared by the integration tests, one submodule a rig:
//! [`sink`] plays the next hop, [`client`] is a raw SMTP client, [`gate`]
//! runs ticketgate in-process, [`process`] runs the real binary. Here: the
//! small helpers every rig and test uses. Everything is re-exported, so a
//! test writes `use common::*;`.
// Each test binary uses only part of the rigs; an inner attribute here
// covers the whole module tree (the rig files too).
#![allow(dead_code)]

mod client;
mod gate;
mod process;
mod sink;

// A test binary that uses nothing of a rig would warn of its re-export.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use gate::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use sink::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole answer to `GET path` on the metrics endpoint `addr`, status
/// line included (it closes the connection after one answer).
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// `rel` inside the repository (the shipped config, fixtures).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
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
/// Like [`eventually`], for a condition that must await (a store read).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    mut f: impl FnMut() -> F,
) -> bool {
    for _ in 0..400 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..400 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
