//! cgroup_v2 backend. Stub; being written.
