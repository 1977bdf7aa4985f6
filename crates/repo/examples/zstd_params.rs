//! Compression parameter search for chunk blobs (issue 2): samples chunks
//! of a disk image and measures, single-threaded, the CPU time and total
//! compressed size of zstd settings. The table in docs/performance.md
//! ("zstd parameter search") was made with it.
//!
//! ```text
//! cargo run --release -p lifeboat-repo --example zstd_params -- \
//!     IMAGE [--chunks 300] [--chunk-size 4194304] [--reps 2] [--oracle] SPEC...
//! ```
//!
//! A SPEC is a comma-separated list of `key value` tokens: `l3` (level),
//! `st2` (strategy: 1 fast, 2 dfast, 3 greedy, 4 lazy, ...), `w22`
//! (windowLog), `h17` (hashLog), `c16` (chainLog), `s1` (searchLog), `m5`
//! (minMatch), `t0` (targetLength); `repo` is the repository's default
//! (`DEFAULT_ZSTD_LEVEL` with the `TUNED_ZSTD_*` parameters of
//! `lifeboat_repo::layout`). The first SPEC is the
//! baseline of the size ratio. Chunks are taken evenly from the data
//! (non-hole, non-zero) chunks of IMAGE; CPU time is the thread's own run
//! time from `/proc/thread-self/schedstat` (other work on the machine
//! does not count), the minimum over `--reps` runs, which
//! interleave the settings.
//!
//! `--oracle` also times every chunk alone (wall clock, minimum over the
//! runs; the thread clock ticks too coarsely for one chunk) and prints the
//! bound of any per-chunk choice among the SPECs: the least CPU time that
//! a perfect predictor, picking a setting for each chunk, could spend
//! while storing at most 1.00, 1.01, 1.02 or 1.03 times the first SPEC.

use std::fs::File;
use std::os::unix::fs::FileExt;
use zstd::zstd_safe::{CParameter, Strategy};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::thread_cpu_ns;

fn strategy(n: u32) -> Strategy {
    match n {
        1 => Strategy::ZSTD_fast,
        2 => Strategy::ZSTD_dfast,
        3 => Strategy::ZSTD_greedy,
        4 => Strategy::ZSTD_lazy,
        5 => Strategy::ZSTD_lazy2,
        6 => Strategy::ZSTD_btlazy2,
        7 => Strategy::ZSTD_btopt,
        8 => Strategy::ZSTD_btultra,
        9 => Strategy::ZSTD_btultra2,
        _ => panic!("strategy {n}: must be 1..=9"),
    }
}

fn compressor(spec: &str) -> zstd::bulk::Compressor<'static> {
    if spec == "repo" {
        use lifeboat_repo::layout::*;
        return compressor(&format!(
            "l{DEFAULT_ZSTD_LEVEL},w{TUNED_ZSTD_WINDOW_LOG},h{TUNED_ZSTD_HASH_LOG},c{TUNED_ZSTD_CHAIN_LOG}"
        ));
    }
    let mut level = 3;
    let mut params = Vec::new();
    for tok in spec.split(',') {
        let split = tok
            .find(|c: char| c.is_ascii_digit() || c == '-')
            .unwrap_or_else(|| panic!("token {tok:?} has no value"));
        let (key, val) = tok.split_at(split);
        let v: i32 = val
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {tok:?}"));
        let u = v as u32;
        match key {
            "l" => level = v,
            "st" => params.push(CParameter::Strategy(strategy(u))),
            "w" => params.push(CParameter::WindowLog(u)),
            "h" => params.push(CParameter::HashLog(u)),
            "c" => params.push(CParameter::ChainLog(u)),
            "s" => params.push(CParameter::SearchLog(u)),
            "m" => params.push(CParameter::MinMatch(u)),
            "t" => params.push(CParameter::TargetLength(u)),
            _ => panic!("unknown key {key:?} in {tok:?}"),
        }
    }
    let mut c = zstd::bulk::Compressor::new(level).expect("compressor");
    for p in params {
        c.set_parameter(p).expect("set_parameter");
    }
    c
}

