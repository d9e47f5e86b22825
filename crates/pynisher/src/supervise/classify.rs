//! Turning recorded reasons and exit facts into a Status.
