//! Runs many trivial limited closures back to back (for profiling the per-call path).
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let limits = pynisher::Limits::new().backend(pynisher::Backend::ProcessGroup);
    let t = std::time::Instant::now();
    for i in 0..n {
        let o = limits.run_closure(move || i).unwrap();
        assert_eq!(o.value, Some(i));
    }
    println!("{:?} per call", t.elapsed() / n as u32);
}
