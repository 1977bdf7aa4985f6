//! Reading the windows of the files a tree scan checks in windows (see
//! [`crate::scan`] and [`crate::locality`]), with a few threads.
//!
//! On a published restore point each read of a changed chunk not yet in the
//! publisher's cache waits for the chunk to be fetched, decrypted and
//! decompressed; one reader at a time leaves the publisher's threads and
//! the CPUs mostly idle. [`READ_THREADS`] threads take the files in the
//! given order (by volume address, so files sharing a chunk are read close
//! together) and hand each file's window buffers to the caller's thread,
//! where YARA runs; a bounded channel keeps at most a few files' buffers
//! waiting.
//!
//! Each file is read with readahead off (`POSIX_FADV_RANDOM`): a window
//! reaches a few bytes past a changed chunk into its unchanged neighbour,
//! and readahead there would ask the publisher for more of that chunk than
//! the chunk edge its block store keeps, making it decode the neighbour
//! whole (a quarter of the chunks decoded in a bench re-scan).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;

use crate::cache::ContentKey;
use crate::fiemap::FileExtent;

/// Threads reading windows.
pub const READ_THREADS: usize = 4;

/// A file of a tree waiting to be scanned in windows.
#[derive(Debug)]
pub(crate) struct Windowed {
    pub path: PathBuf,
    /// `/`-prefixed path in the report.
    pub rel: String,
    /// Its extent key, where the result is stored.
    pub key: ContentKey,
    /// File ranges to read, sorted, disjoint.
    pub windows: Vec<Range<u64>>,
    /// Volume address of the first window (the order of the reads).
    pub at: u64,
}

impl Windowed {
    /// A file with its extent map, key and windows.
    pub fn new(
        path: PathBuf,
        rel: String,
        key: ContentKey,
        extents: &[FileExtent],
        windows: Vec<Range<u64>>,
    ) -> Self {
        let at = volume_address(extents, &windows);
        Windowed {
            path,
            rel,
            key,
            windows,
            at,
        }
    }

    /// The bytes of each window, or why the file could not be read.
    fn read(&self) -> Result<Vec<Vec<u8>>, String> {
        let file = File::open(&self.path).map_err(|e| e.to_string())?;
        // Only a hint: a filesystem that ignores it reads ahead, no more.
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Random);
        let mut out = Vec::with_capacity(self.windows.len());
        for w in &self.windows {
            let len = usize::try_from(w.end.saturating_sub(w.start))
                .map_err(|_| format!("window {}..{} too big to read", w.start, w.end))?;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, w.start)
                .map_err(|e| e.to_string())?;
            out.push(buf);
        }
        Ok(out)
    }
}

/// Reads the windows of `items` with [`READ_THREADS`] threads, taking them
/// in order, and calls `each` on this thread with each item and its window
/// buffers (or the read error's text), in the order the reads end. Stops
/// at the first error `each` returns, and returns it.
pub(crate) fn read_windows<E>(
    items: &[Windowed],
    mut each: impl FnMut(&Windowed, Result<Vec<Vec<u8>>, String>) -> Result<(), E>,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel(READ_THREADS);
        for _ in 0..READ_THREADS.min(items.len()) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if tx.send((item, item.read())).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Leaving the loop drops the receiver: blocked readers then stop.
        for (item, read) in rx {
            if let Err(e) = each(item, read) {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    })
}

/// The volume address of the first window's start (or of the next mapped
/// byte after it), 0 when nothing is mapped there.
fn volume_address(extents: &[FileExtent], windows: &[Range<u64>]) -> u64 {
    let Some(start) = windows.first().map(|w| w.start) else {
        return 0;
    };
    extents
        .iter()
        .find(|e| e.logical.saturating_add(e.length) > start)
        .map(|e| e.physical.saturating_add(start.saturating_sub(e.logical)))
        .unwrap_or(0)
}

#[cfg(test)]
// Lists of one range are what the functions take.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn item(path: PathBuf, windows: Vec<Range<u64>>) -> Windowed {
        let key = ContentKey::of_bytes(path.to_string_lossy().as_bytes());
        Windowed::new(path, "/f".into(), key, &[], windows)
    }

    #[test]
    fn every_item_is_read_once_and_errors_are_text_or_stop() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let f = dir.path().join("f");
        std::fs::write(&f, &data).unwrap();
        let mut items: Vec<Windowed> = (0..20u64)
            .map(|i| item(f.clone(), vec![i..i + 10, 5000 + i..5000 + i + 3]))
            .collect();
        items.push(item(dir.path().join("missing"), vec![0..1]));
        items.push(item(f.clone(), vec![9_990..10_001]));
        let mut seen = Vec::new();
        read_windows(&items, |w, r| {
            match r {
                Ok(bufs) => {
                    let want: Vec<&[u8]> = w
                        .windows
                        .iter()
                        .map(|r| &data[r.start as usize..r.end as usize])
                        .collect();
                    assert_eq!(bufs, want);
                    seen.push(w.windows[0].start);
                }
                Err(e) => {
                    assert!(!e.is_empty());
                    seen.push(1_000_000 + w.windows[0].start);
                }
            }
            Ok::<(), ()>(())
        })
        .unwrap();
        seen.sort();
        let mut want: Vec<u64> = (0..20).collect();
        want.extend([1_000_000, 1_009_990]);
        assert_eq!(seen, want);
        // The first error of the callback ends the reads and is returned.
        let mut calls = 0;
        let r = read_windows(&items, |_, _| {
            calls += 1;
            Err("enough")
        });
        assert_eq!((r, calls), (Err("enough"), 1));
        assert_eq!(read_windows(&[], |_, _| Err("never")), Ok(()));
    }

    #[test]
    fn the_address_is_the_first_window_start_on_the_volume() {
        let e = |logical, physical, length| FileExtent {
            logical,
            physical,
            length,
            unwritten: false,
        };
        let map = [e(0, 1000, 100), e(200, 5000, 100)];
        assert_eq!(volume_address(&map, &[10..20]), 1010);
        assert_eq!(volume_address(&map, &[250..260, 0..1]), 5050);
        // In a hole: the next mapped byte.
        assert_eq!(volume_address(&map, &[150..160]), 5000);
        assert_eq!(volume_address(&map, &[400..410]), 0);
        assert_eq!(volume_address(&map, &[]), 0);
    }
}
