//! Reading process facts from `/proc`, so that a hub process can recognise a server started by an
//! earlier hub process (same pid *and* same start time) and find every member of its process group.

use std::fs;
use std::io;

/// The few fields of `/proc/<pid>/stat` the spawner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessStat {
    /// Single-letter state: `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    pub process_group: i32,
    /// Field 22, in clock ticks since boot. Together with the pid it identifies one process for the
    /// machine's uptime, which is what defeats pid reuse.
    pub start_time: u64,
}

impl ProcessStat {
    /// Zombies have exited and only wait to be reaped; for the spawner they are gone.
    pub fn is_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the contents of a `/proc/<pid>/stat` file. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted from the *last* `)`.
pub(crate) fn parse_stat(contents: &str) -> Option<ProcessStat> {
    let after_comm = &contents[contents.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_ascii_whitespace().collect();
    // `fields[0]` is field 3 of the file, so field N is at index N - 3.
    Some(ProcessStat {
        state: fields.first()?.chars().next()?,
        process_group: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// `Ok(None)` when no such process exists.
pub(crate) fn read_stat(pid: u32) -> io::Result<Option<ProcessStat>> {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(contents) => Ok(parse_stat(&contents)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        // ESRCH: the process vanished between opening and reading.
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(err) => Err(err),
    }
}

/// A multi-threaded process whose main thread has exited shows as a zombie while its other
/// threads still run (and still hold its sockets); it is only gone once its last thread is.
pub(crate) fn has_live_threads(pid: u32) -> bool {
    fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| tasks.count() > 1)
}

/// Pids of live (non-zombie) processes whose process group is `process_group`.
pub(crate) fn live_group_members(process_group: i32) -> io::Result<Vec<u32>> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go during the scan; a vanished one is simply not a member.
        if let Ok(Some(stat)) = read_stat(pid)
            && stat.process_group == process_group
            && (!stat.is_exited() || has_live_threads(pid))
        {
            members.push(pid);
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_after_a_command_name_with_spaces_and_parens() {
        let line = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(
            stat,
            ProcessStat {
                state: 'S',
                process_group: 4242,
                start_time: 987654
            }
        );
        assert!(!stat.is_exited());
    }

    #[test]
    fn live_threads_are_counted() {
        let worker = std::thread::spawn(std::thread::park);
        assert!(has_live_threads(std::process::id()));
        worker.thread().unpark();
        worker.join().unwrap();
        assert!(!has_live_threads(u32::MAX), "no such process");
    }

    #[test]
    fn truncated_stat_is_rejected() {
        assert_eq!(parse_stat("12 (x) S 1 12"), None);
    }

    #[test]
    fn reads_own_process() {
        let stat = read_stat(std::process::id()).unwrap().expect("we exist");
        assert!(!stat.is_exited());
        assert_eq!(stat.process_group, nix::unistd::getpgrp().as_raw());
        assert!(stat.start_time > 0);
    }
}
