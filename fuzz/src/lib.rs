//! Support for writ's fuzz targets (`fuzz_targets/*.rs`): the checks, shared
//! with `tests/fuzz_regressions.rs`, and an allocation guard.

pub mod checks;

pub use checks::check;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// The largest single allocation a fuzz input may cause. libFuzzer's own
/// `-malloc_limit_mb` needs a sanitizer's malloc hooks, which a stable build
/// does not have; `-rss_limit_mb` still bounds the total.
pub const MAX_ALLOC_BYTES: usize = 256 << 20;

/// The system allocator, aborting (a crash libFuzzer records with its input)
/// on any single request over [`MAX_ALLOC_BYTES`].
pub struct Guard;

// SAFETY: every call is forwarded unchanged to `System`; the guard only adds
// a size check before it.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: same contract as this method.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_size(layout.size());
        // SAFETY: same contract as this method.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check_size(new_size);
        // SAFETY: same contract as this method.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as this method.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn check_size(size: usize) {
    if size > MAX_ALLOC_BYTES {
        // No allocation from here on: write a fixed message, then abort.
        let _ = std::io::stderr()
            .write_all(b"==writ-fuzz== single allocation over MAX_ALLOC_BYTES (256 MiB)\n");
        std::process::abort();
    }
}

#[global_allocator]
static GLOBAL: Guard = Guard;
