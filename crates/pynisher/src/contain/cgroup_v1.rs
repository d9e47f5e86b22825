//! cgroup_v1 backend. Stub; being written.
