//! Where the engine's cgroup leaves are, for the tests that count them.

use std::path::{Path, PathBuf};

use pynisher::Backend;

/// The `pynisher` parent directories of this process's leaves, from `/proc/self/cgroup` and the
/// conventional mount points.
pub fn leaf_parents(backend: Backend) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out = Vec::new();
    for line in own.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let dir = match (backend, id, ctrls) {
            (Backend::CgroupV2, "0", "") => Path::new("/sys/fs/cgroup/unified").join(rel),
            (Backend::CgroupV1, _, c) if ["memory", "cpuacct", "pids", "freezer"].contains(&c) => {
                Path::new("/sys/fs/cgroup").join(c).join(rel)
            }
            _ => continue,
        };
        out.push(dir.join("pynisher"));
    }
    out.into_iter().filter(|d| d.is_dir()).collect()
}
