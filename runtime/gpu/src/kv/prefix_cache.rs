//! Automatic prefix caching (vLLM v1): full device blocks keyed by a chained hash, and the LRU
//! list of cached blocks nobody references.
//!
//! # Keys
//!
//! The KV of a token depends on every token before it, so a block's contents are identified by
//! its own token ids *and* everything before it. The key of logical block `i` is the chain
//!
//! ```text
//!   hash_i = H(hash_{i-1} | none, token ids of block i, salt)
//! ```
//!
//! where the salt separates caches that must not mix (a LoRA adapter id, a per-tenant cache salt).
//! Each registered block also keeps its full key (parent hash, tokens, salt) and a lookup compares
//! it, so a 64-bit collision of the block's own hash can never hand out wrong contents.
//!
//! # The LRU list
//!
//! A cached block whose reference count drops to 0 stays registered and goes to the back of an
//! intrusive doubly linked list (arrays `prev`/`next` indexed by block, O(1) insert, remove and
//! pop). The manager evicts from the front only when the free list is empty. Sequences release
//! their blocks last-to-first, so a sequence's tail blocks — useless without their prefix — are
//! evicted before its head (vLLM v1 does the same).
//!
//! Only the manager touches this structure; it keeps `entries[b].is_some()` exactly for the
//! blocks present in `by_hash`, and `in_lru[b]` exactly for registered blocks with reference
//! count 0.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::{BlockId, TokenId};

/// The chained hash naming the contents of one full block (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

/// The chained hash of a full block: its parent block's hash, its token ids and an optional salt.
pub fn hash_block(parent: Option<BlockHash>, tokens: &[TokenId], salt: Option<u64>) -> BlockHash {
    // `DefaultHasher::new()` uses fixed keys: deterministic across runs of one build, which is all a cache
    // inside one process needs (vLLM v1 uses Python's hash or sha256 the same way).
    let mut h = std::hash::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    salt.hash(&mut h);
    BlockHash(h.finish())
}

/// Hit and miss counters of the prefix cache, in blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Full prompt blocks looked up at allocation.
    pub queries: u64,
    /// Of those, blocks found in the cache and reused.
    pub hits: u64,
    /// Cached blocks evicted to satisfy an allocation.
    pub evictions: u64,
    /// Blocks a swap-in found still cached on the device, so it skipped their copy.
    pub swap_in_reuses: u64,
}

impl PrefixCacheStats {
    /// Blocks looked up and not found.
    pub fn misses(&self) -> u64 {
        self.queries - self.hits
    }

    /// `hits / queries`, 0 when nothing was looked up.
    pub fn hit_rate(&self) -> f64 {
        if self.queries == 0 {
            0.0
        } else {
            self.hits as f64 / self.queries as f64
        }
    }
}

/// The full key a block was registered under.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    hash: BlockHash,
    parent: Option<BlockHash>,
    tokens: Box<[TokenId]>,
    salt: Option<u64>,
}

const NIL: u32 = u32::MAX;

/// The hash → block map, per-block keys, and the LRU list of evictable blocks.
#[derive(Debug, Clone)]
pub(crate) struct PrefixCache {
    by_hash: HashMap<BlockHash, BlockId>,
    entries: Vec<Option<Entry>>,
    prev: Vec<u32>,
    next: Vec<u32>,
    in_lru: Vec<bool>,
    head: u32,
    tail: u32,
    lru_len: usize,
    pub(crate) stats: PrefixCacheStats,
}

impl PrefixCache {
    /// An empty cache over a device pool of `capacity` blocks.
    pub(crate) fn new(capacity: usize) -> PrefixCache {
        PrefixCache {
            by_hash: HashMap::new(),
            entries: vec![None; capacity],
            prev: vec![NIL; capacity],
            next: vec![NIL; capacity],
            in_lru: vec![false; capacity],
            head: NIL,
            tail: NIL,
            lru_len: 0,
            stats: PrefixCacheStats::default(),
        }
    }

    /// The block registered under exactly this key, if any.
    pub(crate) fn lookup(
        &self,
        hash: BlockHash,
        parent: Option<BlockHash>,
        tokens: &[TokenId],
        salt: Option<u64>,
    ) -> Option<BlockId> {
        let b = *self.by_hash.get(&hash)?;
        let e = self.entries.get(b.index())?.as_ref()?;
        (e.parent == parent && &*e.tokens == tokens && e.salt == salt).then_some(b)
    }

    /// Registers `b` under the key; false (and nothing changes) if the hash is already taken or
    /// `b` is already registered — the first block with given contents stays the cached one.
    pub(crate) fn insert(
        &mut self,
        b: BlockId,
        hash: BlockHash,
        parent: Option<BlockHash>,
        tokens: &[TokenId],
        salt: Option<u64>,
    ) -> bool {
        if self.by_hash.contains_key(&hash) || self.is_cached(b) {
            return false;
        }
        self.by_hash.insert(hash, b);
        self.entries[b.index()] = Some(Entry {
            hash,
            parent,
            tokens: tokens.into(),
            salt,
        });
        true
    }

