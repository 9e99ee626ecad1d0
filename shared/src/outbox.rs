//! The client's outbox rules — the pure part of a sync loop: what to send next, and which result
//! of an answer belongs to which item. The web app runs them on the phone; the deterministic
//! simulation (`tests/tests/simulation.rs`) runs the same functions for hundreds of simulated
//! devices against a real store.

use uuid::Uuid;

/// Something a client keeps queued until the server has answered it.
pub trait Queued {
    /// The idempotency key: time-ordered (UUIDv7), so that the order of ids is the order the
    /// items were made in.
    fn id(&self) -> Uuid;
    /// Whether it still waits for the server's answer.
    fn waiting(&self) -> bool;
}

/// The next batch to send: the waiting items, oldest first, at most `limit`.
pub fn next_batch<T: Queued + Clone>(items: &[T], limit: usize) -> Vec<T> {
    let mut waiting: Vec<T> = items.iter().filter(|i| i.waiting()).cloned().collect();
    // Ids are unique: an unstable sort orders them the same, with less code.
    waiting.sort_unstable_by_key(Queued::id);
    waiting.truncate(limit);
    waiting
}

/// The items of a sent batch with their results, in order, as far as the answer names them by
/// id. An item whose result is missing, or names another id, is left out: it stays waiting and is
/// sent again, and the server answers the replay with its first outcome.
pub fn answered<'a, T: Queued, R>(
    batch: &'a [T],
    results: &'a [R],
    id_of: impl Fn(&R) -> Option<Uuid> + 'a,
) -> impl Iterator<Item = (&'a T, &'a R)> {
    batch.iter().zip(results).filter(move |(item, result)| id_of(result) == Some(item.id()))
}

/// Puts the `updated` items in the place of those with the same id in `all`; an id not in `all`
/// is left out (another tab may have dropped it meanwhile).
pub fn replace_by_id<T: Queued + Clone>(all: &mut [T], updated: &[T]) {
    for u in updated {
        if let Some(slot) = all.iter_mut().find(|item| item.id() == u.id()) {
            *slot = u.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(u128, bool);

    impl Queued for Item {
        fn id(&self) -> Uuid {
            Uuid::from_u128(self.0)
        }
        fn waiting(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn the_oldest_waiting_items_go_first() {
        let items = [Item(5, true), Item(1, false), Item(3, true), Item(2, true), Item(4, true)];
        assert_eq!(next_batch(&items, 3), [Item(2, true), Item(3, true), Item(4, true)]);
        assert_eq!(next_batch(&items, 10).len(), 4);
        assert!(next_batch(&[Item(1, false)], 10).is_empty());
    }

    #[test]
    fn updates_take_the_place_of_their_ids() {
        let mut all = vec![Item(1, true), Item(2, true)];
        replace_by_id(&mut all, &[Item(2, false), Item(7, false)]);
        assert_eq!(all, [Item(1, true), Item(2, false)]);
    }

    #[test]
    fn only_results_naming_their_item_settle_it() {
        let batch = [Item(1, true), Item(2, true), Item(3, true)];
        // The second result names another id, the third is missing: both stay waiting.
        let results = [Some(1u128), Some(9)];
        let settled: Vec<u128> =
            answered(&batch, &results, |r| r.map(Uuid::from_u128)).map(|(item, _)| item.0).collect();
        assert_eq!(settled, [1]);
    }
}
