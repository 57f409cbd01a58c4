//! Pipelined model switching (under construction).
