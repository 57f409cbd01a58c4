//! Memory oversubscription (under construction).
