//! Memory oversubscription and adaptive rate control between a production and an opportunistic
//! tenant of one GPU (TGS, NSDI'23: transparent GPU sharing for production and opportunistic
//! jobs).
//!
//! Memory and compute are governed separately; the executor joins the ledger to a real device:
//!
//! | part | owns | decides |
//! | --- | --- | --- |
//! | [`PageLedger`] (`ledger.rs`) | where each page of each tenant allocation is (device frame or host slot) | which opportunistic page to evict / fault in / restore; never touches memory |
//! | [`RateController`] (`rate.rs`) | the opportunistic launch rate | slow start, then AIMD on production slowdowns |
//! | [`LaunchGate`] (`gate.rs`) | the current control window's launch count | whether one more opportunistic kernel may go now |
//! | [`SharedDevice`] (`shared.rs`) | one device pool, host slots, the paging stream | carries out the ledger's moves as real copies, orders tenant streams after them |
//!
//! Memory: production allocations are always resident; when production needs frames, the least
//! recently used opportunistic pages are copied to host memory, and they come back into freed
//! memory when the caller asks ([`SharedDevice::restore`], paced like kernel launches) or when
//! the opportunistic tenant touches them (a fault). Compute: the opportunistic tenant may
//! launch only [`RateController::launch_budget`] kernels per control window, and the budget
//! follows the production tenant's measured throughput.

mod gate;
mod ledger;
mod rate;
mod shared;

pub use gate::LaunchGate;

pub use ledger::{
    AllocationId, FrameId, HostSlot, PageLedger, PageMove, PageState, PageStats, Priority, TenantId,
};
pub use rate::{RateAction, RateConfig, RateController, RatePhase};
pub use shared::SharedDevice;
