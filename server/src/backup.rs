//! `kontor backup` and `kontor verify-backup`: a consistent copy of a live SQLite store, taken
//! while `kontor serve` keeps writing, and the checks that say a copy can be restored.
//!
//! `VACUUM INTO` writes the database as one read transaction sees it: every declaration committed
//! before the copy began is in it, nothing half-written is, and the writer is never stopped (in
//! WAL mode a reader and the writer do not wait for each other). The copy goes to a temporary
//! name beside the target, is checked, flushed to disk, and only then renamed: a crash or a full
//! disk mid-backup never leaves a file that looks whole. A backup never overwrites a file.
//!
//! PostgreSQL is backed up with its own tools (base backups and WAL archiving,
//! `docs/operations.md`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use rusqlite::{Connection, OpenFlags};

/// What a backup holds, as `verify` counted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contents {
    pub declarations: u64,
    /// Declarations that count for billing.
    pub counting: u64,
    pub meters: u64,
    pub billing_entries: u64,
    pub complaints: u64,
    /// Schema migrations applied (all of this build's, or `verify` refuses the file).
    pub migrations: u64,
}

impl std::fmt::Display for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} declarations ({} counting), {} meters, {} billing feed entries, {} complaints, schema at migration {}",
            self.declarations, self.counting, self.meters, self.billing_entries, self.complaints, self.migrations
        )
    }
}

/// The file of a `sqlite://` URL.
fn sqlite_file(url: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
        bail!("`kontor backup` copies SQLite stores; back PostgreSQL up with its own tools (docs/operations.md)");
    };
    let path = rest.split('?').next().unwrap_or_default();
    ensure!(!path.is_empty() && !path.starts_with(':'), "{url:?} names no database file");
    Ok(PathBuf::from(path))
}

/// Copies the store at `url` to `to`, consistently, while it may be serving; what the copy holds.
pub fn backup(url: &str, to: &Path) -> anyhow::Result<Contents> {
    let source = sqlite_file(url)?;
    ensure!(source.is_file(), "no database at {}", source.display());
    ensure!(!to.exists(), "{} exists: a backup never overwrites a file", to.display());
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let conn = Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", source.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = partial.to_str().context("the backup's path is not UTF-8")?;
    conn.execute("VACUUM INTO ?1", [target]).with_context(|| format!("copying {} into {target}", source.display()))?;
    drop(conn);
    let contents = verify(&partial).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).context("flushing the backup to disk")?;
    std::fs::rename(&partial, to).with_context(|| format!("naming the backup {}", to.display()))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself reaches the disk with its folder.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(contents)
}

/// Checks a backup: SQLite's integrity check, every migration of this build applied, and what it
/// holds. Reads only.
pub fn verify(file: &Path) -> anyhow::Result<Contents> {
    ensure!(file.is_file(), "no file at {}", file.display());
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", file.display()))?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    ensure!(problems == ["ok"], "{} is damaged: {}", file.display(), problems.join("; "));
    let count = |sql: &str| -> anyhow::Result<u64> {
        let n: i64 =
            conn.query_row(sql, [], |row| row.get(0)).with_context(|| format!("{sql} in {}", file.display()))?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    let migrations = count("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")?;
    let expected = crate::store::sqlite_migrations() as u64;
    ensure!(
        migrations == expected,
        "{} has {migrations} of this build's {expected} schema migrations: not a store this kontor made",
        file.display()
    );
    Ok(Contents {
        declarations: count("SELECT COUNT(*) FROM declarations")?,
        counting: count("SELECT COUNT(*) FROM declarations WHERE counts")?,
        meters: count("SELECT COUNT(*) FROM meters")?,
        billing_entries: count("SELECT COUNT(*) FROM billing_feed")?,
        complaints: count("SELECT COUNT(*) FROM complaints")?,
        migrations,
    })
}
