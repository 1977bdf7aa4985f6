//! Which ClamAV signatures a scan uses, and whether they can prove anything.
//!
//! A scan that ran ClamAV without signatures (an empty database directory,
//! a machine where freshclam never ran) or with signatures months old
//! proves nothing; such a ClamAV run must not count towards a clean
//! verdict. [`ClamSignatures`] describes the database:
//!
//! - official parts (`daily`, `main`, `bytecode` as `.cvd`, `.cld` or
//!   `.cud`): name, version and build time, read from the 512-byte header
//!   every such file starts with
//!   (`ClamAV-VDB:<time>:<version>:<signatures>:<level>:<md5>:<dsig>:<builder>:<unix time>`);
//! - other signature files (`.ndb`, `.hdb`, `.ldb`, ... : local signatures,
//!   or the database a test generates): no version, so their count, the
//!   BLAKE3 digest of their names and contents and their newest
//!   modification time stand for it;
//! - through clamd: its `VERSION` answer (`ClamAV 1.0.7/27425/Mon Oct 14
//!   08:19:00 2024`: engine, daily version, daily build time in clamd's
//!   local time, read here in this process's local time).
//!
//! The database's date is the newest official part's build time, or when
//! there is none the newest modification time of the other files.
//! [`ClamSignatures::unusable`] says why a database cannot be trusted: none
//! at all, an unreadable header, or a date older than the caller's limit.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};

/// ClamAV's signature directory on Debian (what `clamscan` reads without
/// `-d`).
pub const DEFAULT_DB_DIR: &str = "/var/lib/clamav";

/// Extensions of official, versioned database files.
const OFFICIAL: &[&str] = &["cvd", "cld", "cud"];
/// Extensions of other signature files ClamAV loads.
const OTHER: &[&str] = &[
    "ndb", "hdb", "hsb", "ldb", "mdb", "msb", "cdb", "idb", "pdb", "gdb", "wdb", "ndu", "ldu",
    "hdu", "hsu", "mdu", "msu", "yar", "yara", "cbc", "crb", "ftm",
];
/// Length of the header of an official database file.
const HEADER_LEN: usize = 512;

/// One official database file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPart {
    /// `daily`, `main`, `bytecode`...
    pub name: String,
    pub version: u64,
    pub built: DateTime<Utc>,
}

/// The signatures a ClamAV scan uses (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamSignatures {
    /// The engine, e.g. `ClamAV 1.4.6`.
    pub engine: String,
    /// The database path, or `clamd (SOCKET)`.
    pub location: String,
    pub parts: Vec<DbPart>,
    /// Other signature files: how many, their digest, their newest mtime.
    pub other_files: usize,
    pub other_digest: Option<String>,
    pub other_newest: Option<DateTime<Utc>>,
    /// What makes the database unusable whatever its age (a header that
    /// does not parse).
    pub problems: Vec<String>,
}

impl ClamSignatures {
    /// The database's version: the `daily` part's, else the highest part's.
    pub fn version(&self) -> Option<u64> {
        self.parts
            .iter()
            .find(|p| p.name == "daily")
            .or_else(|| self.parts.iter().max_by_key(|p| p.version))
            .map(|p| p.version)
    }

    /// The database's date (see the module doc).
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.parts
            .iter()
            .map(|p| p.built)
            .max()
            .or(self.other_newest)
    }

    /// One line naming the database, e.g. `/var/lib/clamav: daily 27425
    /// (2024-10-14 08:19 UTC), main 62 (...)` or `/db: 2 signature files,
    /// blake3 ab12..., newest modified 2026-12-07 08:00 UTC`.
    pub fn describe(&self) -> String {
        let when = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        let mut parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| format!("{} {} ({})", p.name, p.version, when(&p.built)))
            .collect();
        if self.other_files > 0 {
            parts.push(format!(
                "{} signature files, blake3 {}, newest modified {}",
                self.other_files,
                self.other_digest.as_deref().unwrap_or("?"),
                self.other_newest.as_ref().map_or("?".to_string(), when)
            ));
        }
        if parts.is_empty() {
            parts.push("no signatures".to_string());
        }
        format!("{}: {}", self.location, parts.join(", "))
    }

    /// Why a scan with these signatures proves nothing at `now`, or `None`
    /// when it does: no signatures, a damaged header, or a date older than
    /// `max_age`.
    pub fn unusable(&self, max_age: chrono::Duration, now: DateTime<Utc>) -> Option<String> {
        if let Some(p) = self.problems.first() {
            return Some(p.clone());
        }
        let Some(time) = self.time() else {
            return Some(format!(
                "no ClamAV signature database in {} (run freshclam, or pass --clamav-db)",
                self.location
            ));
        };
        (time < now - max_age).then(|| {
            format!(
                "the ClamAV signature database {} is dated {}, older than {} days \
                 (run freshclam, or raise --clamav-max-age)",
                self.location,
                time.format("%Y-%m-%d %H:%M UTC"),
                max_age.num_days()
            )
        })
    }
}

