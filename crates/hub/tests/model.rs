//! The hub against a `HashMap` model: random adds, activations, removals, publications and
//! other pushes over a few clients and channels; after every step the deliveries each client
//! received, the return values and the counts match the model. The model and the comparison
//! live in `switchboard_test_support::hub_model`, shared with the `hub_ops` fuzz target.

use proptest::prelude::*;
use switchboard_test_support::hub_model::{CHANNELS, CLIENTS, Op, check};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..CLIENTS, 0..CHANNELS, 0..=3usize)
            .prop_map(|(client, channel, max)| Op::Add { client, channel, max }),
        3 => (0..CLIENTS, 0..CHANNELS, -3..=2i64)
            .prop_map(|(client, channel, shift)| Op::Activate { client, channel, shift }),
        1 => (0..CLIENTS, 0..CHANNELS).prop_map(|(client, channel)| Op::Remove { client, channel }),
        5 => (0..CHANNELS).prop_map(|channel| Op::Publish { channel }),
        1 => (0..CHANNELS).prop_map(|channel| Op::Push { channel }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hub_matches_the_model(shards in 1..=4usize, ops in prop::collection::vec(op(), 1..=60)) {
        check(shards, &ops).map_err(TestCaseError::fail)?;
    }
}
