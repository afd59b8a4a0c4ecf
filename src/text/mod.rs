//! text stage (see ARCHITECTURE.md).
