//! The registered scenarios. Add one: write `scenarios/<name>.rs` exposing
//! `pub const SCENARIO: Scenario`, declare the module here and list it in [`ALL`].

pub mod copy;
pub mod deref;
pub mod evac;
pub mod fetch;
pub mod hashtable;
pub mod kv;
pub mod kvswap;
pub mod list;
pub mod net;
pub mod offload;
pub mod pipeswitch;
pub mod queue;
pub mod scan;
pub mod sched;
pub mod share;
pub mod taxi;

use crate::Scenario;

/// Every scenario `farmem-bench` knows, in the order `farmem-bench --list` shows them.
pub const ALL: &[Scenario] = &[
    net::SCENARIO,
    kv::SCENARIO,
    kvswap::SCENARIO,
    pipeswitch::SCENARIO,
    deref::SCENARIO,
    sched::SCENARIO,
    share::SCENARIO,
    fetch::SCENARIO,
    scan::SCENARIO,
    list::SCENARIO,
    queue::SCENARIO,
    evac::SCENARIO,
    copy::SCENARIO,
    taxi::SCENARIO,
    offload::SCENARIO,
    hashtable::SCENARIO,
];
