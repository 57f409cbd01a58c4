//! Device abstraction (under construction).
