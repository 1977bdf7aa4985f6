//! The global allocator of the targets built without a sanitizer (`-s
//! none`): the system allocator, aborting on any single allocation over
//! [`LIMIT`]. Under AddressSanitizer libFuzzer reports such an allocation
//! itself (`-malloc_limit_mb`, by default the `-rss_limit_mb` of 2048 the
//! runs use); its malloc hooks need a sanitizer runtime, and a zeroed
//! allocation the process never touches does not raise the RSS the other
//! check watches. So a huge allocation stays a crash (SIGABRT, which
//! libFuzzer saves as `crash-<sha1>`), also without ASan.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Largest single allocation: libFuzzer's default `-malloc_limit_mb` under
/// `-rss_limit_mb=2048`.
pub const LIMIT: usize = 2048 << 20;

/// The system allocator with the [`LIMIT`] check.
pub struct Limited;

/// Writes "malloc(<size>) over the limit" to stderr without allocating and
/// aborts when `size` is over [`LIMIT`].
fn check(size: usize) {
    if size <= LIMIT {
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = size;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"==alloc_limit== out-of-memory (malloc(");
    let _ = err.write_all(&digits[at..]);
    let _ = err.write_all(b")): over the 2048 MiB limit of one allocation\n");
    std::process::abort();
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged (after a check that only aborts), so `System`'s guarantees
// are this allocator's.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: `ptr` and `layout` come from this allocator, which is
        // `System`'s; the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
