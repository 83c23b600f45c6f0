//! An authoritative DNS server for tests: hickory-server with one
//! in-memory zone at the root holding the A and TXT records of a map, so a
//! name under no record is NXDOMAIN and a known name without the asked
//! type is an empty answer (with the zone's SOA, as a real server gives).
//! tests/auth_dns.rs and tests/backscatter_dns.rs run it; include with
//! `#[path = "support/dns.rs"] mod dns;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record as Rr};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

pub enum Record {
    A(Ipv4Addr),
    Txt(String),
}

const TTL: u32 = 300;
const SERIAL: u32 = 1;

/// Serves `records` on 127.0.0.1, UDP and TCP on the same port (a
/// resolver retries a truncated answer over TCP), from a thread with its
/// own runtime, for the rest of the test process.
/// Records by name, as [`start_dns`] serves them.
pub type Zone = HashMap<String, Vec<Record>>;

/// example.com as both DNS tests know it: SPF allows only `good_ip`, an
/// address for the domain, DMARC `p=reject`.
pub fn example_com(good_ip: &str) -> Zone {
    let mut zone = Zone::new();
    add(
        &mut zone,
        "example.com",
        Record::Txt(format!("v=spf1 ip4:{good_ip} -all")),
    );
    add(
        &mut zone,
        "example.com",
        Record::A(std::net::Ipv4Addr::new(192, 0, 2, 80)),
    );
    add(
        &mut zone,
        "_dmarc.example.com",
        Record::Txt("v=DMARC1; p=reject".into()),
    );
    zone
}

pub fn add(zone: &mut Zone, name: &str, record: Record) {
    zone.entry(name.to_string()).or_default().push(record);
}

pub fn start_dns(records: HashMap<String, Vec<Record>>) -> SocketAddr {
    let catalog = catalog(records);
    let (udp, tcp) = sockets();
    let addr = udp.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut server = Server::new(catalog);
            server.register_socket(tokio::net::UdpSocket::from_std(udp).unwrap());
            server.register_listener(
                tokio::net::TcpListener::from_std(tcp).unwrap(),
                Duration::from_secs(5),
                64,
            );
            server.block_until_done().await.unwrap();
        });
    });
    addr
}

/// A UDP socket and a TCP listener on one free port of 127.0.0.1.
fn sockets() -> (std::net::UdpSocket, std::net::TcpListener) {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = std::net::TcpListener::bind(udp.local_addr().unwrap()) {
            udp.set_nonblocking(true).unwrap();
            tcp.set_nonblocking(true).unwrap();
            return (udp, tcp);
        }
    }
    panic!("no port of 127.0.0.1 free for both UDP and TCP");
}

fn catalog(records: HashMap<String, Vec<Record>>) -> Catalog {
    let root = Name::root();
    let mut zone: InMemoryZoneHandler =
        InMemoryZoneHandler::empty(root.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    // A short negative TTL: a name the test did not add is not cached long.
    let soa = SOA::new(
        Name::from_ascii("ns.test.").unwrap(),
        Name::from_ascii("hostmaster.test.").unwrap(),
        SERIAL,
        3600,
        600,
        86400,
        1,
    );
    assert!(zone.upsert_mut(Rr::from_rdata(root.clone(), TTL, RData::SOA(soa)), SERIAL));
    for (name, rrs) in records {
        let name = Name::from_ascii(&name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .append_domain(&root)
            .unwrap();
        for r in rrs {
            let rdata = match r {
                Record::A(ip) => RData::A(A(ip)),
                Record::Txt(text) => {
                    RData::TXT(TXT::from_bytes(text.as_bytes().chunks(255).collect()))
                }
            };
            assert!(zone.upsert_mut(Rr::from_rdata(name.clone(), TTL, rdata), SERIAL));
        }
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&root), vec![Arc::new(zone)]);
    catalog
}
