//! A local PostgreSQL cluster for `ledger serve` without `DATABASE_URL`, and for tests: finds the
//! server binaries, initialises a data directory once, starts the server on a private unix socket
//! (no TCP), and reuses a server that is already running on that data directory.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use tokio::process::Command;

use crate::{Error, Result};

/// The superuser `initdb` creates.
const SUPERUSER: &str = "ledger";
/// The one database provisioned for `ledger serve`.
const DATABASE: &str = "ledger";
/// Only names the socket file (`.s.PGSQL.5432`) in our private socket directory: there is no TCP
/// listener, so it cannot clash with another server.
const PORT: u16 = 5432;
/// Created when running as root on a machine without a `postgres` user.
const SERVICE_USER: &str = "ledger-pg";
/// Inside the data directory: the socket directory the cluster was started with.
const SOCKET_RECORD: &str = "ledger-socket-dir";
/// How long to keep trying to connect to a server that is still starting up.
const CONNECT_PATIENCE: Duration = Duration::from_secs(15);

/// A PostgreSQL cluster in a local data directory, reachable only through a unix socket.
///
/// Dropping it leaves the server running; only [`LocalPostgres::stop`] stops it.
#[derive(Debug)]
pub struct LocalPostgres {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    binaries: Binaries,
    /// The unprivileged account the server runs as when this process is root.
    run_as: Option<Account>,
    lock_path: PathBuf,
    /// Whether this process started the server (and so `stop` stops it).
    started_here: bool,
}

impl LocalPostgres {
    /// Initialises (first time) and starts a cluster whose data lives in `data_dir`, or reuses one
    /// that is already running there.
    pub async fn start(data_dir: &Path) -> Result<LocalPostgres> {
        let binaries = find_binaries()?;
        let requested = std::path::absolute(data_dir)?;
        let run_as = if effective_uid()? == 0 {
            let account = service_account(&requested).await?;
            tracing::info!(
                user = %account.name,
                "running as root, so PostgreSQL (which refuses root) runs as an unprivileged user"
            );
            // Before creating anything, so that a refused location is left untouched.
            check_reachable(&requested, &account).await?;
            Some(account)
        } else {
            None
        };
        let data_dir = resolve_data_dir(&requested)?;
        if let Some(account) = &run_as {
            // Again for the real path: symlinks resolved, missing parents now created.
            check_reachable(&data_dir, account).await?;
        }
        let lock_path = sibling(&data_dir, "lock")?;
        let log_path = sibling(&data_dir, "log")?;

        // Tests start many processes on the same data directory at once: serialise init + start.
        let _lock = lock(&lock_path).await?;

        if let Some((socket_dir, port)) = running_server(&binaries, &data_dir, &run_as).await? {
            tracing::info!(
                data_dir = %data_dir.display(),
                socket_dir = %socket_dir.display(),
                "reusing the PostgreSQL server already running on this data directory"
            );
            let postgres = LocalPostgres {
                data_dir,
                socket_dir,
                port,
                binaries,
                run_as,
                lock_path,
                started_here: false,
            };
            postgres.ensure_database().await.map_err(|e| {
                provision(format!(
                    "a server is recorded as running on {} but does not answer on {}: {e}; if no \
                     PostgreSQL is running there, remove {}",
                    postgres.data_dir.display(),
                    postgres.socket_dir.display(),
                    postgres.data_dir.join("postmaster.pid").display()
                ))
            })?;
            return Ok(postgres);
        }

        if !data_dir.join("PG_VERSION").exists() {
            initialise(&binaries, &data_dir, &run_as).await?;
        }
        let socket_dir = socket_dir(&data_dir, &run_as)?;
        prepare_socket_dir(&socket_dir, &run_as)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|e| io_error("cannot open the PostgreSQL log", &log_path, e))?;
        drop(log);
        chown_to(&log_path, &run_as)?;

