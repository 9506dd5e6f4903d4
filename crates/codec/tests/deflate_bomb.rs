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
use switchboard_test_support::pair::raw_frame;

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

/// A raw deflate stream (RFC 1951 §3.2.6, fixed Huffman codes) of one literal zero and
/// `copies` back-references of 258 bytes at distance 1: 13 bits for 258 bytes of output.
fn deflate_bomb(copies: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(copies * 13 / 8 + 8);
    let (mut acc, mut nbits) = (0u64, 0u32);
    let mut put = |value: u64, bits: u32, out: &mut Vec<u8>| {
        acc |= value << nbits;
        nbits += bits;
        while nbits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    };
    // Huffman codes go most significant bit first (§3.1.1).
    let code = |c: u64, len: u32| (0..len).fold(0, |r, i| r | ((c >> i) & 1) << (len - 1 - i));
    put(0b010, 3, &mut out); // BFINAL 0, BTYPE 01
    put(code(0b0011_0000, 8), 8, &mut out); // literal 0
    for _ in 0..copies {
        put(code(0b1100_0101, 8), 8, &mut out); // length 258 (code 285)
        put(0, 5, &mut out); // distance 1 (code 0)
    }
    put(0, 7, &mut out); // end of block (code 256), then padding
    out
}

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
