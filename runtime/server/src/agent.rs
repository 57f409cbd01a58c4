//! The remote agent: named functions that run on the memory server, next to the data.
//!
//! AIFM's remote agent (OSDI'20 §4.4) ships a computation to the data instead of the data to
//! the computation: an aggregate over a far-memory array returns 8 bytes instead of the array.
//! A client calls one with the `compute` opcode: `compute(name, args) -> result bytes`.
//!
//! Functions get a read-only [`StoreView`] and their argument bytes and return result bytes;
//! each defines its own argument and result encoding (the built-ins use little-endian
//! integers). A function that returns an error sends that error to the client; one that panics
//! becomes an [`ErrorKind::Panicked`] reply and the server keeps serving. A call runs on the
//! connection's thread, so a long function delays only that connection's later requests.
//!
//! Built-ins (`args` of `count` and `sum_u64` is the data-structure id as `u64` LE):
//!
//! | name      | result (u64 LE)                                                           |
//! | --------- | ------------------------------------------------------------------------- |
//! | `count`   | number of objects in the data structure                                   |
//! | `sum_u64` | wrapping sum of every object read as little-endian `u64` words           |
//! | `column`  | args/result: `farmem_net::compute::ColumnCall` / `ColumnResult` encodings: count, sum, min, max, mean, median, unique, histogram, buckets, filter, count-where, gather, map and pairwise ops on a chunked column ([`crate::columns`]) |
//! | `column_at` | as `column`, with the arguments prefixed by the input column's data-structure id (u64 LE), as `Backend::compute` sends them; single-column ops only |
//! | `column_with` | as `column`, with the arguments prefixed by a count and the data-structure ids (u64 LE) of every column the call names, as `Backend::compute_with` sends them; how a client runs map and pairwise |
//! | `hash_index` | args/result: `farmem_net::hash` encodings: get, put, remove, len, get-many, clear on a far-memory hash map's server-side index ([`crate::hash_index`]) |
//!
//! # How to add one
//!
//! 1. Write a type (or a closure) implementing [`RemoteFunction`]:
//!    ```
//!    use farmem_server::agent::{FunctionRegistry, RemoteFunction};
//!    use farmem_server::store::StoreView;
//!    use farmem_server::Result;
//!
//!    /// Largest object size in a data structure.
//!    struct MaxLen;
//!    impl RemoteFunction for MaxLen {
//!        fn call(&self, store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
//!            let ds = farmem_server::agent::ds_arg("max_len", args)?;
//!            let mut max = 0u64;
//!            store.for_each_object(ds, |_, data| max = max.max(data.len() as u64))?;
//!            Ok(max.to_le_bytes().to_vec())
//!        }
//!    }
//!    let mut functions = FunctionRegistry::with_builtins();
//!    functions.register("max_len", MaxLen).unwrap();
//!    ```
//! 2. Start the server with it: `Server::start_with_functions(config, functions)`.
//! 3. Call it: `client.compute("max_len", &ds.to_le_bytes())`.
//!
//! Names are unique; registering a taken name is an error. Built-ins that every server should
//! offer go into [`FunctionRegistry::with_builtins`].

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::DsId;

use crate::store::StoreView;

/// A function the server runs on behalf of clients.
pub trait RemoteFunction: Send + Sync {
    /// Runs the function over `store` with the client's `args`; the result goes back verbatim.
    fn call(&self, store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>>;
}

impl<F> RemoteFunction for F
where
    F: Fn(&StoreView<'_>, &[u8]) -> Result<Vec<u8>> + Send + Sync,
{
    fn call(&self, store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
        self(store, args)
    }
}

/// Decodes the common argument layout "one data-structure id, u64 LE".
pub fn ds_arg(function: &str, args: &[u8]) -> Result<DsId> {
    let raw: [u8; 8] = args.try_into().map_err(|_| {
        Error::invalid(format!(
            "{function} takes one data-structure id (8 bytes, u64 little-endian), got {} bytes",
            args.len()
        ))
    })?;
    Ok(u64::from_le_bytes(raw))
}

/// The functions a server offers, by name.
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    functions: HashMap<String, Arc<dyn RemoteFunction>>,
}

impl FunctionRegistry {
    /// A registry with no functions.
    pub fn empty() -> FunctionRegistry {
        FunctionRegistry::default()
    }