        tracing::info!(
            data_dir = %data_dir.display(),
            socket_dir = %socket_dir.display(),
            log = %log_path.display(),
            "starting local PostgreSQL"
        );
        // `pg_ctl` hands `-o` to a shell: quote the empty value. The socket directory is checked to
        // hold only shell-safe characters.
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={PORT} \
             -c max_connections=200",
            socket_dir.display()
        );
        let output = command(&binaries.pg_ctl, &run_as)
            .arg("-D")
            .arg(&data_dir)
            .arg("-l")
            .arg(&log_path)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .await
            .map_err(|e| io_error("cannot run", &binaries.pg_ctl, e))?;
        if !output.status.success() {
            return Err(provision(format!(
                "pg_ctl start failed ({}): {}\nlast lines of {}:\n{}",
                output.status,
                output_text(&output),
                log_path.display(),
                log_tail(&log_path)
            )));
        }

        let postgres = LocalPostgres {
            data_dir,
            socket_dir,
            port: PORT,
            binaries,
            run_as,
            lock_path,
            started_here: true,
        };
        if let Err(e) = postgres.ensure_database().await {
            // Do not leave a half-provisioned server behind for a caller that gets no handle.
            if let Err(stop) = postgres.pg_ctl_stop().await {
                tracing::warn!(error = %stop, "could not stop local PostgreSQL after a failed start");
            }
            return Err(e);
        }
        Ok(postgres)
    }

    /// A streaming replica of this cluster, made in `data_dir` (which must not exist yet) with
    /// `pg_basebackup` and started like any local cluster, on a unix socket of its own. Reads on
    /// it lag the primary by its replay; `pg_wal_replay_pause()` on it holds it back. For tests of
    /// reads from replicas.
    pub async fn start_replica(&self, data_dir: &Path) -> Result<LocalPostgres> {
        let data_dir = resolve_data_dir(data_dir)?;
        // Made here, empty and owned by the server's account: pg_basebackup fills it.
        DirBuilder::new()
            .mode(0o700)
            .create(&data_dir)
            .map_err(|e| io_error("cannot create", &data_dir, e))?;
        chown_to(&data_dir, &self.run_as)?;
        // Beside the real pg_ctl: the one on PATH may be a link of its own.
        let pg_basebackup = fs::canonicalize(&self.binaries.pg_ctl)
            .map_err(|e| io_error("cannot resolve", &self.binaries.pg_ctl, e))?
            .with_file_name("pg_basebackup");
        let output = command(&pg_basebackup, &self.run_as)
            .arg("-D")
            .arg(&data_dir)
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", SUPERUSER])
            // Streams the WAL it needs and writes standby.signal with the primary's conninfo.
            .args(["-X", "stream", "-R"])
            // At once: the default spread checkpoint takes minutes on an idle server.
            .args(["--checkpoint", "fast"])
            .output()
            .await
            .map_err(|e| io_error("cannot run", &pg_basebackup, e))?;
        if !output.status.success() {
            return Err(provision(format!(
                "pg_basebackup failed ({}): {}",
                output.status,
                output_text(&output)
            )));
        }
        // The copy holds the primary's socket record: the replica needs a socket of its own.
        let record = data_dir.join(SOCKET_RECORD);
        fs::remove_file(&record).map_err(|e| io_error("cannot remove", &record, e))?;
        LocalPostgres::start(&data_dir).await
    }

    /// A sqlx connection URL for `database` on this cluster, through its unix socket.
    ///
    /// The form `postgres://ledger@/db?host=/dir` is not used: the `url` crate (under sqlx)
    /// rejects a user name with an empty host.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres:///{}?host={}&port={}&user={SUPERUSER}",
            percent_encode(database),
            percent_encode(&self.socket_dir.to_string_lossy()),
            self.port
        )
    }

    /// The data directory, absolute and with symlinks resolved.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the cluster if this process started it (`pg_ctl stop -m fast`, waiting); a cluster
    /// that was already running when `start` was called is left running.
    pub async fn stop(self) -> Result<()> {
        if !self.started_here {
            tracing::info!(
                data_dir = %self.data_dir.display(),
                "leaving running the local PostgreSQL this process did not start"
            );
            return Ok(());
        }
        let _lock = lock(&self.lock_path).await?;
        self.pg_ctl_stop().await?;
        tracing::info!(data_dir = %self.data_dir.display(), "stopped local PostgreSQL");
        Ok(())
    }

    async fn pg_ctl_stop(&self) -> Result<()> {
        let output = command(&self.binaries.pg_ctl, &self.run_as)
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .await
            .map_err(|e| io_error("cannot run", &self.binaries.pg_ctl, e))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(provision(format!(
                "pg_ctl stop failed ({}): {}",
                output.status,
                output_text(&output)
            )))
        }
    }

    /// Creates the `ledger` database if it is missing (a first start, or a crash right after one).
    async fn ensure_database(&self) -> Result<()> {
        let mut conn = connect_patiently(&self.url("postgres")).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(DATABASE)
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            let sql = format!("CREATE DATABASE {}", quote_ident(DATABASE));
            match conn.execute(sqlx::raw_sql(&sql)).await {
                Ok(_) => tracing::info!(database = DATABASE, "created database"),
                // Someone else created it first.
                Err(e) if has_sqlstate(&e, "42P04") => {}
                Err(e) => return Err(e.into()),
            }
        }
        conn.close().await?;
        Ok(())
    }
}

