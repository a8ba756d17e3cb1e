//! CPU time and peak memory of the hub's processes over a run, read from `/proc` (Linux), so a
//! report can say "CPU seconds per spawn" and "peak RSS" for hubfleet and JupyterHub alike.

use std::io;

use serde::Serialize;

/// `/proc/<pid>/stat` counts CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for
/// every userspace interface regardless of the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// One process's usage over a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessUsage {
    pub pid: u32,
    /// The command name from `/proc/<pid>/comm`.
    pub name: String,
    /// User plus system CPU seconds spent between the start and the end of the run.
    pub cpu_seconds: f64,
    /// Peak resident set size over the process's whole life (`VmHWM`), in KiB.
    pub peak_rss_kib: u64,
}

/// CPU readings taken when a run starts, to subtract at its end.
#[derive(Debug)]
pub struct ProcessSampler {
    start: Vec<(u32, f64)>,
}

impl ProcessSampler {
    /// Reads the CPU time of each of `pids` now.
    pub fn start(pids: &[u32]) -> io::Result<ProcessSampler> {
        let start = pids
            .iter()
            .map(|&pid| Ok((pid, cpu_seconds(pid)?)))
            .collect::<io::Result<_>>()?;
        Ok(ProcessSampler { start })
    }

    /// Usage of each process since [`ProcessSampler::start`].
    pub fn finish(&self) -> io::Result<Vec<ProcessUsage>> {
        self.start
            .iter()
            .map(|&(pid, cpu_at_start)| {
                Ok(ProcessUsage {
                    pid,
                    name: std::fs::read_to_string(format!("/proc/{pid}/comm"))?
                        .trim()
                        .to_owned(),
                    cpu_seconds: cpu_seconds(pid)? - cpu_at_start,
                    peak_rss_kib: peak_rss_kib(pid)?,
                })
            })
            .collect()
    }
}

/// User plus system CPU seconds `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / USER_HZ)
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/{pid}/stat format")))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards; utime is field 14, i.e. index 11 here.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` of `pid` in KiB.
pub fn peak_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmHWM in /proc/{pid}/status")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn cpu_ticks_are_counted_after_the_last_parenthesis() {
        let stat = "4242 (odd) name (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 37 0 0 20 0 1 0 123 1000 50";
        assert_eq!(parse_cpu_ticks(stat), Some(287));
        assert_eq!(parse_cpu_ticks("no parenthesis here"), None);
    }

    #[test]
    fn sampler_sees_this_process_use_cpu() {
        let pid = std::process::id();
        let sampler = ProcessSampler::start(&[pid]).expect("read own stat");
        // Spin until the kernel has charged at least two ticks, with a deadline.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut spins: u64 = 0;
        while cpu_seconds(pid).expect("stat") - sampler.start[0].1 < 0.02 {
            spins = spins.wrapping_add(std::hint::black_box(1));
            assert!(Instant::now() < deadline, "no CPU time was charged in 20 s");
        }
        let usage = sampler.finish().expect("finish");
        assert_eq!(usage.len(), 1);
        assert!(
            usage[0].cpu_seconds >= 0.02,
            "{usage:?} after {spins} spins"
        );
        assert!(usage[0].peak_rss_kib > 100, "{usage:?}");
        assert!(!usage[0].name.is_empty());
    }

    #[test]
    fn missing_processes_are_errors() {
        assert!(ProcessSampler::start(&[u32::MAX]).is_err());
    }
}
