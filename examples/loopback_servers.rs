//! Many framed servers in one process for `scripts/bench`'s fan-out section: one per
//! loopback address, 127.1.0.1 and up (250 per third octet), all on one port.
//!
//! Usage: `loopback_servers COUNT`. Prints one line, `PORT LIST` (LIST in pdsh's compact
//! form), once every server listens, then serves until killed. An address where the port
//! is taken is skipped.

use std::net::Ipv4Addr;

use rcmd::server::{serve, Limits, ServerConfig};
use rcmd::wire::Protocol;
use tokio::net::TcpListener;

// As many worker threads as cores: real hosts receive on CPUs of their own, and one thread
// for every receiver made it the bottleneck of the copy section's 20-host figure for rcmd and
// its pdsh anchor alike.
#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: loopback_servers COUNT");
    let addrs = (0..=255u8).flat_map(|b| (1..=250u8).map(move |c| Ipv4Addr::new(127, 1, b, c)));
    let mut port = 0;
    let mut listeners = Vec::new();
    for addr in addrs {
        if listeners.len() == count {
            break;
        }
        if let Ok(l) = TcpListener::bind((addr, port)).await {
            port = l.local_addr().unwrap().port();
            listeners.push((addr.to_string(), l));
        }
    }
    assert_eq!(listeners.len(), count, "not enough free loopback addresses");
    let names: Vec<&str> = listeners.iter().map(|(a, _)| a.as_str()).collect();
    println!("{port} {}", rcmd::test_support::compact(&names));
    let mut config = ServerConfig::new(Protocol::Framed);
    config.limits = Limits {
        max_conns: 4096,
        ..Limits::default()
    };
    let mut tasks = Vec::new();
    for (_, listener) in listeners {
        tasks.push(tokio::spawn(serve(
            listener,
            config.clone(),
            std::future::pending(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}
