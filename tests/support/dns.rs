//! A tiny authoritative UDP DNS server for tests (A and TXT answers from a
//! map, NXDOMAIN for names it does not know), the one tests/auth_dns.rs
//! runs, for tests that need it through the whole server. Include with
//! `#[path = "support/dns.rs"] mod dns;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

pub enum Record {
    A(Ipv4Addr),
    Txt(String),
}

/// Serves `records` on 127.0.0.1 from a thread, for the rest of the test
/// process.
pub fn start_dns(records: HashMap<String, Vec<Record>>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = answer(&records, &buf[..len]) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    addr
}

const TYPE_A: u16 = 1;
const TYPE_TXT: u16 = 16;

fn answer(records: &HashMap<String, Vec<Record>>, query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) == 0 {
        return None;
    }
    // The question: labels, then type and class.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in questions
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    if query.len() < question_end {
        return None;
    }
    let name = labels.join(".");

    let known = records.get(&name);
    let rdatas: Vec<Vec<u8>> = known
        .into_iter()
        .flatten()
        .filter_map(|r| match (r, qtype) {
            (Record::A(ip), TYPE_A) => Some(ip.octets().to_vec()),
            (Record::Txt(text), TYPE_TXT) => {
                let mut rdata = Vec::new();
                for chunk in text.as_bytes().chunks(255) {
                    rdata.push(chunk.len() as u8);
                    rdata.extend_from_slice(chunk);
                }
                Some(rdata)
            }
            _ => None,
        })
        .collect();
    let rcode: u16 = if known.is_some() { 0 } else { 3 };

    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[0..2]); // id
    let rd = u16::from_be_bytes([query[2], query[3]]) & 0x0100;
    let flags: u16 = 0x8000 | 0x0400 | rd | 0x0080 | rcode; // QR AA RD RA
    reply.extend_from_slice(&flags.to_be_bytes());
    reply.extend_from_slice(&1u16.to_be_bytes()); // qdcount
    reply.extend_from_slice(&(rdatas.len() as u16).to_be_bytes());
    reply.extend_from_slice(&0u16.to_be_bytes()); // nscount
    reply.extend_from_slice(&0u16.to_be_bytes()); // arcount
    reply.extend_from_slice(&query[12..question_end]);
    for rdata in rdatas {
        reply.extend_from_slice(&[0xc0, 0x0c]); // name: the question's
        reply.extend_from_slice(&qtype.to_be_bytes());
        reply.extend_from_slice(&1u16.to_be_bytes()); // IN
        reply.extend_from_slice(&300u32.to_be_bytes());
        reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        reply.extend_from_slice(&rdata);
    }
    Some(reply)
}