/// Offsets of `count` chunks spread evenly over the non-zero chunks of `file`.
fn sample(file: &File, chunk: u64, count: usize) -> Vec<u64> {
    use rustix::fs::{seek, SeekFrom};
    let size = file.metadata().expect("stat").len();
    let mut data_chunks = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let Ok(start) = seek(file, SeekFrom::Data(pos)) else {
            break;
        };
        let end = seek(file, SeekFrom::Hole(start)).unwrap_or(size);
        let first = start / chunk;
        let last = (end - 1) / chunk;
        for n in first..=last {
            if data_chunks.last() != Some(&n) {
                data_chunks.push(n);
            }
        }
        pos = end;
    }
    // SEEK_DATA also reports cached pages of unwritten extents, which
    // depends on the page cache: keep only the chunks that hold non-zeros.
    let mut buf = vec![0u8; chunk as usize];
    data_chunks.retain(|n| {
        let len = file.read_at(&mut buf, n * chunk).expect("read");
        buf[..len].iter().any(|&b| b != 0)
    });
    let step = (data_chunks.len() as f64 / count as f64).max(1.0);
    (0..count)
        .map(|i| (i as f64 * step) as usize)
        .filter_map(|i| data_chunks.get(i))
        .map(|n| n * chunk)
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let image = args
        .next()
        .expect("usage: zstd_params IMAGE [options] SPEC...");
    let (mut chunks, mut chunk_size, mut reps) = (300usize, 4u64 << 20, 2usize);
    let mut oracle = false;
    let mut specs = Vec::new();
    while let Some(a) = args.next() {
        let mut num = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("number")
        };
        match a.as_str() {
            "--chunks" => chunks = num() as usize,
            "--chunk-size" => chunk_size = num(),
            "--reps" => reps = num() as usize,
            "--oracle" => oracle = true,
            _ => specs.push(a),
        }
    }
    let file = File::open(&image).expect("open image");
    let mut data = Vec::new();
    for off in sample(&file, chunk_size, chunks) {
        let mut buf = vec![0u8; chunk_size as usize];
        let n = file.read_at(&mut buf, off).expect("read");
        buf.truncate(n);
        if buf.iter().any(|&b| b != 0) {
            data.push(buf);
        }
    }
    let total: usize = data.iter().map(Vec::len).sum();
    println!(
        "{} chunks, {:.1} MiB of {image}",
        data.len(),
        total as f64 / 1048576.0
    );
    println!(
        "{:<28} {:>14} {:>8} {:>8} {:>9} {:>8}",
        "spec", "bytes", "ratio", "vs 1st", "cpu s", "MB/s"
    );
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(chunk_size as usize));
    let mut compressors: Vec<_> = specs.iter().map(|s| compressor(s)).collect();
    let mut best = vec![u64::MAX; specs.len()];
    let mut sizes = vec![0usize; specs.len()];
    // (bytes, wall ns) of every chunk (outer) under every setting, for --oracle.
    let mut per_chunk = vec![vec![(0usize, u64::MAX); specs.len()]; data.len()];
    // Runs interleave the settings, so a busy spell of the machine
    // slows all of them alike; the minimum of each is kept.
    for _ in 0..reps.max(1) {
        for (i, c) in compressors.iter_mut().enumerate() {
            let t0 = thread_cpu_ns();
            let mut size = 0usize;
            for (j, chunk) in data.iter().enumerate() {
                out.clear();
                let wall = std::time::Instant::now();
                let n = c.compress_to_buffer(chunk, &mut out).expect("compress");
                if oracle {
                    let ns = wall.elapsed().as_nanos() as u64;
                    per_chunk[j][i] = (n, per_chunk[j][i].1.min(ns));
                }
                size += n;
            }
            best[i] = best[i].min(thread_cpu_ns() - t0);
            sizes[i] = size;
        }
    }
    let base = sizes.first().copied().unwrap_or(1) as f64;
    for ((spec, size), ns) in specs.iter().zip(sizes).zip(best) {
        let secs = ns as f64 / 1e9;
        println!(
            "{:<28} {:>14} {:>8.4} {:>8.4} {:>9.3} {:>8.0}",
            spec,
            size,
            size as f64 / total as f64,
            size as f64 / base,
            secs,
            total as f64 / secs / 1e6
        );
    }
    if oracle {
        print_oracle(&specs, &per_chunk);
    }
}

/// Prints the least total time of a per-chunk choice among the settings
/// under size budgets relative to the first setting: a Lagrangian sweep
/// (each chunk takes the setting minimising `ns + lambda * bytes`), which
/// finds the optimal choices on the lower convex hull of (bytes, time).
fn print_oracle(specs: &[String], per_chunk: &[Vec<(usize, u64)>]) {
    if specs.is_empty() {
        return;
    }
    let base_bytes: usize = per_chunk.iter().map(|c| c[0].0).sum();
    let base_ns: u64 = per_chunk.iter().map(|c| c[0].1).sum();
    let choose = |lambda: f64| {
        let (mut bytes, mut ns, mut picks) = (0usize, 0u64, vec![0usize; specs.len()]);
        for options in per_chunk {
            let cost = |&(b, t): &(usize, u64)| t as f64 + lambda * b as f64;
            let pick = (0..options.len())
                .min_by(|&a, &b| cost(&options[a]).total_cmp(&cost(&options[b])))
                .unwrap_or(0);
            bytes += options[pick].0;
            ns += options[pick].1;
            picks[pick] += 1;
        }
        (bytes, ns, picks)
    };
    println!("oracle (time and size relative to {}):", specs[0]);
    for budget in [1.00, 1.01, 1.02, 1.03] {
        let limit = (budget * base_bytes as f64) as usize;
        let best = (0..=4000)
            .map(|k| choose(k as f64 * 0.05))
            .filter(|(bytes, _, _)| *bytes <= limit)
            .min_by_key(|(_, ns, _)| *ns);
        match best {
            Some((bytes, ns, picks)) => println!(
                "  size <= {budget:.2}: size {:.4} time {:.3} chunks per spec {picks:?}",
                bytes as f64 / base_bytes as f64,
                ns as f64 / base_ns as f64
            ),
            None => println!("  size <= {budget:.2}: no choice fits"),
        }
    }
}
