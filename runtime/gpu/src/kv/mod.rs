//! KV-cache block manager (under construction).
