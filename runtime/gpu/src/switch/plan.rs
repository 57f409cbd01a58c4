//! Choosing the layer groups of a pipelined switch (PipeSwitch §4.2, "optimal model-aware
//! grouping"), exactly.
//!
//! # The cost of a grouping
//!
//! Layers `0..n` are cut into contiguous groups `g_1 … g_k`. Group `j` is one host→device copy of
//! its layers' (contiguous, aligned) bytes: `T_j = o + s_j × p` (per-group overhead `o` — the copy
//! latency plus the ready-event record — plus bytes × picoseconds per byte). Copies run back to
//! back on the copy stream, so group `j` has arrived at `F_j = T_1 + … + T_j`. The compute stream
//! runs every layer in order (`c_i` = launch + max(work, bytes read × read time per byte)), a group
//! only after it arrived. The forward pass therefore ends at the length of the longest path
//! through the two chains:
//!
//! ```text
//!   E = max over j of ( F_j + C(first layer of g_j .. n) )        C(a..n) = c_a + … + c_{n-1}
//! ```
//!
//! (group `j`'s arrival, then everything from its first layer on, runs strictly in order).
//! This is exactly what [`SimDevice`](crate::device::SimDevice) does with the same costs, which
//! the tests check to the picosecond.
//!
//! # The algorithm: binary search on the answer with a greedy feasibility test
//!
//! For a candidate time `X`, "is there a grouping with `E ≤ X`?" is decided greedily: build groups
//! left to right and make each one as *long* as its own term allows
//! (`F_{j-1} + o + s(a..b)·p + C(a..n) ≤ X`, largest `b`). Why greedy is safe: take any feasible
//! grouping whose current group ends at `b1 < b2` (the greedy end). Let `[c, d]` be its group
//! containing `b2`. Replace everything from `b1+1` to `d` by the single group `[b2+1, d]` (nothing,
//! if `d = b2`). Its arrival time is `F_prev + 2o + s(a..d)·p` — at most the other's, which paid
//! `o` at least twice for the same bytes — and its term uses `C(b2+1..n) ≤ C(c..n)`; every later
//! group is unchanged and arrives no later. So the greedy choice keeps every term `≤ X`: if any
//! grouping is feasible, greedy finds one. Feasibility is monotone in `X`, and the optimum is one
//! of integer picoseconds between 0 and the single-group cost, so a binary search over `X`
//! (≈ 64 rounds of an `O(n)` greedy, `O(n log T)` in all) returns the exact optimum — no pruning
//! heuristics, and the tests compare it with brute force over all `2^(n-1)` groupings.
//!
//! # The lower bound the benchmark compares against
//!
//! Every grouping has a group holding layer 0 (it arrives no earlier than `o + s_0·p`, then all of
//! the compute follows) and a group holding layer `n-1` (it arrives no earlier than
//! `o + S·p` with `S` all bytes, then layer `n-1` runs), so
//!
//! ```text
//!   E ≥ max( o + s_0·p + C(0..n),  o + S·p + c_{n-1} )          (lower_bound_ps)
//! ```
//!
//! for every grouping. (The per-layer bytes `s_i` are the aligned spans, as copied.)

use std::ops::Range;

use farmem_error::{Error, Result};

/// The per-layer costs a plan is computed from, in picoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanCosts {
    /// Bytes copied for each layer (its aligned span in the pool).
    pub span_bytes: Vec<u64>,
    /// Compute time of each layer, ps (launch included).
    pub compute_ps: Vec<u64>,
    /// Fixed cost of each group's copy, ps.
    pub group_overhead_ps: u64,
    /// Copy time per byte, ps.
    pub copy_ps_per_byte: u64,
}

impl PlanCosts {
    /// The number of layers.
    pub fn layers(&self) -> usize {
        self.span_bytes.len()
    }

    fn check(&self) -> Result<()> {
        if self.span_bytes.is_empty() || self.span_bytes.len() != self.compute_ps.len() {
            return Err(Error::invalid(format!(
                "plan costs: {} spans and {} compute times; give one of each per layer, at least \
                 one layer",
                self.span_bytes.len(),
                self.compute_ps.len()
            )));
        }
        Ok(())
    }

