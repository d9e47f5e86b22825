//! process_group backend. Stub; being written.
