//! face stage (see ARCHITECTURE.md).
