//! One Unix account per hub user: mapping hub names to valid account names and creating accounts
//! with `useradd` on first spawn.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Longest account name the shadow tools accept.
const MAX_ACCOUNT_NAME_LEN: usize = 32;
/// Hex digits of the name hash appended to changed names.
const HASH_HEX_LEN: usize = 12;
/// Accounts below this uid belong to the system; a server never runs as one (and never as root).
const MIN_SERVER_UID: u32 = 1000;

/// A Unix account a server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnixAccount {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Maps a hub user name to a valid Unix account name (`[a-z_][a-z0-9_-]*`, at most 32 bytes).
///
/// Names that need no change keep their exact form (`prefix + name`). Any other name is cleaned up,
/// shortened and suffixed with `_` plus a hash of the original name. Clean names never contain `_`
/// (it is one of the characters that forces the hashed form), so a clean name can never be spelt
/// like the hashed form of another name.
pub fn account_name_for(prefix: &str, hub_user: &str) -> String {
    let cleaned: String = hub_user
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    let mut candidate = format!("{prefix}{cleaned}");
    let starts_validly = candidate
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !starts_validly {
        candidate.insert(0, 'u');
    }
    let unchanged = starts_validly && cleaned == hub_user;
    if unchanged && candidate.len() <= MAX_ACCOUNT_NAME_LEN {
        return candidate;
    }
    let digest = hex::encode(Sha256::digest(hub_user.as_bytes()));
    // The candidate is ASCII, so byte truncation is safe.
    candidate.truncate(MAX_ACCOUNT_NAME_LEN - HASH_HEX_LEN - 1);
    format!("{candidate}_{}", &digest[..HASH_HEX_LEN])
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountError {
    #[error("could not run `useradd` to create the account `{name}`: {source}")]
    UseraddNotRunnable {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`useradd` could not create the account `{name}` (exit status {status}): {stderr}")]
    UseraddFailed {
        name: String,
        status: String,
        stderr: String,
    },
    #[error("could not look up the account `{name}`: {source}")]
    Lookup {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("the account `{name}` has uid {uid}, a system account; refusing to run a server as it")]
    SystemAccount { name: String, uid: u32 },
    #[error("could not run `userdel` to remove the account `{name}`: {source}")]
    UserdelNotRunnable {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`userdel` could not remove the account `{name}` (exit status {status}): {stderr}")]
    UserdelFailed {
        name: String,
        status: String,
        stderr: String,
    },
}

fn lookup(name: &str) -> Result<Option<UnixAccount>, AccountError> {
    let user = User::from_name(name).map_err(|source| AccountError::Lookup {
        name: name.to_string(),
        source,
    })?;
    Ok(user.map(|user| UnixAccount {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
    }))
}

/// Returns the account, creating it first if needed (no password, so nobody can log in with one;
/// a login shell so terminals work; home directory managed by the spawner, not by `useradd`).
pub(crate) async fn ensure_account(
    name: &str,
    home: &Path,
    shell: &Path,
) -> Result<UnixAccount, AccountError> {
    let account = match lookup(name)? {
        Some(account) => account,
        None => {
            let output = run_useradd(name, home, shell).await?;
            // Exit status 9 means "already exists": another spawn created it meanwhile, which is fine.
            if !output.status.success() && output.status.code() != Some(9) {
                return Err(AccountError::UseraddFailed {
                    name: name.to_string(),
                    status: output.status.to_string(),
                    stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                });
            }
            lookup(name)?.ok_or_else(|| AccountError::UseraddFailed {
                name: name.to_string(),
                status: output.status.to_string(),
                stderr: "the account does not exist after `useradd` succeeded".to_string(),
            })?
        }
    };
    if account.uid.as_raw() < MIN_SERVER_UID {
        return Err(AccountError::SystemAccount {
            name: account.name,
            uid: account.uid.as_raw(),
        });
    }
    Ok(account)
}

/// Removes an account [`ensure_account`] created for `home`. An account that does not exist, is a
/// system account or has another home directory was not made for this user, so it is left alone.
pub(crate) async fn remove_account(name: &str, home: &Path) -> Result<(), AccountError> {
    let user = User::from_name(name).map_err(|source| AccountError::Lookup {
        name: name.to_string(),
        source,
    })?;
    let Some(user) = user else { return Ok(()) };
    if user.uid.as_raw() < MIN_SERVER_UID || user.dir != home {
        tracing::warn!(account = name, home = %user.dir.display(), "not removing an account the spawner did not create");
        return Ok(());
    }
    let mut userdel = Command::new("userdel");
    userdel.arg("--").arg(name);
    let output =
        run_shadow_tool(userdel)
            .await
            .map_err(|source| AccountError::UserdelNotRunnable {
                name: name.to_string(),
                source,
            })?;
    // Exit status 6 means "no such user": removed meanwhile, which is what we wanted.
    if !output.status.success() && output.status.code() != Some(6) {
        return Err(AccountError::UserdelFailed {
            name: name.to_string(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// How long a shadow tool is retried while another process holds the account database's lock.
const SHADOW_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

async fn run_useradd(
    name: &str,
    home: &Path,
    shell: &Path,
) -> Result<std::process::Output, AccountError> {
    let mut useradd = Command::new("useradd");
    useradd
        .arg("--no-create-home")
        .arg("--home-dir")
        .arg(home)
        .arg("--shell")
        .arg(shell)
        .arg("--user-group")
        .arg("--")
        .arg(name);
    run_shadow_tool(useradd)
        .await
        .map_err(|source| AccountError::UseraddNotRunnable {
            name: name.to_string(),
            source,
        })
}

/// Runs `useradd`/`userdel`, retrying while another process (another hub, an admin) holds
/// `/etc/passwd.lock` or `/etc/group.lock`: the shadow tools fail at once instead of waiting.
async fn run_shadow_tool(mut command: Command) -> std::io::Result<std::process::Output> {
    let deadline = tokio::time::Instant::now() + SHADOW_LOCK_PATIENCE;
    let mut delay = std::time::Duration::from_millis(20);
    loop {
        let output = command.output().await?;
        let locked =
            !output.status.success() && String::from_utf8_lossy(&output.stderr).contains(".lock");
        if !locked || tokio::time::Instant::now() >= deadline {
            return Ok(output);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_valid_account_name(name: &str) -> bool {
        let mut chars = name.chars();
        name.len() <= MAX_ACCOUNT_NAME_LEN
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    }

    #[test]
    fn clean_names_are_kept_verbatim() {
        assert_eq!(account_name_for("hf-", "alice"), "hf-alice");
        assert_eq!(account_name_for("hf-", "bob-2"), "hf-bob-2");
    }

    #[test]
    fn changed_or_long_names_get_a_hash_suffix_and_stay_valid() {
        let names = [
            "alice@example.org",
            "ALICE",
            "élodie",
            "a_b",
            "a-very-long-user-name-that-does-not-fit-into-thirty-two",
        ];
        for name in names {
            let account = account_name_for("hf-", name);
            assert!(is_valid_account_name(&account), "{name} -> {account}");
            assert!(account.contains('_'), "{name} -> {account} has no hash");
        }
        // A prefix makes a leading digit valid; without one the name needs fixing.
        assert_eq!(account_name_for("hf-", "9lives"), "hf-9lives");
        let unprefixed = account_name_for("", "9lives");
        assert!(is_valid_account_name(&unprefixed), "{unprefixed}");
        assert_ne!(unprefixed, "9lives");
    }

    #[test]
    fn names_that_clean_up_alike_map_to_different_accounts() {
        let a = account_name_for("hf-", "alice@x");
        let b = account_name_for("hf-", "alice.x");
        let c = account_name_for("hf-", "alice-x");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        let long_a = account_name_for("hf-", &format!("{}a", "x".repeat(40)));
        let long_b = account_name_for("hf-", &format!("{}b", "x".repeat(40)));
        assert_ne!(long_a, long_b);
    }

    #[test]
    fn a_clean_name_cannot_spell_the_hashed_form_of_another() {
        let hashed = account_name_for("hf-", "alice!");
        let spelt = hashed.strip_prefix("hf-").unwrap();
        // Whatever a user registers to imitate it contains `_`, so it is hashed itself.
        assert_ne!(account_name_for("hf-", spelt), hashed);
    }

    #[tokio::test]
    async fn account_creation_waits_for_another_process_holding_the_passwd_lock() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: creating Unix accounts needs root");
            return;
        }
        let name = "hfts-lockwait";
        // The shadow tools' lock: a file naming a live process (this test's own pid).
        let lock = Path::new("/etc/passwd.lock");
        assert!(!lock.exists(), "another process holds {}", lock.display());
        std::fs::write(lock, format!("{}", std::process::id())).unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await; // holds the lock a while
            std::fs::remove_file("/etc/passwd.lock").unwrap();
        });
        let created = ensure_account(name, Path::new("/nonexistent"), Path::new("/bin/sh")).await;
        release.await.unwrap();
        let _ = std::process::Command::new("userdel").arg(name).status();
        let account = created.expect("useradd waited for the lock instead of failing");
        assert_eq!(account.name, name);
    }

    #[tokio::test]
    async fn only_an_account_made_for_that_home_is_removed() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: removing Unix accounts needs root");
            return;
        }
        let name = "hfts-remove";
        let home = Path::new("/var/tmp/hfts-remove-home");
        ensure_account(name, home, Path::new("/bin/sh"))
            .await
            .unwrap();

        remove_account(name, Path::new("/var/tmp/another-home"))
            .await
            .unwrap();
        assert!(
            lookup(name).unwrap().is_some(),
            "removed despite another home"
        );

        remove_account(name, home).await.unwrap();
        assert!(lookup(name).unwrap().is_none(), "still there");
        // Removing what is gone already is fine.
        remove_account(name, home).await.unwrap();
    }
}
