//! Least privilege for `tracenat run`: root (or the capabilities) is needed to attach XDP
//! programs, create AF_XDP sockets, lock their memory and bind the listeners — and for
//! nothing after. Once all of that is done, the whole process becomes `process.user`, and
//! with it every capability is gone in every thread: the kernel clears them when a
//! process's user ids all leave 0, and glibc changes the ids of every thread at once.
//! What the NAT still does afterwards needs none: AF_XDP rings, the mapping log (its
//! directory is handed to the user first), closing the XDP links (a `bpf_link` detaches
//! when its descriptor closes), neighbour lookups and the already-bound sockets.
//!
//! No new privileges: set before any thread exists, so every thread inherits it, and no
//! program the NAT might execute could gain privileges either.

use std::ffi::CString;
use std::io;
use std::path::Path;

/// Forbids gaining privileges through execve for this thread and every thread it starts.
pub fn forbid_new_privileges() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS and constant arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A user and group to run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Looks `user` up (and `group`, else the user's primary group) in the system's databases.
pub fn account(user: &str, group: Option<&str>) -> io::Result<Account> {
    let name = CString::new(user).map_err(|_| not_found("user", user))?;
    // SAFETY: getpwnam returns null or a pointer to a static passwd record, read at once
    // (tracenat looks users up on one thread, before it drops to one).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(not_found("user", user));
    }
    // SAFETY: `pw` is non-null and points to a valid passwd record.
    let (uid, mut gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    if let Some(group) = group {
        let name = CString::new(group).map_err(|_| not_found("group", group))?;
        // SAFETY: as for getpwnam.
        let gr = unsafe { libc::getgrnam(name.as_ptr()) };
        if gr.is_null() {
            return Err(not_found("group", group));
        }
        // SAFETY: `gr` is non-null and points to a valid group record.
        gid = unsafe { (*gr).gr_gid };
    }
    Ok(Account { uid, gid })
}

fn not_found(what: &str, name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no {what} named {name:?} on this system"),
    )
}

/// Hands `dir` and everything under it to `account` (the mapping log, which the NAT keeps
/// writing as that user). A `dir` that is a symbolic link is followed (the log on a bigger
/// disk); links inside it are not. The writer is already running, so a file it deletes
/// meanwhile (retention) is skipped.
pub fn hand_over(dir: &Path, account: Account) -> io::Result<()> {
    let root = dir
        .canonicalize()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    hand_over_tree(&root, account)
}

fn hand_over_tree(path: &Path, account: Account) -> io::Result<()> {
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    match std::os::unix::fs::lchown(path, Some(account.uid), Some(account.gid)) {
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        Ok(()) => {}
    }
    if path.is_dir() && !path.is_symlink() {
        let entries = match std::fs::read_dir(path) {
            Err(e) if gone(&e) => return Ok(()),
            other => other?,
        };
        for entry in entries {
            match entry {
                Ok(entry) => hand_over_tree(&entry.path(), account)?,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Checks, as the user the process now is, that it can create files in `dir`.
pub fn can_write(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".tracenat-write-probe-{}", std::process::id()));
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| io::Error::new(e.kind(), format!("{} is not writable: {e}", dir.display())))
}

/// Becomes `account` for good: supplementary groups, then group, then user ids (real,
/// effective and saved), in every thread. Checks afterwards that no id is 0 and no
/// capability is left.
pub fn become_user(account: Account) -> io::Result<()> {
    if account.uid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "process.user is root: nothing would be dropped",
        ));
    }
    let groups = [account.gid];
    // SAFETY: setgroups reads one gid from a valid array; setresgid/setresuid take values.
    let failed = unsafe {
        libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setresgid(account.gid, account.gid, account.gid) != 0
            || libc::setresuid(account.uid, account.uid, account.uid) != 0
    };
    if failed {
        return Err(io::Error::last_os_error());
    }
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        let held = capabilities(set)?;
        if held != 0 {
            return Err(io::Error::other(format!(
                "{set} still {held:#x} after becoming uid {}",
                account.uid
            )));
        }
    }
    Ok(())
}

/// One of this thread's capability sets, from /proc (e.g. the `CapEff` line).
pub fn capabilities(set: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| io::Error::other(format!("no {set} line in /proc/thread-self/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_looked_up_and_unknown_ones_named() {
        let root = account("root", None).unwrap();
        assert_eq!(root, Account { uid: 0, gid: 0 });
        let error = account("no-such-user-tracenat", None).unwrap_err();
        assert!(
            error.to_string().contains("no-such-user-tracenat"),
            "{error}"
        );
        let error = account("root", Some("no-such-group-tracenat")).unwrap_err();
        assert!(error.to_string().contains("group"), "{error}");
    }

    #[test]
    fn root_is_not_a_user_to_drop_to() {
        let error = become_user(Account { uid: 0, gid: 0 }).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
