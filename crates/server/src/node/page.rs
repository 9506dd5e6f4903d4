//! Replies that carry publications (`history`, recovery on `subscribe`), cut into pages that
//! fit a connection's outbound queue.
//!
//! A reply larger than the queue's byte budget would cut its own reader off as a slow
//! consumer, and the protocol would then tell it to reconnect and recover the same gap: a
//! loop any publisher can set up. Pages keep every reply well inside the budget.

use std::borrow::Borrow;
use std::io;

use serde::Serialize;
use switchboard_proto::{Format, Publication, StreamPosition};

/// The most bytes of publications one reply carries on a connection whose outbound queue
/// holds `queue_bytes`: a quarter of it, so that a page fits beside the pushes already
/// queued (the queue's other three quarters) and is never what overflows it.
pub(crate) fn budget(queue_bytes: usize) -> usize {
    queue_bytes / QUEUE_SHARE
}

/// Cuts `publications` (consecutive, oldest first) to the first page that fits in `budget`
/// bytes encoded in `format`, at least one publication so that paging always makes
/// progress. Returns where the next page starts (the last publication kept, in `epoch`)
/// when some were left out.
pub(crate) fn cut<P: Borrow<Publication>>(
    publications: &mut Vec<P>,
    format: Format,
    budget: usize,
    epoch: &str,
) -> Option<StreamPosition> {
    let keep = fitting(publications, format, budget);
    if keep == publications.len() {
        return None;
    }
    publications.truncate(keep);
    let last = publications.last().map_or(0, |p| p.borrow().offset);
    Some(StreamPosition { offset: last, epoch: epoch.to_owned() })
}

/// How many of `publications`, from the first, fit in `budget` bytes: at least one.
fn fitting<P: Borrow<Publication>>(publications: &[P], format: Format, budget: usize) -> usize {
    let mut used = 0usize;
    for (i, publication) in publications.iter().enumerate() {
        // One byte more for the separator: JSON's comma, MessagePack's array header.
        used = used.saturating_add(encoded_len(format, publication.borrow()) + 1);
        if used > budget {
            return i.max(1);
        }
    }
    publications.len()
}

/// The size of `value` encoded in `format`, counted without building the bytes.
fn encoded_len(format: Format, value: &impl Serialize) -> usize {
    let mut counter = Counter(0);
    // Publications always encode (string keys only); a failure would show as a short count,
    // which only makes the page larger, never wrong.
    let _ = match format {
        Format::Json => serde_json::to_writer(&mut counter, value).map_err(|_| ()),
        Format::Msgpack => rmp_serde::encode::write_named(&mut counter, value).map_err(|_| ()),
    };
    counter.0
}

/// A writer that only counts.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The outbound queue holds this many pages.
const QUEUE_SHARE: usize = 4;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn publications(sizes: &[usize]) -> Vec<Publication> {
        sizes
            .iter()
            .zip(1..)
            .map(|(&size, offset)| Publication {
                offset,
                data: json!("x".repeat(size)),
                info: None,
            })
            .collect()
    }

    #[test]
    fn counts_exactly_what_the_encoder_writes() {
        let publication = &publications(&[100])[0];
        for format in [Format::Json, Format::Msgpack] {
            assert_eq!(encoded_len(format, publication), format.encode(publication).unwrap().len());
        }
    }

    #[test]
    fn cuts_after_the_last_publication_that_fits() {
        let one = encoded_len(Format::Json, &publications(&[1000])[0]) + 1;
        let mut page = publications(&[1000; 5]);
        let next = cut(&mut page, Format::Json, 3 * one + one / 2, "e");
        assert_eq!(page.iter().map(|p| p.offset).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(next, Some(StreamPosition { offset: 3, epoch: "e".into() }));
        let mut exact = publications(&[1000; 3]);
        assert_eq!(cut(&mut exact, Format::Json, 3 * one, "e"), None);
        assert_eq!(exact.len(), 3);
    }

    #[test]
    fn a_page_holds_at_least_one_publication() {
        for format in [Format::Json, Format::Msgpack] {
            let mut page = publications(&[5000, 10]);
            let next = cut(&mut page, format, 100, "e");
            assert_eq!(page.len(), 1);
            assert_eq!(next.map(|n| n.offset), Some(1));
        }
    }

    #[test]
    fn a_page_is_a_quarter_of_the_queue() {
        assert_eq!(budget(1 << 20), 256 << 10);
    }
}