/// The signatures in `db` (a file or a directory of them); `engine` is the
/// engine's name and version.
pub fn inspect_path(db: &Path, engine: &str) -> ClamSignatures {
    let mut sig = ClamSignatures {
        engine: engine.to_string(),
        location: db.display().to_string(),
        parts: Vec::new(),
        other_files: 0,
        other_digest: None,
        other_newest: None,
        problems: Vec::new(),
    };
    let files: Vec<PathBuf> = if db.is_dir() {
        match std::fs::read_dir(db) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(e) => {
                sig.problems.push(format!("reading {}: {e}", db.display()));
                return sig;
            }
        }
    } else if db.exists() {
        vec![db.to_path_buf()]
    } else {
        Vec::new()
    };
    let mut others: Vec<PathBuf> = Vec::new();
    for f in files {
        let ext = f.extension().and_then(|x| x.to_str()).unwrap_or_default();
        if OFFICIAL.contains(&ext) {
            match read_part(&f) {
                Ok(p) => sig.parts.push(p),
                Err(why) => sig.problems.push(format!("{}: {why}", f.display())),
            }
        } else if OTHER.contains(&ext) {
            others.push(f);
        }
    }
    sig.parts
        .sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
    others.sort();
    if !others.is_empty() {
        let mut h = blake3::Hasher::new();
        for f in &others {
            match std::fs::read(f) {
                Ok(bytes) => {
                    h.update(f.file_name().unwrap_or_default().as_encoded_bytes());
                    h.update(&(bytes.len() as u64).to_le_bytes());
                    h.update(&bytes);
                }
                Err(e) => sig.problems.push(format!("reading {}: {e}", f.display())),
            }
            let mtime = std::fs::metadata(f).and_then(|m| m.modified()).ok();
            if let Some(t) = mtime.map(DateTime::<Utc>::from) {
                sig.other_newest = Some(sig.other_newest.map_or(t, |n| n.max(t)));
            }
        }
        sig.other_files = others.len();
        sig.other_digest = Some(h.finalize().to_hex().get(..16).unwrap_or("").to_string());
    }
    sig
}

/// The name, version and build time in the header of an official
/// database file.
fn read_part(path: &Path) -> Result<DbPart, String> {
    use std::io::Read;
    let mut head = [0u8; HEADER_LEN];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("reading its header: {e}"))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let (version, built) = parse_header(&head)
        .ok_or_else(|| "not a ClamAV database header (ClamAV-VDB:...)".to_string())?;
    Ok(DbPart {
        name,
        version,
        built,
    })
}

/// Version and build time of a `ClamAV-VDB:` header.
pub fn parse_header(head: &[u8]) -> Option<(u64, DateTime<Utc>)> {
    let text = std::str::from_utf8(head).ok()?;
    let text = text.trim_end_matches(['\0', ' ', '\n']);
    let f: Vec<&str> = text.split(':').collect();
    if f.first() != Some(&"ClamAV-VDB") {
        return None;
    }
    let version = f.get(2)?.trim().parse().ok()?;
    let built = f
        .get(8)
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .or_else(|| {
            DateTime::parse_from_str(f.get(1)?.trim(), "%d %b %Y %H-%M %z")
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })?;
    Some((version, built))
}

