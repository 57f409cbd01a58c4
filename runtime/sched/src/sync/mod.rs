//! Blocking primitives (under construction).
