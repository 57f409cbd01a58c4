//! The farmem wire protocol (under construction).