/// Connects, retrying while the server is still coming up (socket not there yet, or "the database
/// system is starting up").
pub(crate) async fn connect_patiently(url: &str) -> Result<PgConnection> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => return Ok(conn),
            Err(e)
                if tokio::time::Instant::now() < deadline
                    && (matches!(e, sqlx::Error::Io(_)) || has_sqlstate(&e, "57P03")) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `e` is a database error with SQLSTATE `code`.
pub(crate) fn has_sqlstate(e: &sqlx::Error, code: &str) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().as_deref() == Some(code),
        _ => false,
    }
}

/// Quotes an SQL identifier (database names cannot be bound as parameters).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The effective user id of this process, without a libc dependency.
pub(crate) fn effective_uid() -> Result<u32> {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        // "Uid:\treal\teffective\tsaved\tfs"
        if let Some(uid) = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .and_then(|uid| uid.parse().ok())
        {
            return Ok(uid);
        }
    }
    let output = std::process::Command::new("id").arg("-u").output()?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| provision("cannot determine the current user id (`id -u` failed)".into()))
}

#[derive(Debug, Clone)]
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

/// `initdb`, `pg_ctl` and `postgres` from one directory on PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian and Ubuntu do not put them on PATH).
fn find_binaries() -> Result<Binaries> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let candidates = on_path
        .into_iter()
        .filter(|dir| dir.is_absolute())
        .chain(versioned_bin_dirs(Path::new("/usr/lib/postgresql")));
    for dir in candidates {
        if ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|name| is_executable(&dir.join(name)))
        {
            return Ok(Binaries {
                initdb: dir.join("initdb"),
                pg_ctl: dir.join("pg_ctl"),
            });
        }
    }
    Err(provision(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under \
         /usr/lib/postgresql/*/bin; install PostgreSQL (e.g. `apt-get install -y postgresql`) or \
         set DATABASE_URL to an existing server"
            .into(),
    ))
}

/// `<root>/<version>/bin`, highest version first.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
}

/// An absolute path without symlinks, so that it (and the socket directory derived from it) is
/// the same however the caller spelled it. Creates the parent directories.
fn resolve_data_dir(data_dir: &Path) -> Result<PathBuf> {
    let data_dir = std::path::absolute(data_dir)?;
    if data_dir.exists() {
        return fs::canonicalize(&data_dir).map_err(|e| io_error("cannot resolve", &data_dir, e));
    }
    let (Some(parent), Some(name)) = (data_dir.parent(), data_dir.file_name()) else {
        return Err(provision(format!(
            "{} cannot be a data directory",
            data_dir.display()
        )));
    };
    fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
    let parent = fs::canonicalize(parent).map_err(|e| io_error("cannot resolve", parent, e))?;
    Ok(parent.join(name))
}

/// `<data_dir>.<extension>`, next to the data directory (PostgreSQL wants the data directory to
/// itself).
fn sibling(data_dir: &Path, extension: &str) -> Result<PathBuf> {
    let name = data_dir
        .file_name()
        .ok_or_else(|| provision(format!("{} has no file name", data_dir.display())))?;
    let mut name = name.to_os_string();
    name.push(".");
    name.push(extension);
    Ok(data_dir.with_file_name(name))
}

/// Takes an exclusive lock on `path`, held until the returned file is dropped.
async fn lock(path: &Path) -> Result<File> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("cannot open lock file", &path, e))?;
        file.lock().map_err(|e| io_error("cannot lock", &path, e))?;
        Ok(file)
    })
    .await
    .map_err(|e| provision(format!("lock task failed: {e}")))?
}

/// An unprivileged account to run PostgreSQL as.
#[derive(Debug, Clone)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

/// The account to run PostgreSQL as when this process is root: the owner of an existing data
/// directory (it must keep owning it), else `postgres`, else a created `ledger-pg` system user.
async fn service_account(data_dir: &Path) -> Result<Account> {
    if let Ok(meta) = fs::metadata(data_dir) {
        if meta.uid() != 0 {
            let known = lookup_account(&meta.uid().to_string()).await?;
            return Ok(known.unwrap_or_else(|| Account {
                name: format!("uid {}", meta.uid()),
                uid: meta.uid(),
                gid: meta.gid(),
            }));
        }
    }
    for name in ["postgres", SERVICE_USER] {
        if let Some(account) = lookup_account(name).await? {
            return Ok(account);
        }
    }
    tracing::info!(
        user = SERVICE_USER,
        "creating a system user to run PostgreSQL"
    );
    let output = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg(SERVICE_USER)
        .stdin(Stdio::null())
        .output()
        .await;
    // Another process may have created it meanwhile, so look again before judging the outcome.
    if let Some(account) = lookup_account(SERVICE_USER).await? {
        return Ok(account);
    }
    let detail = match output {
        Ok(output) => output_text(&output),
        Err(e) => e.to_string(),
    };
    Err(provision(format!(
        "PostgreSQL refuses to run as root and there is no `postgres` user; creating the system \
         user {SERVICE_USER} failed: {detail}. Create an unprivileged user, run as a non-root \
         user, or set DATABASE_URL"
    )))
}

/// Looks an account up by name or uid through NSS (`getent`), else in /etc/passwd.
async fn lookup_account(key: &str) -> Result<Option<Account>> {
    match Command::new("getent")
        .args(["passwd", key])
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(output) if output.status.success() => Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(parse_passwd_line)),
        // Exit code 2: no such entry.
        Ok(output) if output.status.code() == Some(2) => Ok(None),
        _ => {
            let passwd = fs::read_to_string("/etc/passwd")?;
            Ok(passwd
                .lines()
                .filter_map(parse_passwd_line)
                .find(|account| account.name == key || account.uid.to_string() == key))
        }
    }
}

/// `name:password:uid:gid:gecos:home:shell`
fn parse_passwd_line(line: &str) -> Option<Account> {
    let mut fields = line.split(':');
    let name = fields.next()?.to_string();
    let _password = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some(Account { name, uid, gid })
}

/// The account's groups, for judging directory permissions.
async fn group_ids(account: &Account) -> Vec<u32> {
    let mut groups = vec![account.gid];
    if let Ok(output) = Command::new("id")
        .arg("-G")
        .arg(&account.name)
        .stdin(Stdio::null())
        .output()
        .await
    {
        if output.status.success() {
            groups.extend(
                String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .filter_map(|gid| gid.parse::<u32>().ok()),
            );
        }
    }
    groups
}

/// The server (running as `account`) must be able to enter every existing directory above
/// `data_dir`. We do not loosen the permissions of directories that are not ours.
async fn check_reachable(data_dir: &Path, account: &Account) -> Result<()> {
    let Some(parent) = data_dir.parent() else {
        return Ok(());
    };
    let groups = group_ids(account).await;
    let mut ancestors: Vec<&Path> = parent.ancestors().collect();
    ancestors.reverse();
    for ancestor in ancestors {
        let meta = match fs::metadata(ancestor) {
            Ok(meta) => meta,
            // Not created yet: we will create it, and check again afterwards.
            Err(e) if e.kind() == ErrorKind::NotFound => break,
            Err(e) => return Err(io_error("cannot inspect", ancestor, e)),
        };
        let search_bit = if meta.uid() == account.uid {
            0o100
        } else if groups.contains(&meta.gid()) {
            0o010
        } else {
            0o001
        };
        if meta.mode() & search_bit == 0 {
            return Err(provision(format!(
                "PostgreSQL refuses to run as root, so it runs as the unprivileged user `{}`, \
                 which cannot enter {} (mode {:04o}, owner uid {}). Choose a data directory \
                 that user can reach, e.g. LEDGER_DATA_DIR=/var/lib/ledger or \
                 LEDGER_DATA_DIR=/tmp/ledger",
                account.name,
                ancestor.display(),
                meta.mode() & 0o7777,
                meta.uid()
            )));
        }
    }
    Ok(())
}

/// The socket directory and port of a server running on `data_dir`, if there is one.
async fn running_server(
    binaries: &Binaries,
    data_dir: &Path,
    run_as: &Option<Account>,
) -> Result<Option<(PathBuf, u16)>> {
    let pid_file = data_dir.join("postmaster.pid");
    let contents = match fs::read_to_string(&pid_file) {
        Ok(contents) => contents,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot read", &pid_file, e)),
    };
    let status = command(&binaries.pg_ctl, run_as)
        .arg("status")
        .arg("-D")
        .arg(data_dir)
        .output()
        .await
        .map_err(|e| io_error("cannot run", &binaries.pg_ctl, e))?;
    if !status.status.success() {
        // A stale file from a crash: `pg_ctl start` deals with it.
        return Ok(None);
    }
    // postmaster.pid lines: pid, data directory, start time, port, first socket directory, ...
    let lines: Vec<&str> = contents.lines().collect();
    let pid = lines.first().map(|line| line.trim()).unwrap_or_default();
    if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
        let comm = comm.trim();
        if !(comm.starts_with("postgres") || comm == "postmaster") {
            // After a crash and restart (typically of a container) the recorded pid can belong to
            // an unrelated process; PostgreSQL would then refuse to start, so drop the stale file.
            tracing::warn!(
                pid,
                process = comm,
                "postmaster.pid names a process that is not PostgreSQL; removing the stale file"
            );
            fs::remove_file(&pid_file).map_err(|e| io_error("cannot remove", &pid_file, e))?;
            return Ok(None);
        }
    }
    let port = lines
        .get(3)
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or(PORT);
    let socket_dir = lines.get(4).map(|line| line.trim()).unwrap_or_default();
    if socket_dir.is_empty() {
        return Err(provision(format!(
            "the PostgreSQL server running on {} has no unix socket; stop it and start again",
            data_dir.display()
        )));
    }
    Ok(Some((PathBuf::from(socket_dir), port)))
}

/// Runs `initdb` for `data_dir`: into a scratch directory renamed into place when done, so that an
/// interrupted initdb never leaves a half-made data directory; into `data_dir` itself if that is
/// an existing empty directory (for example a mounted volume, which cannot be renamed over).
async fn initialise(binaries: &Binaries, data_dir: &Path, run_as: &Option<Account>) -> Result<()> {
    let in_place = match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(provision(format!(
                    "{} exists, is not empty and is not a PostgreSQL data directory; choose \
                     another data directory",
                    data_dir.display()
                )));
            }
            true
        }
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(io_error("cannot read", data_dir, e)),
    };
    let target = if in_place {
        fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))?;
        data_dir.to_path_buf()
    } else {
        let scratch = sibling(data_dir, "initdb")?;
        if scratch.exists() {
            // Left by an interrupted earlier attempt; we hold the lock, so nobody is using it.
            fs::remove_dir_all(&scratch).map_err(|e| io_error("cannot remove", &scratch, e))?;
        }
        DirBuilder::new()
            .mode(0o700)
            .create(&scratch)
            .map_err(|e| io_error("cannot create", &scratch, e))?;
        scratch
    };
    chown_to(&target, run_as)?;

    tracing::info!(data_dir = %data_dir.display(), "initialising a new PostgreSQL data directory");
    // Trust authentication: the server listens only on a unix socket in a 0700 directory, so the
    // file system already decides who may connect.
    let output = command(&binaries.initdb, run_as)
        .arg("-D")
        .arg(&target)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
        .output()
        .await
        .map_err(|e| io_error("cannot run", &binaries.initdb, e))?;
    if !output.status.success() {
        return Err(provision(format!(
            "initdb failed ({}): {}",
            output.status,
            output_text(&output)
        )));
    }
    if !in_place {
        fs::rename(&target, data_dir)
            .map_err(|e| io_error("cannot move into place", data_dir, e))?;
    }
    Ok(())
}

/// `/tmp/ledger-pg-<hash of the data directory>`: a unix socket path must fit in about 107 bytes,
/// which a data directory path need not. Recorded in the data directory, so that a later start
/// uses the same one even if the hash function changes.
fn socket_dir(data_dir: &Path, run_as: &Option<Account>) -> Result<PathBuf> {
    let record = data_dir.join(SOCKET_RECORD);
    if let Ok(recorded) = fs::read_to_string(&record) {
        let recorded = recorded.trim();
        if is_safe_socket_dir(recorded) {
            return Ok(PathBuf::from(recorded));
        }
    }
    let mut hasher = DefaultHasher::new();
    data_dir.as_os_str().as_bytes().hash(&mut hasher);
    let dir = format!("/tmp/ledger-pg-{:016x}", hasher.finish());
    fs::write(&record, format!("{dir}\n")).map_err(|e| io_error("cannot write", &record, e))?;
    chown_to(&record, run_as)?;
    Ok(PathBuf::from(dir))
}

/// Short, absolute, and free of characters the shell in `pg_ctl -o` would interpret.
fn is_safe_socket_dir(dir: &str) -> bool {
    dir.starts_with('/')
        && dir.len() <= 80
        && dir
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

/// Creates the socket directory (0700, owned by whoever runs the server), or checks an existing
/// one: in world-writable /tmp another user could have planted it.
fn prepare_socket_dir(dir: &Path, run_as: &Option<Account>) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("cannot create", dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| io_error("cannot inspect", dir, e))?;
    if !meta.is_dir() {
        return Err(provision(format!(
            "{} is not a directory; remove it",
            dir.display()
        )));
    }
    let me = effective_uid()?;
    let owner = run_as.as_ref().map_or(me, |account| account.uid);
    if meta.uid() != owner {
        if meta.uid() != me {
            return Err(provision(format!(
                "socket directory {} belongs to uid {}, not uid {owner}; remove it",
                dir.display(),
                meta.uid()
            )));
        }
        chown_to(dir, run_as)?;
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("cannot set permissions of", dir, e))?;
    }
    Ok(())
}

/// Hands `path` to the account the server runs as (nothing to do when not root).
fn chown_to(path: &Path, run_as: &Option<Account>) -> Result<()> {
    if let Some(account) = run_as {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
            .map_err(|e| io_error("cannot change the owner of", path, e))?;
    }
    Ok(())
}

/// A PostgreSQL tool invocation, as `run_as` when set. The working directory is `/` because the
/// unprivileged user may not be able to enter ours.
fn command(program: &Path, run_as: &Option<Account>) -> Command {
    let mut command = Command::new(program);
    command.current_dir("/").stdin(Stdio::null());
    if let Some(account) = run_as {
        command.uid(account.uid).gid(account.gid);
    }
    command
}

fn output_text(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    format!("{}\n{}", stdout.trim(), stderr.trim())
        .trim()
        .to_string()
}

/// The last few kilobytes of the server log, for error messages.
fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 4096;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Drop a partial first line.
        Ok(match (len > TAIL, text.find('\n')) {
            (true, Some(newline)) => text[newline + 1..].to_string(),
            _ => text,
        })
    };
    read().unwrap_or_else(|e| format!("(cannot read the log: {e})"))
}

fn provision(message: String) -> Error {
    Error::Provision(message)
}

/// An I/O error that names what was being done and to which path.
fn io_error(action: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("{action} {}: {e}", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_paths_readable() {
        assert_eq!(percent_encode("/tmp/ledger-pg-0a"), "/tmp/ledger-pg-0a");
        assert_eq!(percent_encode("a b&c?d"), "a%20b%26c%3Fd");
    }

    #[test]
    fn passwd_lines_parse() {
        let account =
            parse_passwd_line("postgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/sh")
                .expect("valid line");
        assert_eq!(
            (account.name.as_str(), account.uid, account.gid),
            ("postgres", 101, 104)
        );
        assert!(parse_passwd_line("broken").is_none());
    }

    #[test]
    fn newest_version_comes_first() {
        let root =
            std::env::temp_dir().join(format!("ledger-pg-versions-{}", uuid::Uuid::new_v4()));
        for version in ["9.6", "15", "16", "not-a-version"] {
            fs::create_dir_all(root.join(version).join("bin")).expect("create");
        }
        let dirs = versioned_bin_dirs(&root);
        fs::remove_dir_all(&root).expect("clean up");
        assert_eq!(
            dirs,
            vec![
                root.join("16").join("bin"),
                root.join("15").join("bin"),
                root.join("9.6").join("bin")
            ]
        );
    }

    #[test]
    fn socket_dirs_are_short_and_shell_safe() {
        assert!(is_safe_socket_dir("/tmp/ledger-pg-0123456789abcdef"));
        assert!(!is_safe_socket_dir("/tmp/x'; rm -rf /"));
        assert!(!is_safe_socket_dir("relative"));
    }

    #[tokio::test]
    async fn starts_reuses_and_stops_a_cluster() {
        let data_dir = std::env::temp_dir()
            .join(format!("ledger-pg-unit-{}", uuid::Uuid::new_v4().simple()))
            .join("data");
        let first = LocalPostgres::start(&data_dir).await.expect("start");
        assert!(first.data_dir().join("PG_VERSION").exists());
        let url = first.url("ledger");
        assert!(
            url.starts_with("postgres:///ledger?host=/tmp/ledger-pg-"),
            "{url}"
        );

        // A second start on the same directory reuses the running server and does not stop it.
        let second = LocalPostgres::start(&data_dir).await.expect("reuse");
        assert_eq!(second.url("ledger"), url);
        second.stop().await.expect("stop reused");
        let mut conn = PgConnection::connect(&url).await.expect("still running");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .expect("query");
        assert_eq!(one, 1);
        conn.close().await.expect("close");

        let data_dir = first.data_dir().to_path_buf();
        let socket_dir = first.socket_dir.clone();
        first.stop().await.expect("stop");
        assert!(PgConnection::connect(&url).await.is_err());
        if let Some(root) = data_dir.parent() {
            fs::remove_dir_all(root).expect("clean up");
        }
        fs::remove_dir_all(socket_dir).expect("clean up socket directory");
    }
}