    /// Copy time of the group of layers `range`, ps.
    pub fn transfer_ps(&self, range: Range<usize>) -> u64 {
        let bytes: u64 = self.span_bytes[range].iter().sum();
        self.group_overhead_ps
            .saturating_add(bytes.saturating_mul(self.copy_ps_per_byte))
    }

    /// The start-up time (all layers computed) of `groups`, ps, by the model in the module note.
    pub fn startup_ps(&self, groups: &[Range<usize>]) -> u64 {
        let mut arrived = 0u64;
        let mut computed = 0u64;
        for g in groups {
            arrived = arrived.saturating_add(self.transfer_ps(g.clone()));
            let work: u64 = self.compute_ps[g.clone()].iter().sum();
            computed = computed.max(arrived).saturating_add(work);
        }
        computed
    }

    /// The lower bound of the module note: no grouping starts up faster, ps.
    pub fn lower_bound_ps(&self) -> u64 {
        let n = self.layers();
        if n == 0 {
            return 0;
        }
        let all_compute: u64 = self.compute_ps.iter().sum();
        let first = self.transfer_ps(0..1).saturating_add(all_compute);
        let last = self
            .transfer_ps(0..n)
            .saturating_add(self.compute_ps[n - 1]);
        first.max(last)
    }
}

/// A grouping of a model's layers and its predicted start-up time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlan {
    /// Contiguous layer ranges covering `0..n` in order.
    pub groups: Vec<Range<usize>>,
    /// The start-up time the cost model predicts, ps.
    pub predicted_ps: u64,
}

impl GroupPlan {
    /// Everything in one group: transfer the whole model, then run it (the "stop and start"
    /// baseline).
    pub fn sequential(costs: &PlanCosts) -> Result<GroupPlan> {
        costs.check()?;
        let everything = 0..costs.layers();
        Ok(Self::with_groups(costs, vec![everything]))
    }

    /// One group per layer, each with its own copy and ready event (pipelining without grouping).
    pub fn per_layer(costs: &PlanCosts) -> Result<GroupPlan> {
        costs.check()?;
        Ok(Self::with_groups(
            costs,
            (0..costs.layers()).map(|i| i..i + 1).collect(),
        ))
    }

    /// The grouping with the smallest start-up time (see the module note for why it is exact).
    pub fn optimal(costs: &PlanCosts) -> Result<GroupPlan> {
        costs.check()?;
        let n = costs.layers();
        // suffix[i] = C(i..n).
        let mut suffix = vec![0u64; n + 1];
        for i in (0..n).rev() {
            suffix[i] = suffix[i + 1].saturating_add(costs.compute_ps[i]);
        }
        let mut lo = costs.lower_bound_ps();
        let everything = 0..n;
        let mut hi = costs.startup_ps(std::slice::from_ref(&everything));
        let mut best = greedy(costs, &suffix, hi).ok_or_else(|| {
            Error::internal("plan: the single group is infeasible at its own cost")
        })?;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match greedy(costs, &suffix, mid) {
                Some(groups) => {
                    hi = mid;
                    best = groups;
                }
                None => lo = mid + 1,
            }
        }
        Ok(Self::with_groups(costs, best))
    }

    /// A plan with explicit groups (validated: contiguous, in order, covering every layer).
    pub fn with_explicit_groups(costs: &PlanCosts, groups: Vec<Range<usize>>) -> Result<GroupPlan> {
        costs.check()?;
        let mut next = 0;
        for g in &groups {
            if g.start != next || g.end <= g.start {
                return Err(Error::invalid(format!(
                    "plan: group {g:?} does not start at layer {next} or is empty; groups must be \
                     contiguous, non-empty and in order"
                )));
            }
            next = g.end;
        }
        if next != costs.layers() {
            return Err(Error::invalid(format!(
                "plan: groups cover layers 0..{next} of {}; cover them all",
                costs.layers()
            )));
        }
        Ok(Self::with_groups(costs, groups))
    }

    fn with_groups(costs: &PlanCosts, groups: Vec<Range<usize>>) -> GroupPlan {
        let predicted_ps = costs.startup_ps(&groups);
        GroupPlan {
            groups,
            predicted_ps,
        }
    }
}