    /// Unregisters `b` (which must not be in the LRU list); no-op when it is not registered.
    pub(crate) fn remove(&mut self, b: BlockId) {
        if let Some(e) = self.entries.get_mut(b.index()).and_then(Option::take) {
            self.by_hash.remove(&e.hash);
        }
    }

    /// Whether `b` is registered.
    pub(crate) fn is_cached(&self, b: BlockId) -> bool {
        matches!(self.entries.get(b.index()), Some(Some(_)))
    }

    /// The hash `b` is registered under.
    pub(crate) fn hash_of(&self, b: BlockId) -> Option<BlockHash> {
        self.entries.get(b.index())?.as_ref().map(|e| e.hash)
    }

    /// Number of registered blocks.
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether `b` is in the LRU list (registered and unreferenced).
    pub(crate) fn in_lru(&self, b: BlockId) -> bool {
        self.in_lru.get(b.index()).copied().unwrap_or(false)
    }

    /// Number of evictable blocks.
    pub(crate) fn lru_len(&self) -> usize {
        self.lru_len
    }

    /// Appends `b` as the most recently used evictable block.
    pub(crate) fn lru_push_back(&mut self, b: BlockId) {
        let i = b.0;
        if self.in_lru[i as usize] {
            return;
        }
        self.in_lru[i as usize] = true;
        self.prev[i as usize] = self.tail;
        self.next[i as usize] = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.next[self.tail as usize] = i;
        }
        self.tail = i;
        self.lru_len += 1;
    }

    /// Takes `b` out of the LRU list (it is referenced again); no-op when absent.
    pub(crate) fn lru_remove(&mut self, b: BlockId) {
        let i = b.index();
        if !self.in_lru.get(i).copied().unwrap_or(false) {
            return;
        }
        let (p, n) = (self.prev[i], self.next[i]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[i] = NIL;
        self.next[i] = NIL;
        self.in_lru[i] = false;
        self.lru_len -= 1;
    }

    /// Evicts the least recently used evictable block: out of the list and unregistered.
    pub(crate) fn evict_lru(&mut self) -> Option<BlockId> {
        if self.head == NIL {
            return None;
        }
        let b = BlockId(self.head);
        self.lru_remove(b);
        self.remove(b);
        self.stats.evictions += 1;
        Some(b)
    }

    /// The LRU list front to back, for invariant checks (O(length)).
    pub(crate) fn lru_order(&self) -> Vec<BlockId> {
        let mut out = Vec::with_capacity(self.lru_len);
        let mut i = self.head;
        while i != NIL && out.len() <= self.entries.len() {
            out.push(BlockId(i));
            i = self.next[i as usize];
        }
        out
    }

    /// Every (hash, block) registration, for invariant checks.
    pub(crate) fn registrations(&self) -> impl Iterator<Item = (BlockHash, BlockId)> + '_ {
        self.by_hash.iter().map(|(h, b)| (*h, *b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_hash_depends_on_parent_tokens_and_salt() {
        let a = hash_block(None, &[1, 2, 3], None);
        assert_eq!(a, hash_block(None, &[1, 2, 3], None));
        assert_ne!(a, hash_block(None, &[1, 2, 4], None));
        assert_ne!(a, hash_block(Some(a), &[1, 2, 3], None));
        assert_ne!(a, hash_block(None, &[1, 2, 3], Some(7)));
    }

    #[test]
    fn lookup_checks_the_full_key() {
        let mut c = PrefixCache::new(4);
        let h = hash_block(None, &[1, 2], None);
        assert!(c.insert(BlockId(2), h, None, &[1, 2], None));
        assert!(!c.insert(BlockId(3), h, None, &[1, 2], None), "first stays");
        assert_eq!(c.lookup(h, None, &[1, 2], None), Some(BlockId(2)));
        // Same hash value presented with another key (a forced collision): no hit.
        assert_eq!(c.lookup(h, None, &[9, 9], None), None);
        assert_eq!(c.lookup(h, None, &[1, 2], Some(1)), None);
        c.remove(BlockId(2));
        assert_eq!(c.lookup(h, None, &[1, 2], None), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn lru_order_and_eviction() {
        let mut c = PrefixCache::new(4);
        for i in 0..4u32 {
            let h = hash_block(None, &[i], None);
            assert!(c.insert(BlockId(i), h, None, &[i], None));
            c.lru_push_back(BlockId(i));
        }
        c.lru_remove(BlockId(1));
        c.lru_push_back(BlockId(1)); // touched: most recent now
        assert_eq!(
            c.lru_order(),
            vec![BlockId(0), BlockId(2), BlockId(3), BlockId(1)]
        );
        assert_eq!(c.evict_lru(), Some(BlockId(0)));
        assert!(!c.is_cached(BlockId(0)));
        assert_eq!(c.evict_lru(), Some(BlockId(2)));
        assert_eq!(c.lru_len(), 2);
        assert_eq!(c.stats.evictions, 2);
        c.lru_remove(BlockId(3));
        c.lru_remove(BlockId(1));
        assert_eq!(c.evict_lru(), None);
    }
}
