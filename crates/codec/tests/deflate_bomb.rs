//! A decompression bomb against the default limits, with every allocation counted: the
//! connection fails with 1009 having held at most the 16 MiB message limit (plus zlib's
//! few tens of KiB of state), not the 2.6 GB the frame inflates to.
//!
//! One test in its own binary, so the counting allocator sees nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::BytesMut;
use switchboard_codec::{CloseCode, Connection, DeflateParams, Error, Limits, Role};
use switchboard_test_support::pair::{deflate_bomb, raw_frame};

/// Counts live heap bytes and their peak. A reallocation counts as its net change, as it
/// is what the process holds afterwards.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::SeqCst) + by;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to `System` with the same arguments; the counters are
// side bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_gigabyte_bomb_holds_no_more_than_the_message_limit() {
    let limits = Limits::default();
    let max = limits.max_message_size;
    // 16.25 MB of compressed data, just under the 16 MiB frame limit: 2.58 GB inflated.
    let payload = deflate_bomb(10_000_000);
    assert!(payload.len() < max);
    let mut read_buf = BytesMut::from(&raw_frame(0xc2, Some([1, 2, 3, 4]), &payload)[..]);
    drop(payload);
    let mut server = Connection::with_deflate(
        Role::Server,
        limits,
        DeflateParams::default(),
        &Default::default(),
    );
    #[allow(clippy::disallowed_methods)] // Some instant is needed; no timer is armed.
    let now = Instant::now();

    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let result = server.handle_read(&mut read_buf, now);
    let peak = PEAK.load(Ordering::SeqCst) - before;

    assert_eq!(result, Err(Error::InflatedTooLarge { max: max as u64 }));
    assert_eq!(server.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
    // The inflated message and zlib's window and tables, never the bomb's 2.58 GB.
    assert!(peak <= max + (256 << 10), "peak {peak} bytes above {max}");
    assert!(peak >= max, "the limit itself was reached: {peak}");
}
