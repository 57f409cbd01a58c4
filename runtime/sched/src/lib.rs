//! Green threads for farmem (under construction).