/// Greedy feasibility: the grouping with every term `≤ x`, each group as long as possible, or
/// `None` if no grouping meets `x`.
fn greedy(costs: &PlanCosts, suffix: &[u64], x: u64) -> Option<Vec<Range<usize>>> {
    let n = costs.layers();
    let mut groups = Vec::new();
    let mut arrived = 0u64;
    let mut a = 0;
    while a < n {
        let base = arrived
            .saturating_add(costs.group_overhead_ps)
            .saturating_add(suffix[a]);
        let mut bytes = 0u64;
        let mut end = a;
        while end < n {
            let more = bytes.saturating_add(costs.span_bytes[end]);
            if base.saturating_add(more.saturating_mul(costs.copy_ps_per_byte)) > x {
                break;
            }
            bytes = more;
            end += 1;
        }
        if end == a {
            return None;
        }
        arrived = arrived
            .saturating_add(costs.group_overhead_ps)
            .saturating_add(bytes.saturating_mul(costs.copy_ps_per_byte));
        groups.push(a..end);
        a = end;
    }
    Some(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every grouping of `n` layers (each of the `n-1` gaps cut or not).
    fn all_groupings(n: usize) -> Vec<Vec<Range<usize>>> {
        (0u32..1 << (n - 1))
            .map(|cuts| {
                let mut groups = Vec::new();
                let mut start = 0;
                for gap in 0..n - 1 {
                    if cuts & (1 << gap) != 0 {
                        groups.push(start..gap + 1);
                        start = gap + 1;
                    }
                }
                groups.push(start..n);
                groups
            })
            .collect()
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn optimal_matches_brute_force_on_random_models() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..300 {
            let n = 1 + (case % 10);
            let costs = PlanCosts {
                span_bytes: (0..n).map(|_| 1 + xorshift(&mut rng) % 5_000).collect(),
                compute_ps: (0..n).map(|_| xorshift(&mut rng) % 40_000).collect(),
                group_overhead_ps: xorshift(&mut rng) % 20_000,
                copy_ps_per_byte: 1 + xorshift(&mut rng) % 12,
            };
            let best = all_groupings(n)
                .iter()
                .map(|g| costs.startup_ps(g))
                .min()
                .unwrap();
            let plan = GroupPlan::optimal(&costs).unwrap();
            assert_eq!(
                plan.predicted_ps, best,
                "case {case}: {costs:?} -> {plan:?}"
            );
            assert!(
                costs.lower_bound_ps() <= best,
                "lower bound above optimum: {costs:?}"
            );
            assert!(GroupPlan::sequential(&costs).unwrap().predicted_ps >= best);
            assert!(GroupPlan::per_layer(&costs).unwrap().predicted_ps >= best);
        }
    }

    #[test]
    fn startup_follows_the_two_chain_recurrence() {
        let costs = PlanCosts {
            span_bytes: vec![10, 10, 10],
            compute_ps: vec![100, 5, 5],
            group_overhead_ps: 1,
            copy_ps_per_byte: 2,
        };
        // One group: 1 + 60 = 61 arrives, then 110 of compute.
        let everything = 0..3;
        assert_eq!(costs.startup_ps(std::slice::from_ref(&everything)), 171);
        // Per layer: arrivals 21, 42, 63; compute 21..121, 121..126, 126..131.
        assert_eq!(costs.startup_ps(&[0..1, 1..2, 2..3]), 131);
        assert_eq!(costs.lower_bound_ps(), 131);
        assert_eq!(GroupPlan::optimal(&costs).unwrap().predicted_ps, 131);
    }

    #[test]
    fn explicit_groups_are_validated() {
        let costs = PlanCosts {
            span_bytes: vec![1, 1, 1],
            compute_ps: vec![1, 1, 1],
            group_overhead_ps: 0,
            copy_ps_per_byte: 1,
        };
        assert!(GroupPlan::with_explicit_groups(&costs, vec![0..1, 2..3]).is_err());
        let short = 0..2;
        assert!(GroupPlan::with_explicit_groups(&costs, vec![short]).is_err());
        assert!(GroupPlan::with_explicit_groups(&costs, vec![0..0, 0..3]).is_err());
        assert!(GroupPlan::with_explicit_groups(&costs, vec![0..2, 2..3]).is_ok());
        let empty = PlanCosts {
            span_bytes: vec![],
            compute_ps: vec![],
            group_overhead_ps: 0,
            copy_ps_per_byte: 1,
        };
        assert!(GroupPlan::optimal(&empty).is_err());
    }
}
