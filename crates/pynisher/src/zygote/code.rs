//! Which code the zygote has: the executable mappings of this process when [`super::init`] ran.
//! A function pointer sent to the zygote must point into one of them, or the zygote (a copy of the
//! process at that time) would jump to code it does not have.

/// Executable address ranges, sorted.
#[derive(Debug, Default)]
pub(crate) struct CodeMap {
    ranges: Vec<(usize, usize)>,
}

impl CodeMap {
    /// Reads `/proc/self/maps`.
    pub(crate) fn of_this_process() -> std::io::Result<CodeMap> {
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        Ok(CodeMap::parse(&maps))
    }

    fn parse(maps: &str) -> CodeMap {
        let mut ranges: Vec<(usize, usize)> = maps
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let range = fields.next()?;
                let perms = fields.next()?;
                if perms.as_bytes().get(2) != Some(&b'x') {
                    return None;
                }
                let (start, end) = range.split_once('-')?;
                Some((
                    usize::from_str_radix(start, 16).ok()?,
                    usize::from_str_radix(end, 16).ok()?,
                ))
            })
            .collect();
        ranges.sort_unstable();
        CodeMap { ranges }
    }

    /// Whether `address` lies in one of the ranges.
    pub(crate) fn contains(&self, address: usize) -> bool {
        let i = self.ranges.partition_point(|&(start, _)| start <= address);
        i > 0 && address < self.ranges[i - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_executable_ranges_count() {
        let map = CodeMap::parse(
            "1000-2000 r-xp 00000000 08:01 1 /bin/x\n\
             2000-3000 rw-p 00000000 08:01 1 /bin/x\n\
             5000-6000 r-xp 00000000 00:00 0\n",
        );
        assert!(map.contains(0x1000) && map.contains(0x1fff) && map.contains(0x5800));
        assert!(!map.contains(0x2000) && !map.contains(0x0fff) && !map.contains(0x6000));
    }

    #[test]
    fn this_function_is_in_the_code_of_this_process() {
        let map = CodeMap::of_this_process().unwrap();
        let f: fn() = this_function_is_in_the_code_of_this_process;
        assert!(map.contains(f as usize));
        let heap = Box::new(0u64);
        assert!(!map.contains(&*heap as *const u64 as usize));
    }
}
