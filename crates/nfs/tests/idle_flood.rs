//! 2,000 idle TCP connections to the NFS port, half of them announcing a
//! 1 MiB record they never send: the server's threads and memory stay
//! bounded and a real client (libnfs) still reads the disk. Alone in its
//! test binary, so the thread count and RSS are this test's.
mod common;
use common::*;
use lifeboat_testsupport::run;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn two_thousand_idle_connections_cost_no_threads_and_a_client_still_reads() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);

    let f = Fixture::new();
    std::thread::sleep(Duration::from_millis(200));
    let (threads0, rss0) = (threads(), rss_kib());
    let mut idle: Vec<TcpStream> = Vec::new();
    for i in 0..2000 {
        let mut s = connect(f.service.nfs_addr());
        if i % 2 == 0 {
            // A fragment header announcing 1 MiB, and nothing after it.
            s.write_all(&0x8010_0000u32.to_be_bytes()).unwrap();
        }
        idle.push(s);
    }
    std::thread::sleep(Duration::from_secs(1));
    let (threads1, rss1) = (threads(), rss_kib());
    eprintln!(
        "threads {threads0} -> {threads1}, RSS {rss0} -> {rss1} KiB, open {}",
        f.service.log().active()
    );
    assert!(
        threads1 <= threads0 + 4,
        "the server started threads for idle connections: {threads0} -> {threads1}"
    );
    assert!(
        rss1 <= rss0 + 64 * 1024,
        "RSS grew by {} MiB for idle connections",
        (rss1 - rss0) / 1024
    );
    assert!(
        f.service.log().active() <= lifeboat_nfs::DEFAULT_MAX_CONNECTIONS as u64,
        "more connections open than the limit"
    );
    assert!(
        f.service
            .log()
            .lines()
            .iter()
            .any(|l| l.contains("connection limit reached")),
        "{:?}",
        f.service.log().lines()
    );
    let cat = run(nfs_tool("nfs-cat").arg(f.url(&format!("{SESSION}/{FLAT}")))).stdout;
    assert!(cat == f.bytes, "nfs-cat beside 2,000 idle connections");
    drop(idle);
}
