//! Reading process facts from `/proc`, so that a hub process can recognise a server started by an
//! earlier hub process (same pid *and* same start time), find every member of its process group,
//! and tell which process holds a listening port.

use std::collections::HashSet;
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

/// Inodes of the TCP sockets (IPv4 and IPv6) listening on `port`, on any address.
pub(crate) fn listening_socket_inodes(port: u16) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match fs::read_to_string(table) {
            Ok(contents) => inodes.extend(parse_listening_inodes(&contents, port)),
            // A kernel without IPv6 has no tcp6 table.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    Ok(inodes)
}

/// Socket inodes of the `/proc/net/tcp{,6}` rows in state LISTEN (`0A`) whose local port is `port`.
fn parse_listening_inodes(table: &str, port: u16) -> impl Iterator<Item = u64> + '_ {
    const LISTEN: &str = "0A";
    table.lines().skip(1).filter_map(move |row| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
        let fields: Vec<&str> = row.split_ascii_whitespace().collect();
        let (_, local_port) = fields.get(1)?.rsplit_once(':')?;
        let matches =
            u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == LISTEN;
        matches.then(|| fields.get(9)?.parse().ok()).flatten()
    })
}

/// Inodes of the sockets among `pid`'s open file descriptors. A process that vanished holds none.
pub(crate) fn socket_inodes_of(pid: u32) -> io::Result<HashSet<u64>> {
    let entries = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(err) => return Err(err),
    };
    Ok(entries
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect())
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

    #[test]
    fn listening_rows_are_picked_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0
";
        assert_eq!(
            parse_listening_inodes(table, 8080).collect::<Vec<_>>(),
            [111]
        );
        assert_eq!(
            parse_listening_inodes(table, 8081).collect::<Vec<_>>(),
            [333]
        );
        assert_eq!(parse_listening_inodes(table, 8082).count(), 0);
    }

    #[test]
    fn own_listening_socket_is_found_among_own_descriptors() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let listening = listening_socket_inodes(port).unwrap();
        assert_eq!(listening.len(), 1, "one socket listens on {port}");
        let own = socket_inodes_of(std::process::id()).unwrap();
        assert!(listening.is_subset(&own));
        drop(listener);
        assert!(listening_socket_inodes(port).unwrap().is_empty());
    }
}