/// The engine version and daily database of a `clamscan --version` or
/// clamd `VERSION` answer: `ClamAV 1.0.7/27425/Mon Oct 14 08:19:00 2024`
/// (the date in the answering process's local time); just `ClamAV 1.4.6`
/// when it found no daily database.
pub fn parse_version_line(line: &str) -> (String, Option<DbPart>) {
    let line = line.trim();
    let mut it = line.splitn(3, '/');
    let engine = it.next().unwrap_or_default().to_string();
    let part = match (it.next(), it.next()) {
        (Some(v), Some(date)) => v.trim().parse::<u64>().ok().and_then(|version| {
            let naive =
                chrono::NaiveDateTime::parse_from_str(date.trim(), "%a %b %e %H:%M:%S %Y").ok()?;
            let built = chrono::Local
                .from_local_datetime(&naive)
                .earliest()?
                .with_timezone(&Utc);
            Some(DbPart {
                name: "daily".to_string(),
                version,
                built,
            })
        }),
        _ => None,
    };
    (engine, part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Vec<u8> {
        let mut h = text.as_bytes().to_vec();
        h.resize(HEADER_LEN, b' ');
        h
    }

    #[test]
    fn headers_give_version_and_build_time() {
        let h =
            header("ClamAV-VDB:14 Oct 2024 04-19 -0400:27425:2068375:90:0123:X:raynman:1728893940");
        let (v, t) = parse_header(&h).unwrap();
        assert_eq!(v, 27425);
        assert_eq!(t.to_rfc3339(), "2024-10-14T08:19:00+00:00");
        // No unix time: the text date.
        let h = header("ClamAV-VDB:14 Oct 2024 04-19 -0400:27425:2068375:90:0123:X:raynman:");
        assert_eq!(
            parse_header(&h).unwrap().1.to_rfc3339(),
            "2024-10-14T08:19:00+00:00"
        );
        assert_eq!(parse_header(&header("ClamAV-VDB:x:y")), None);
        assert_eq!(parse_header(&header("MZ\u{90}")), None);
        assert_eq!(parse_header(&[0xff; 512]), None);
    }

    #[test]
    fn version_lines_with_and_without_a_database() {
        let (e, p) = parse_version_line("ClamAV 1.0.7/27425/Mon Oct 14 08:19:00 2024\n");
        assert_eq!(e, "ClamAV 1.0.7");
        let p = p.unwrap();
        assert_eq!((p.name.as_str(), p.version), ("daily", 27425));
        assert_eq!(
            parse_version_line("ClamAV 1.4.6\n"),
            ("ClamAV 1.4.6".into(), None)
        );
        assert_eq!(parse_version_line("ClamAV 1.4.6/x/y").1, None);
    }

    #[test]
    fn databases_are_described_dated_and_judged() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let week = chrono::Duration::days(7);
        let empty = inspect_path(dir.path(), "ClamAV 1.4.6");
        assert!(empty
            .unusable(week, now)
            .unwrap()
            .contains("no ClamAV signature database"));
        assert_eq!(empty.time(), None);

        std::fs::write(dir.path().join("local.ndb"), "Sig:0:*:41414141\n").unwrap();
        std::fs::write(dir.path().join("freshclam.dat"), "not signatures").unwrap();
        let custom = inspect_path(dir.path(), "ClamAV 1.4.6");
        assert_eq!(custom.other_files, 1);
        assert_eq!(custom.version(), None);
        assert_eq!(custom.unusable(week, now), None);
        assert!(
            custom.describe().contains("1 signature files, blake3 "),
            "{}",
            custom.describe()
        );
        assert!(custom
            .unusable(week, now + chrono::Duration::days(8))
            .is_some());

        std::fs::write(
            dir.path().join("daily.cld"),
            header("ClamAV-VDB:14 Oct 2024 04-19 -0400:27425:2068375:90:0123:X:raynman:1728893940"),
        )
        .unwrap();
        let old = inspect_path(dir.path(), "ClamAV 1.4.6");
        assert_eq!(old.version(), Some(27425));
        let why = old.unusable(week, now).unwrap();
        assert!(
            why.contains("dated 2024-10-14 08:19 UTC, older than 7 days"),
            "{why}"
        );
        assert!(
            old.describe()
                .contains("daily 27425 (2024-10-14 08:19 UTC)"),
            "{}",
            old.describe()
        );

        std::fs::write(dir.path().join("main.cvd"), "garbage").unwrap();
        let bad = inspect_path(dir.path(), "ClamAV 1.4.6");
        assert!(bad.unusable(week, now).unwrap().contains("main.cvd"));
    }
}
