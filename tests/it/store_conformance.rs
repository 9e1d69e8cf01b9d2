//! One conformance suite for the `ResourceStore` port, run against every backend (memory,
//! SQLite and PostgreSQL): ids never reused, conditional changes, pages, retried creates,
//! limits, concurrent creates. Each check runs on a fresh, empty store of its own.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::postgres::{self, PASSWORD};
use common::ScratchStore;
use futures::executor::block_on;
use mrmat_rust_api_grpc::store::{
    self, Capacity, Changed, Created, Held, PageQuery, Resource, ResourceStore, StoreError,
    StoreOptions, Stores,
};

/// A store of one backend, fresh, holding at most `max_resources`; dropped after its check.
type Open<'a> = &'a dyn Fn(usize) -> Opened;

/// A store and what must outlive it (its file).
struct Opened {
    stores: Option<Stores>,
    _file: Option<ScratchStore>,
}

impl Opened {
    fn resources(&self) -> &Arc<dyn ResourceStore> {
        &self.stores.as_ref().expect("open").resources
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        // The store's threads end with it; its file goes after.
        drop(self.stores.take());
    }
}

fn open_with(options: StoreOptions, file: Option<ScratchStore>, max_resources: usize) -> Opened {
    let options = StoreOptions {
        capacity: Capacity {
            max_resources,
            ..Capacity::default()
        },
        ..options
    };
    Opened {
        stores: Some(store::open(&options).expect("the store opens")),
        _file: file,
    }
}

/// One check of the suite, given the backend to open fresh stores of.
type Check = fn(Open<'_>);

/// Every check of the suite, by name.
const CHECKS: &[(&str, Check)] = &[
    (
        "ids_start_at_zero_and_are_never_reused",
        ids_start_at_zero_and_are_never_reused,
    ),
    (
        "a_resource_reads_back_as_stored",
        a_resource_reads_back_as_stored,
    ),
    (
        "missing_ids_are_missing_to_every_call",
        missing_ids_are_missing_to_every_call,
    ),
    (
        "a_change_at_another_version_is_stale",
        a_change_at_another_version_is_stale,
    ),
    (
        "pages_follow_id_owner_and_limit",
        pages_follow_id_owner_and_limit,
    ),
    (
        "a_retried_create_answers_the_first",
        a_retried_create_answers_the_first,
    ),
    (
        "the_limit_refuses_creates_until_a_removal",
        the_limit_refuses_creates_until_a_removal,
    ),
    (
        "concurrent_creates_get_distinct_ids",
        concurrent_creates_get_distinct_ids,
    ),
];

/// Runs every check against the backend `open` makes, each on a store of its own.
fn conforms(open: Open<'_>) {
    for (name, check) in CHECKS {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(open)));
        if let Err(panic) = outcome {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{name}: {why}");
        }
    }
}

fn ok<T>(pending: store::Pending<T>) -> T {
    block_on(pending).expect("the store answers")
}

fn create(store: &Arc<dyn ResourceStore>, owner_id: u64, name: &str) -> Resource {
    ok(store.create(owner_id, name.to_owned()))
}

fn ids_start_at_zero_and_are_never_reused(open: Open<'_>) {
    let opened = open(100);
    let store = opened.resources();
    assert_eq!(create(store, 1, "a").id, 0);
    assert_eq!(create(store, 1, "b").id, 1);
    assert!(ok(store.remove(1)));
    assert!(!ok(store.remove(1)), "a second removal finds nothing");
    assert_eq!(create(store, 1, "c").id, 2);
    let ids: Vec<u64> = ok(store.list()).iter().map(|r| r.id).collect();
    assert_eq!(ids, [0, 2]);
}

fn a_resource_reads_back_as_stored(open: Open<'_>) {
    let opened = open(100);
    let store = opened.resources();
    let name = "ünïcödé, \"quotes\", 'apostrophes'; DROP TABLE resources; -- 🦀";
    let made = create(store, u64::from(u32::MAX) + 7, name);
    assert_eq!(made.version, 1);
    assert_eq!(ok(store.get(made.id)), Some(made.clone()));
    let renamed = ok(store.rename(made.id, String::new())).expect("exists");
    assert_eq!(
        (renamed.owner_id, renamed.name.as_str()),
        (made.owner_id, "")
    );
    assert_eq!(renamed.version, 2, "every change is a new version");
    assert_eq!(ok(store.get(made.id)), Some(renamed));
}

fn missing_ids_are_missing_to_every_call(open: Open<'_>) {
    let opened = open(100);
    let store = opened.resources();
    assert_eq!(ok(store.get(7)), None);
    assert_eq!(ok(store.update(7, "x".into(), None)), Changed::Missing);
    assert_eq!(ok(store.update(7, "x".into(), Some(1))), Changed::Missing);
    assert_eq!(ok(store.delete(7, None)), Changed::Missing);
    assert_eq!(ok(store.rename(7, "x".into())), None);
    assert!(ok(store.list()).is_empty());
}

