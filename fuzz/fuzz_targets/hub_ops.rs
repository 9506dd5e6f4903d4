//! Arbitrary adds, activations, removals, publications and pushes on a
//! `switchboard_hub::Hub`, compared after every step with the reference model the hub's
//! property test uses (`switchboard_test_support::hub_model`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::Cursor;
use switchboard_test_support::hub_model::{Op, check};

/// Enough steps to fill, drain and refill channels; the check is quadratic in the steps.
const MAX_OPS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let shards = usize::from(input.u8() % 4) + 1;
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < MAX_OPS {
        let tag = input.u8();
        let client = usize::from(input.u8());
        let channel = usize::from(input.u8());
        ops.push(match tag % 5 {
            0 => Op::Add { client, channel, max: usize::from(input.u8() % 5) },
            1 => Op::Activate { client, channel, shift: i64::from(input.u8() as i8) },
            2 => Op::Remove { client, channel },
            3 => Op::Publish { channel },
            _ => Op::Push { channel },
        });
    }
    if let Err(e) = check(shards, &ops) {
        panic!("the hub disagrees with the model: {e}");
    }
});
