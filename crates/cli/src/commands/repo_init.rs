//! `lifeboat repo init`: create a repository, encrypted by default.

use crate::args::InitArgs;
use crate::exit;
use crate::output::{bytes, print_json};
use crate::passphrase::passphrase;
use anyhow::Context;
use lifeboat_repo::{
    check_zstd_level, InitOptions, Repository, DEFAULT_CHUNK_SIZE, DEFAULT_ZSTD_LEVEL,
};

pub fn run(a: InitArgs) -> anyhow::Result<i32> {
    let pass = if a.no_encryption {
        None
    } else {
        Some(passphrase(a.repo.passphrase_file.as_deref())?.context(
            "a new repository is encrypted: give a passphrase in LIFEBOAT_PASSPHRASE or \
             --passphrase-file, or say --no-encryption",
        )?)
    };
    let chunk_size = match a.chunk_size_kib {
        Some(kib) => {
            if !kib.is_power_of_two() || !(256..=16384).contains(&kib) {
                anyhow::bail!("--chunk-size-kib {kib}: must be a power of two from 256 to 16384");
            }
            kib * 1024
        }
        None => DEFAULT_CHUNK_SIZE,
    };
    let zstd_level = a.compression_level.unwrap_or(DEFAULT_ZSTD_LEVEL);
    check_zstd_level(zstd_level).map_err(|e| anyhow::anyhow!("--compression-level: {e}"))?;
    let repo = Repository::init(
        &a.repo.repo,
        InitOptions {
            passphrase: pass,
            chunk_size,
            zstd_level,
        },
    )
    .with_context(|| format!("creating repository {}", a.repo.repo.display()))?;
    if a.output.json {
        print_json(&serde_json::json!({
            "repository": repo.path(),
            "encrypted": repo.encrypted(),
            "chunk_size": repo.chunk_size(),
            "compression_level": zstd_level,
        }))?;
    } else {
        println!(
            "created repository {} ({}, {} chunks, zstd level {zstd_level})",
            repo.path().display(),
            if repo.encrypted() {
                "encrypted"
            } else {
                "NOT encrypted"
            },
            bytes(u64::from(repo.chunk_size())),
        );
    }
    Ok(exit::OK)
}
