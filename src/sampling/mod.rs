//! sampling stage (see ARCHITECTURE.md).
