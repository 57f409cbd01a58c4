//! Pipelined model switching (PipeSwitch, OSDI'20): switch a GPU from one model to another in
//! little more than the time it takes to copy the new model's weights.
//!
//! A "stop and start" switch copies all of model B's weights to the GPU and only then runs its
//! first forward pass. PipeSwitch overlaps the two: B's layers travel in *groups* on a copy
//! stream while the compute stream already runs the groups that have arrived. Grouping trades
//! per-group overhead (one copy call and one synchronisation each) against pipelining (a smaller
//! first group starts compute sooner); [`plan`] picks the optimal grouping exactly.
//!
//! | file | concept |
//! | --- | --- |
//! | [`model`] | layer profiles (ResNet-152-like, BERT-base-like), weights in pinned host memory |
//! | [`plan`] | the start-up time of a grouping, the optimal grouping, the lower bound |
//! | [`cost`] | a device's costs (exact for the simulator, measured with events on a GPU) |
//! | `worker` | the one device pool, active/standby workers, the switch itself |
//!
//! Invariants (tested): the switch allocates nothing and creates no stream or event; every layer
//! runs only after its group's copy completed (its checksum of the pool bytes equals the
//! host weights'); on the simulator the measured start-up time equals the plan's prediction.

pub mod cost;
pub mod model;
pub mod plan;
mod worker;

pub use cost::CostModel;
pub use model::{layer_span, HostModel, LayerProfile, ModelProfile, LAYER_ALIGN};
pub use plan::{GroupPlan, PlanCosts};
pub use worker::{SwitchConfig, SwitchOutcome, Switcher};
