//! A codec connection in the server role fed arbitrary peer bytes, cut at arbitrary points,
//! with the clock moving and the application sending and closing in between: it must never
//! panic and must keep its invariants (see `switchboard_fuzz::connection`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_codec::Role;

fuzz_target!(|data: &[u8]| switchboard_fuzz::connection::run(Role::Server, data));
