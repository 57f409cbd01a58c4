//! What the KV property tests (`gpu_kv_props`) and the device-store differential tests
//! (`gpu_kv_device`) share: the random operation alphabet that drives a `BlockManager`, the
//! model's per-token KV hash and the prompts it allocates. Each test file keeps its own harness:
//! one asserts every error kind, the other compares two stores byte for byte.

use std::collections::BTreeMap;

use farmem_gpu::kv::{SeqId, TokenId};
use proptest::prelude::*;

/// One random operation on a `BlockManager`; `pick` chooses a live sequence (modulo their count).
#[derive(Clone, Debug)]
pub enum Op {
    /// A new group: `shared` tokens of a common document, then `own` private tokens.
    Allocate {
        doc: u8,
        shared: usize,
        own: usize,
        salted: bool,
    },
    Append {
        pick: usize,
        token: TokenId,
    },
    Fork {
        pick: usize,
    },
    Free {
        pick: usize,
    },
    SwapOut {
        pick: usize,
    },
    SwapIn {
        pick: usize,
    },
}

/// Random operations; `swap_weight` weighs each of `SwapOut` and `SwapIn` (out of 10 + 2 × it),
/// since the device tests exercise swapping harder than the manager's property test.
pub fn op(swap_weight: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..3, 0usize..14, 0usize..6, proptest::bool::weighted(0.2)).prop_map(
            |(doc, shared, own, salted)| Op::Allocate { doc, shared, own, salted }
        ),
        5 => (any::<usize>(), 0u32..4).prop_map(|(pick, token)| Op::Append { pick, token }),
        1 => any::<usize>().prop_map(|pick| Op::Fork { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        swap_weight => any::<usize>().prop_map(|pick| Op::SwapOut { pick }),
        swap_weight => any::<usize>().prop_map(|pick| Op::SwapIn { pick }),
    ]
}

/// The model's state after the token at `position`: a hash of the whole prefix (as real keys and
/// values depend on it), so a wrong prefix-cache hit, lost swap or bad copy shows.
pub fn prefix_hash(tokens: &[TokenId], salt: Option<u64>, position: usize) -> u64 {
    let mut z = salt.unwrap_or(0x5EED);
    for &t in &tokens[..=position] {
        z = (z ^ u64::from(t))
            .wrapping_mul(0x100_0000_01B3)
            .rotate_left(17);
    }
    z
}

/// The prompt of group `group` for `Op::Allocate`: `shared` tokens of document `doc` (common to
/// every group of that document, so prefix caching can hit) then `own` tokens no other group has.
pub fn prompt(doc: u8, shared: usize, own: usize, group: u64) -> Vec<TokenId> {
    let mut prompt: Vec<TokenId> = (0..shared as u32)
        .map(|i| u32::from(doc) * 100 + i)
        .collect();
    prompt.extend((0..own as u32).map(|i| 10_000 + group as u32 * 10 + i));
    prompt
}

/// The live sequence `pick` chooses (modulo their count), if any is live.
pub fn pick_seq(seqs: &BTreeMap<SeqId, Option<u64>>, pick: usize) -> Option<SeqId> {
    let n = seqs.len();
    (n > 0).then(|| *seqs.keys().nth(pick % n).unwrap())
}
