//! The floor of `lifeboat verify` (issue 22): what reading every chunk of a
//! repository costs at least, measured on the repository itself.
//!
//! ```text
//! LIFEBOAT_PASSPHRASE=... cargo run --release -p lifeboat-repo --example verify_floor -- REPO paths
//! LIFEBOAT_PASSPHRASE=... cargo run --release -p lifeboat-repo --example verify_floor -- REPO cpu|cpu-split
//! ```
//!
//! Every mode takes the chunks `verify` reads, in its order: the unique
//! digests of every index of every restore point, sorted (directory order).
//!
//! `paths` prints the chunk files, one a line, for a cold sequential read
//! with public tools (`scripts/bench.sh` drops the caches and times
//! `xargs cat` over the list).
//!
//! `cpu` runs, on one thread, the exact decode path of
//! [`Repository::read_chunk`] (read the file, AES-GCM open, zstd
//! decompress, keyed BLAKE3 of the plaintext) over every chunk, and reports
//! the CPU time of the thread (`/proc/thread-self/schedstat`: other work on
//! the machine does not count). Run it with the chunk files in the page
//! cache. `cpu-split` adds two passes that split the cost: reading the
//! files alone, and the keyed BLAKE3 of each plaintext alone; decrypt +
//! decompress is the rest.
//! Prints one line of `key=value` pairs (CPU seconds, bytes).
//!
//! `threads N [AHEAD]` is an experiment on the shape of verify (run it
//! from a cold cache and compare the wall time it prints): verify's loop
//! (N threads taking the next chunk and calling `read_chunk`; verify has
//! 2), where with AHEAD each step first asks the kernel to read the chunk
//! AHEAD places further (`posix_fadvise(WILLNEED)`), so the disk works
//! while the CPUs decode.

use lifeboat_repo::layout::CHUNKS_DIR;
use lifeboat_repo::{Digest, Repository};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[path = "common/cpu.rs"]
mod cpu;
use cpu::thread_cpu_ns;

/// The chunks `verify` reads, in its order.
fn verify_order(repo: &Repository) -> Vec<Digest> {
    let mut set = HashSet::new();
    for m in repo.list(None).expect("list restore points") {
        for d in &m.disks {
            let index = repo
                .load_index(&m, &d.name)
                .unwrap_or_else(|e| panic!("index of {} disk {}: {e}", m.name(), d.name));
            set.extend(index.digests.iter().flatten().copied());
        }
    }
    let mut digests: Vec<Digest> = set.into_iter().collect();
    digests.sort();
    digests
}

fn chunk_file(root: &Path, d: &Digest) -> PathBuf {
    root.join(CHUNKS_DIR)
        .join(format!("{:02x}", d.prefix()))
        .join(d.to_hex())
}

/// Verify's loop on `threads` threads; with `ahead` > 0 each step first
/// asks the kernel to read the chunk file `ahead` places further.
fn threads_loop(repo: &Repository, digests: &[Digest], threads: usize, ahead: usize) {
    let wall = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = digests.get(i) else { break };
                if ahead > 0 {
                    if let Some(later) = digests.get(i + ahead) {
                        repo.prefetch_chunk(later);
                    }
                }
                repo.read_chunk(d)
                    .unwrap_or_else(|e| panic!("chunk {d}: {e}"));
            });
        }
    });
    println!(
        "chunks={} threads={threads} ahead={ahead} wall_s={:.3}",
        digests.len(),
        wall.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(root), Some(mode)) = (args.first(), args.get(1)) else {
        eprintln!("usage: verify_floor REPO paths|cpu|cpu-split|threads N [AHEAD]   (passphrase in LIFEBOAT_PASSPHRASE)");
        std::process::exit(2);
    };
    let root = Path::new(root);
    let passphrase = std::env::var("LIFEBOAT_PASSPHRASE").ok();
    let repo = Repository::open(root, passphrase.as_deref()).expect("open repository");
    let digests = verify_order(&repo);
    match mode.as_str() {
        "paths" => {
            for d in &digests {
                println!("{}", chunk_file(root, d).display());
            }
        }
        "cpu" | "cpu-split" => {
            let wall = Instant::now();
            let t0 = thread_cpu_ns();
            let mut plain_bytes = 0u64;
            for d in &digests {
                let plain = repo
                    .read_chunk(d)
                    .unwrap_or_else(|e| panic!("chunk {d}: {e}"));
                plain_bytes += plain.len() as u64;
            }
            let decode_ns = thread_cpu_ns() - t0;
            let decode_wall = wall.elapsed().as_secs_f64();
            if mode == "cpu" {
                println!(
                    "chunks={} plain_bytes={plain_bytes} cpu_s={:.3} wall_s={decode_wall:.3}",
                    digests.len(),
                    decode_ns as f64 / 1e9
                );
                return;
            }

            let t0 = thread_cpu_ns();
            let mut stored_bytes = 0u64;
            for d in &digests {
                let bytes = std::fs::read(chunk_file(root, d)).expect("read chunk file");
                stored_bytes += bytes.len() as u64;
            }
            let read_ns = thread_cpu_ns() - t0;

            // The hash alone: the plaintexts again (not timed), hashed in
            // batches of 32 (the thread clock moves in scheduler ticks).
            let mut hash_ns = 0u64;
            for batch in digests.chunks(32) {
                let plains: Vec<Vec<u8>> = batch
                    .iter()
                    .map(|d| repo.read_chunk(d).expect("read chunk"))
                    .collect();
                let t0 = thread_cpu_ns();
                for (d, plain) in batch.iter().zip(&plains) {
                    assert_eq!(repo.digest(plain), *d);
                }
                hash_ns += thread_cpu_ns() - t0;
            }
            let s = |ns: u64| ns as f64 / 1e9;
            println!(
                "chunks={} stored_bytes={stored_bytes} plain_bytes={plain_bytes} \
                 cpu_s={:.3} wall_s={decode_wall:.3} read_cpu_s={:.3} blake3_cpu_s={:.3} \
                 decrypt_decompress_cpu_s={:.3}",
                digests.len(),
                s(decode_ns),
                s(read_ns),
                s(hash_ns),
                s(decode_ns.saturating_sub(read_ns + hash_ns)),
            );
        }
        "threads" => {
            let arg = |i: usize| std::env::args().nth(i).and_then(|n| n.parse().ok());
            let threads = arg(3).expect("threads N [AHEAD]");
            threads_loop(&repo, &digests, threads, arg(4).unwrap_or(0))
        }
        other => {
            eprintln!("unknown mode {other:?}: paths, cpu, cpu-split or threads N [AHEAD]");
            std::process::exit(2);
        }
    }
}
