//! weights stage (see ARCHITECTURE.md).
