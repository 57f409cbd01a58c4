//! The farmem memory server (under construction).
