//! Times one full backup of a disk image into an existing repository, the
//! way `lifeboat backup` does it, without building the CLI (whose other
//! crates may be mid-edit). Prints wall time, the process's user and system
//! CPU seconds (comparable across runs on a shared machine) and stored bytes.
//!
//! ```text
//! LIFEBOAT_PASSPHRASE=x lifeboat repo init --repo /var/tmp/r
//! LIFEBOAT_PASSPHRASE=x cargo run --release -p lifeboat-engine --example backup_bench -- /var/tmp/r IMAGE
//! ```

use lifeboat_engine::{backup_vm, DiskSource, NoProgress};
use lifeboat_repo::Repository;
use std::path::Path;
use std::time::Instant;

/// This process's (user, system) CPU seconds, from `/proc/self/stat`.
fn cpu_seconds() -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')').ok_or("bad /proc/self/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(f.get(i).ok_or("short /proc/self/stat")?.parse::<f64>()? / 100.0)
    };
    Ok((tick(11)?, tick(12)?))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(repo), Some(image)) = (args.next(), args.next()) else {
        return Err("usage: backup_bench REPO IMAGE".into());
    };
    let pass = std::env::var("LIFEBOAT_PASSPHRASE").ok();
    let repo = Repository::open(Path::new(&repo), pass.as_deref())?;
    let options = lifeboat_formats::OpenOptions::default();
    let (source, _) = DiskSource::open_file("disk0", Path::new(&image), &options)?;
    let sources = [source];
    let (u0, s0) = cpu_seconds()?;
    let t0 = Instant::now();
    let summary = backup_vm(&repo, "bench", &sources, &NoProgress)?;
    let wall = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu_seconds()?;
    let stored: u64 = summary
        .manifest
        .disks
        .iter()
        .map(|d| d.stats.new_stored_bytes)
        .sum();
    println!(
        "wall {wall:.2} s  user {:.2} s  sys {:.2} s  cpu {:.2} s  stored {stored} bytes",
        u1 - u0,
        s1 - s0,
        u1 - u0 + s1 - s0
    );
    Ok(())
}
