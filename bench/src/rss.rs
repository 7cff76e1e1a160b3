//! What a process costs: resident set size (`VmRSS` from
//! `/proc/<pid>/status`) and CPU time (user + system, `/proc/<pid>/stat`),
//! plus the CPU time of the calling thread. Linux only; elsewhere (or once
//! the process is gone) a sample is `None`.
//!
//! CPU time is the figure that survives a shared machine: wall-clock
//! throughput drops when other work takes the cores, CPU time per fill much
//! less so.

/// One process to sample, with the label shown in reports (e.g. `node-1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampled {
    pub label: String,
    pub pid: u32,
}

/// The `VmRSS` of `pid` in KiB, if readable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// Extracts `VmRSS:   1234 kB` from a `/proc/<pid>/status` text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// Samples every process's RSS once.
pub fn sample(processes: &[Sampled]) -> Vec<Option<u64>> {
    processes.iter().map(|p| rss_kib(p.pid)).collect()
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User + system CPU seconds `pid` has used (all its threads), if readable.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks as f64 / ticks_per_second())
}

/// utime + stime (fields 14 and 15) from a `/proc/<pid>/stat` line. The
/// command name (field 2) may contain spaces and parentheses, so fields are
/// counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Samples every process's CPU seconds once.
pub fn sample_cpu(processes: &[Sampled]) -> Vec<Option<f64>> {
    processes.iter().map(|p| cpu_seconds(p.pid)).collect()
}

/// CPU nanoseconds used by the calling thread so far.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// KiB as MiB with one decimal, or `-`.
pub fn mib(kib: Option<u64>) -> String {
    match kib {
        Some(kib) => format!("{:.1}", kib as f64 / 1024.0),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Name:\ttallyd\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nThreads: 9\n";
        assert_eq!(parse_vm_rss(text), Some(123_456));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(mib(Some(2048)), "2.0");
        assert_eq!(mib(None), "-");
    }

    #[test]
    fn parses_stat() {
        let stat = "42 (tally d) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_process_is_measurable() {
        if cfg!(target_os = "linux") {
            let me = std::process::id();
            assert!(rss_kib(me).is_some_and(|kib| kib > 0));
            assert!(cpu_seconds(me).is_some());
            let before = thread_cpu_ns();
            let mut x = 0u64;
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
            assert!(thread_cpu_ns() > before);
        }
    }
}