    /// A registry holding the built-ins (`count`, `sum_u64`, `column`, `column_at`,
    /// `column_with`, `hash_index`).
    pub fn with_builtins() -> FunctionRegistry {
        let mut r = FunctionRegistry::empty();
        r.insert("count", Arc::new(count));
        r.insert("sum_u64", Arc::new(sum_u64));
        r.insert(
            farmem_net::compute::COLUMN_FUNCTION,
            Arc::new(crate::columns::column),
        );
        r.insert(
            farmem_net::compute::COLUMN_AT_FUNCTION,
            Arc::new(crate::columns::column_at),
        );
        r.insert(
            farmem_net::compute::COLUMN_WITH_FUNCTION,
            Arc::new(crate::columns::column_with),
        );
        r.insert(
            farmem_net::hash::HASH_INDEX_FUNCTION,
            Arc::new(crate::hash_index::HashIndex::new()),
        );
        r
    }

    fn insert(&mut self, name: &str, f: Arc<dyn RemoteFunction>) {
        self.functions.insert(name.to_string(), f);
    }

    /// Adds `function` under `name`; a taken name is an [`ErrorKind::InvalidArgument`] error.
    pub fn register(&mut self, name: &str, function: impl RemoteFunction + 'static) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid("a remote function needs a non-empty name"));
        }
        if self.functions.contains_key(name) {
            return Err(Error::invalid(format!(
                "a remote function named {name:?} is already registered: pick another name"
            )));
        }
        self.insert(name, Arc::new(function));
        Ok(())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.functions.keys().cloned().collect();
        v.sort();
        v
    }

    /// Runs `name` with `args`: [`ErrorKind::NotFound`] for an unknown name, and a panic inside
    /// the function becomes [`ErrorKind::Panicked`].
    pub fn call(&self, name: &str, store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
        let f = self.functions.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "no remote function named {name:?} on this server (it has: {})",
                    self.names().join(", ")
                ),
            )
        })?;
        match catch_unwind(AssertUnwindSafe(|| f.call(store, args))) {
            Ok(r) => r.map_err(|e| e.with_context(format!("remote function {name}"))),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string());
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!("remote function {name} panicked: {msg}"),
                ))
            }
        }
    }
}

fn count(store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
    let ds = ds_arg("count", args)?;
    Ok(store.len(ds)?.to_le_bytes().to_vec())
}

fn sum_u64(store: &StoreView<'_>, args: &[u8]) -> Result<Vec<u8>> {
    let ds = ds_arg("sum_u64", args)?;
    let mut sum = 0u64;
    let mut bad: Option<(u64, usize)> = None;
    store.for_each_object(ds, |id, data| {
        if data.len() % 8 != 0 {
            bad.get_or_insert((id, data.len()));
            return;
        }
        for word in data.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            sum = sum.wrapping_add(u64::from_le_bytes(w));
        }
    })?;
    if let Some((id, len)) = bad {
        return Err(Error::invalid(format!(
            "sum_u64: object {id} of data structure {ds} is {len} bytes, not a whole number of \
             u64 words"
        )));
    }
    Ok(sum.to_le_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn builtins_count_and_sum() {
        let store = Store::new(1 << 20);
        store.create_ds(3, 0).unwrap();
        let words: Vec<u8> = [1u64, 2, 3].iter().flat_map(|w| w.to_le_bytes()).collect();
        store.write(3, 1, &words).unwrap();
        store.write(3, 2, &10u64.to_le_bytes()).unwrap();
        let r = FunctionRegistry::with_builtins();
        let view = StoreView::new(&store);
        assert_eq!(
            r.call("count", &view, &3u64.to_le_bytes()).unwrap(),
            2u64.to_le_bytes()
        );
        assert_eq!(
            r.call("sum_u64", &view, &3u64.to_le_bytes()).unwrap(),
            16u64.to_le_bytes()
        );
        store.write(3, 9, b"odd").unwrap();
        let e = r.call("sum_u64", &view, &3u64.to_le_bytes()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.context().contains("object 9"), "{e}");
        assert_eq!(
            r.call("count", &view, b"x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            r.call("nope", &view, b"").unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn register_rejects_duplicates_and_panics_become_errors() {
        let mut r = FunctionRegistry::with_builtins();
        assert_eq!(
            r.register("count", |_: &StoreView<'_>, _: &[u8]| Ok(vec![]))
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        r.register("boom", |_: &StoreView<'_>, _: &[u8]| -> Result<Vec<u8>> {
            panic!("kaboom")
        })
        .unwrap();
        let store = Store::new(10);
        let e = r.call("boom", &StoreView::new(&store), b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked);
        assert!(e.context().contains("kaboom"), "{e}");
    }
}