fn a_change_at_another_version_is_stale(open: Open<'_>) {
    let opened = open(100);
    let store = opened.resources();
    let made = create(store, 1, "a");
    let renamed = match ok(store.update(made.id, "b".into(), Some(1))) {
        Changed::Done(resource) => resource,
        other => panic!("at version 1: {other:?}"),
    };
    assert_eq!(renamed.version, 2);
    assert_eq!(
        ok(store.update(made.id, "c".into(), Some(1))),
        Changed::Stale { current: 2 }
    );
    assert_eq!(
        ok(store.delete(made.id, Some(1))),
        Changed::Stale { current: 2 }
    );
    assert_eq!(
        ok(store.get(made.id)),
        Some(renamed),
        "nothing stale was applied"
    );
    assert_eq!(ok(store.delete(made.id, Some(2))), Changed::Done(()));
}

fn pages_follow_id_owner_and_limit(open: Open<'_>) {
    let opened = open(100);
    let store = opened.resources();
    let ids: Vec<u64> = (0..10)
        .map(|n| create(store, n % 2, &format!("r{n}")).id)
        .collect();
    let page = |from_id, owner_id, limit| -> Vec<u64> {
        ok(store.page(PageQuery {
            from_id,
            owner_id,
            limit,
        }))
        .iter()
        .map(|r| r.id)
        .collect()
    };
    assert_eq!(page(0, None, 4), ids[..4]);
    assert_eq!(page(ids[4], None, 100), ids[4..]);
    assert_eq!(page(0, Some(1), 3), [ids[1], ids[3], ids[5]]);
    assert_eq!(page(ids[6], Some(1), 100), [ids[7], ids[9]]);
    assert_eq!(page(0, Some(5), 100), Vec::<u64>::new());
    assert_eq!(page(ids[9] + 1, None, 100), Vec::<u64>::new());
    assert_eq!(page(0, None, 0), Vec::<u64>::new());
    // Positions a forged page token can carry: past every id, on every store (a database keeps
    // ids as signed 64-bit integers, and 2^63 must not read as a negative id, from the start).
    for from_id in [1 << 63, (1 << 63) + 1, u64::MAX] {
        assert_eq!(
            page(from_id, None, 100),
            Vec::<u64>::new(),
            "from {from_id}"
        );
        assert_eq!(
            page(from_id, Some(1), 100),
            Vec::<u64>::new(),
            "from {from_id}"
        );
    }
    // Owners a request can name: any u64 lists only that owner's resources, on every store.
    let far = create(store, u64::MAX, "far").id;
    assert_eq!(page(0, Some(u64::MAX), 100), [far]);
    assert_eq!(page(0, Some(1 << 63), 100), Vec::<u64>::new());
}

fn a_retried_create_answers_the_first(open: Open<'_>) {
    let opened = open(100);
    let store = opened.resources();
    let first = match ok(store.create_once(Some("req-1".into()), 1, "a".into())) {
        Created::Done(resource) => resource,
        other => panic!("a new request id: {other:?}"),
    };
    assert_eq!(
        ok(store.create_once(Some("req-1".into()), 1, "a".into())),
        Created::Done(first.clone())
    );
    assert_eq!(
        ok(store.create_once(Some("req-1".into()), 2, "b".into())),
        Created::Conflict(first.clone())
    );
    assert_eq!(ok(store.list()), [first], "created once");
}

fn the_limit_refuses_creates_until_a_removal(open: Open<'_>) {
    let opened = open(2);
    let store = opened.resources();
    let a = create(store, 1, "a");
    create(store, 1, "b");
    assert_eq!(
        block_on(store.create(1, "c".into())),
        Err(StoreError::full(Held::Resources, 2))
    );
    assert!(ok(store.remove(a.id)));
    assert_eq!(create(store, 1, "c").id, 2);
}

fn concurrent_creates_get_distinct_ids(open: Open<'_>) {
    let opened = open(1_000);
    let store = opened.resources();
    let ids: BTreeSet<u64> = std::thread::scope(|scope| {
        let creators: Vec<_> = (0..4)
            .map(|n| {
                scope.spawn(move || {
                    let pending: Vec<_> = (0..50)
                        .map(|i| store.create(n, format!("t{n}-{i}")))
                        .collect();
                    pending
                        .into_iter()
                        .map(|p| block_on(p).expect("created").id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        creators
            .into_iter()
            .flat_map(|c| c.join().expect("a creator"))
            .collect()
    });
    assert_eq!(ids, (0..200).collect(), "200 creates, 200 ids, none twice");
    assert_eq!(ok(store.list()).len(), 200);
}

#[test]
fn the_memory_store_conforms() {
    conforms(&|max| open_with(StoreOptions::memory(), None, max));
}

#[test]
fn the_sqlite_store_conforms() {
    conforms(&|max| {
        let file = ScratchStore::new();
        open_with(StoreOptions::sqlite(&file.path), Some(file), max)
    });
}

/// The suite on a throwaway PostgreSQL cluster (`ci/test --quick` skips it).
mod with_postgres {
    use super::*;

    #[test]
    fn the_postgres_store_conforms() {
        let cluster = postgres::shared();
        let password = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(password.path(), PASSWORD).expect("write the password");
        conforms(&|max| {
            let url = cluster.new_database();
            open_with(
                StoreOptions::postgres(&url, Some(password.path())),
                None,
                max,
            )
        });
    }
}
