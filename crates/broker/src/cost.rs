//! What a publication costs in memory, for the in-memory broker's history budget.

use std::mem::size_of;

use crate::{Publication, Value};

/// What a publication in history costs in memory: an estimate from its shape, since the
/// allocator does not say. A decoded value costs far more than its wire form (`[0,0,…]`
/// takes 2 bytes an element on the wire, a 32-byte `Value` each in memory), so the estimate
/// walks it: every `Value` slot, string and array capacity, object entry (key, value and
/// B-tree node share), the publisher's info and the `Arc` holding the publication (the
/// caller adds its own slot), with each heap block rounded up to the allocator's 16 bytes
/// plus a header. The recursion goes as deep as the value, which the decoders bound (and
/// dropping the value recurses as deep).
pub(crate) fn publication_cost(publication: &Publication) -> usize {
    heap_block(ARC_HEADER + size_of::<Publication>())
        + value_cost(&publication.data)
        + publication.info.as_ref().map_or(0, |info| {
            string_cost(&info.id)
                + info.user.as_ref().map_or(0, string_cost)
                + info.info.as_ref().map_or(0, value_cost)
        })
}

/// The heap a value owns beyond its own `Value` slot.
fn value_cost(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => string_cost(s),
        Value::Array(items) => {
            heap_block(items.capacity() * size_of::<Value>())
                + items.iter().map(value_cost).sum::<usize>()
        }
        Value::Object(map) => {
            map.iter().map(|(key, value)| OBJECT_ENTRY + string_cost(key) + value_cost(value)).sum()
        }
    }
}

fn string_cost(s: &String) -> usize {
    heap_block(s.capacity())
}

/// An allocation of `bytes` as the allocator sees it: rounded up to 16, plus its header.
fn heap_block(bytes: usize) -> usize {
    if bytes == 0 { 0 } else { bytes.div_ceil(16) * 16 + ALLOCATION_HEADER }
}

/// The strong and weak counts in front of an `Arc`'s value.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// What the allocator keeps in front of each block (glibc: 8 bytes, rounded to 16).
const ALLOCATION_HEADER: usize = 16;

/// One object entry: its key and value slots in a B-tree node, and the node's own
/// bookkeeping shared out over its entries (nodes hold 5 to 11 entries; 6 assumed).
const OBJECT_ENTRY: usize = size_of::<String>() + size_of::<Value>() + 24;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_a_decoded_value_by_its_memory_not_its_wire_size() {
        let zeros = Value::Array(vec![Value::from(0); 32_768]);
        let wire = zeros.to_string().len();
        let cost = publication_cost(&Publication { offset: 1, data: zeros, info: None });
        assert!(cost >= 32_768 * size_of::<Value>(), "{cost}");
        assert!(cost > 15 * wire, "{cost} vs {wire} on the wire");
        let text = Value::from("x".repeat(1000));
        let cost = publication_cost(&Publication { offset: 1, data: text, info: None });
        assert!((1000..1000 + 256).contains(&cost), "{cost}");
    }
}
