//! The registered scenarios. Add one: write `scenarios/<name>.rs` exposing
//! `pub const SCENARIO: Scenario`, declare the module here and list it in [`ALL`].

use crate::Scenario;

/// Every scenario `farmem-bench` knows, in the order `farmem-bench list` shows them.
pub const ALL: &[Scenario] = &[];
