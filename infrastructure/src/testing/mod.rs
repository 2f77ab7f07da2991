//! Test support: a fresh, empty database per test, on `DATABASE_URL`'s server when set, else on a
//! shared local test cluster.
//!
//! Each `#[tokio::test]` has its own runtime, so nothing here keeps a connection or pool across
//! tests: every create and drop opens (and closes) its own connection. `brokers` starts the real
//! message brokers the relays are tested against.

pub mod brokers;

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::sync::OnceCell;

use crate::local_postgres::{
    connect_patiently, effective_uid, has_sqlstate, percent_encode, quote_ident, LocalPostgres,
};
use crate::{Error, Result};

/// Test database names: `ledger_test_<pid>_<host tag>_<uuid>`.
const PREFIX: &str = "ledger_test_";

/// When set, a directory: `drop_database` first writes the events of each ledger of the database
/// there, as `ledger export` does (`<database>.<ledger>.ndjson`), so that scripts/test.sh can
/// validate every event the suite appended against docs/schemas (tools/validate_events.py). Each
/// database also leaves a marker, `<database>.created` (naming the test) until it is dropped and
/// `<database>.dropped` after, so that the script can say which tests never dropped theirs (and
/// whose events were never checked).
pub const EVENTS_DIR_ENV: &str = "LEDGER_TEST_EVENTS_DIR";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates a new, empty database with a unique name and returns it.
    pub async fn create() -> Result<TestDatabase> {
        let server = server().await?;
        let name = format!(
            "{PREFIX}{}_{}_{}",
            std::process::id(),
            host_tag(),
            uuid::Uuid::new_v4().simple()
        );
        let url = server.database_url(&name)?;
        let mut conn = server.connect_admin().await?;
        let created = create_database(&mut conn, &name).await;
        conn.close().await?;
        created?;
        if let Some(dir) = events_dir() {
            fs::write(dir.join(format!("{name}.created")), creator())?;
        }
        Ok(TestDatabase {
            url,
            name,
            admin_url: server.admin_url.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, disconnecting anyone still connected. Best-effort cleanup at the end
    /// of a test: a database left behind (a test that panicked) is dropped by a later run.
    ///
    /// With `LEDGER_TEST_EVENTS_DIR` set, the events of every ledger are written there first
    /// (`EVENTS_DIR_ENV`); the database is dropped even when that fails, and the failure is
    /// returned.
    pub async fn drop_database(self) -> Result<()> {
        let exported = match events_dir() {
            Some(dir) => self.export_events(&dir).await,
            None => Ok(()),
        };
        let mut conn = connect_admin(&self.admin_url).await?;
        let dropped = drop_database(&mut conn, &self.name).await;
        conn.close().await?;
        exported.and(dropped)
    }

    /// Writes each ledger's log to `dir` (`write_events`), then turns the database's marker from
    /// created to dropped; on failure, leaves `<database>.export-failed` saying why, which
    /// scripts/test.sh reports (callers of `drop_database` may ignore its result).
    async fn export_events(&self, dir: &Path) -> Result<()> {
        if let Err(e) = self.write_events(dir).await {
            fs::write(
                dir.join(format!("{}.export-failed", self.name)),
                e.to_string(),
            )?;
            return Err(e);
        }
        fs::write(dir.join(format!("{}.dropped", self.name)), "")?;
        match fs::remove_file(dir.join(format!("{}.created", self.name))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Each ledger's log as `ledger export` writes it (`crate::audit::export`), in
    /// `<database>.<ledger>.ndjson`.
    async fn write_events(&self, dir: &Path) -> Result<()> {
        let options = PgConnectOptions::from_str(&self.url)?;
        let registry = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let ledgers = every_ledger(&registry).await;
        registry.close().await;
        for ledger in ledgers? {
            let path = dir.join(format!("{}.{}.ndjson", self.name, ledger.name));
            let mut out = std::io::BufWriter::new(fs::File::create(&path)?);
            let book = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(crate::ledgers::book_options(&options, &ledger))
                .await?;
            let written = crate::audit::export(&book, 0, &mut out).await;
            book.close().await;
            written?;
        }
        Ok(())
    }
}

/// Which test created a database, for the marker that says it was never dropped: the test
/// binary and the thread, which the test harness names after the test.
fn creator() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let thread = std::thread::current();
    format!("{binary} {}", thread.name().unwrap_or("(unnamed thread)"))
}

/// `EVENTS_DIR_ENV`, when set and not empty.
fn events_dir() -> Option<std::path::PathBuf> {
    std::env::var_os(EVENTS_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map(Into::into)
}

/// Every ledger of a test database; none when it was never migrated (a test of the test support
/// itself, or of what happens before the migrations run).
async fn every_ledger(pool: &PgPool) -> Result<Vec<crate::ledgers::Ledger>> {
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('public.ledgers') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !migrated {
        return Ok(Vec::new());
    }
    crate::ledgers::all(pool).await
}

/// Where test databases are created.
struct TestServer {
    /// A database on the server to connect to for CREATE / DROP DATABASE.
    admin_url: String,
    kind: ServerKind,
}

enum ServerKind {
    /// `DATABASE_URL`: test database URLs are it with the database name replaced.
    External { base_url: String },
    /// Kept (never stopped) so that the cluster stays up after the tests: the next run reuses it
    /// instead of paying for a start.
    Local(LocalPostgres),
}

impl TestServer {
    fn database_url(&self, name: &str) -> Result<String> {
        match &self.kind {
            ServerKind::External { base_url } => with_database(base_url, name),
            ServerKind::Local(postgres) => Ok(postgres.url(name)),
        }
    }

    async fn connect_admin(&self) -> Result<PgConnection> {
        connect_admin(&self.admin_url).await
    }
}

static SERVER: OnceCell<TestServer> = OnceCell::const_new();

/// The test server, set up once per process.
async fn server() -> Result<&'static TestServer> {
    SERVER
        .get_or_try_init(|| async {
            let server = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.trim().is_empty() => TestServer {
                    admin_url: url.clone(),
                    kind: ServerKind::External { base_url: url },
                },
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Error::Provision("DATABASE_URL is not valid UTF-8".into()));
                }
                _ => {
                    let data_dir = std::env::temp_dir()
                        .join(format!("ledger-test-postgres-{}", effective_uid()?));
                    let postgres = LocalPostgres::start(&data_dir).await?;
                    TestServer {
                        admin_url: postgres.url("postgres"),
                        kind: ServerKind::Local(postgres),
                    }
                }
            };
            drop_leftovers(&server.admin_url).await;
            Ok(server)
        })
        .await
}

/// Connects to the admin database; for `DATABASE_URL`, falls back to the `postgres` database when
/// the named one does not exist (yet).
async fn connect_admin(admin_url: &str) -> Result<PgConnection> {
    match connect_patiently(admin_url).await {
        Err(Error::Database(e)) if has_sqlstate(&e, "3D000") => {
            Ok(connect_patiently(&with_database(admin_url, "postgres")?).await?)
        }
        other => other,
    }
}

// SQL runs through `Executor::execute`: `RawSql::execute`'s future is not `Send` in general, and
// tests may create databases from spawned tasks.
async fn create_database(conn: &mut PgConnection, name: &str) -> Result<()> {
    let sql = format!("CREATE DATABASE {}", quote_ident(name));
    let mut attempt = 0;
    loop {
        match conn.execute(sqlx::raw_sql(&sql)).await {
            Ok(_) => return Ok(()),
            // "source database template1 is being accessed by other users": someone is briefly
            // connected to the template; wait for them rather than fail the test.
            Err(e) if has_sqlstate(&e, "55006") && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn drop_database(conn: &mut PgConnection, name: &str) -> Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    conn.execute(sqlx::raw_sql(&sql)).await?;
    Ok(())
}

/// Drops test databases of earlier processes that are gone (a panicking test never drops its
/// database), so that they do not pile up across runs. Only names with this machine's tag are
/// considered, since a pid says nothing about processes elsewhere; a database whose process is
/// alive is never dropped. Best effort: failures are logged and ignored.
async fn drop_leftovers(admin_url: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let result: Result<()> = async {
        let mut conn = connect_admin(admin_url).await?;
        let mut names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database")
            .fetch_all(&mut conn)
            .await?;
        // Filtered up front: an iterator adaptor held across the awaits below would make this
        // future not `Send` (rustc's higher-ranked lifetime limitation).
        names.retain(|name| is_leftover(name, host_tag()));
        for name in &names {
            match drop_database(&mut conn, name).await {
                Ok(()) => tracing::info!(database = %name, "dropped leftover test database"),
                Err(e) => {
                    tracing::warn!(database = %name, error = %e, "cannot drop leftover test database")
                }
            }
        }
        conn.close().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot clean up leftover test databases");
    }
}

/// Whether `name` is a test database created on this machine by a process that no longer exists.
fn is_leftover(name: &str, tag: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let mut parts = rest.split('_');
    let (Some(pid), Some(name_tag)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    name_tag == tag && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Eight hex digits naming this machine and pid namespace: pids are only meaningful within one.
fn host_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let mut hasher = DefaultHasher::new();
        fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| fs::read_to_string("/etc/hostname"))
            .unwrap_or_default()
            .trim()
            .hash(&mut hasher);
        fs::read_link("/proc/self/ns/pid")
            .unwrap_or_default()
            .hash(&mut hasher);
        format!("{:08x}", hasher.finish() as u32)
    })
}

/// `url` with its database (the path) replaced by `name`; keeps the query string, except a
/// `dbname` parameter, which would override the path.
fn with_database(url: &str, name: &str) -> Result<String> {
    let authority_start = url
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| Error::Provision(format!("DATABASE_URL {url:?} is not a URL")))?;
    let (scheme, rest) = url.split_at(authority_start);
    let (rest, fragment) = match rest.find('#') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (authority_and_path, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let authority = authority_and_path
        .find('/')
        .map_or(authority_and_path, |i| &authority_and_path[..i]);
    let query: Vec<&str> = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("dbname"))
        .collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    Ok(format!(
        "{scheme}{authority}/{}{query}{fragment}",
        percent_encode(name)
    ))
}

/// Polls `probe` until it gives a value, for at most `bound`: waiting on observable state.
pub async fn eventually<T, F, Fut>(bound: std::time::Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {bound:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_in_urls() {
        let cases = [
            ("postgres://u:p@h:5432/ledger", "postgres://u:p@h:5432/t1"),
            ("postgres://u@h", "postgres://u@h/t1"),
            ("postgres://u@h/", "postgres://u@h/t1"),
            (
                "postgres://u@h/ledger?sslmode=disable&dbname=x",
                "postgres://u@h/t1?sslmode=disable",
            ),
            (
                "postgres:///ledger?host=/tmp/s&port=5432&user=ledger",
                "postgres:///t1?host=/tmp/s&port=5432&user=ledger",
            ),
            (
                "postgres://u@h?sslmode=disable",
                "postgres://u@h/t1?sslmode=disable",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "t1").expect("valid"), expected, "{url}");
        }
        assert!(with_database("not a url", "t1").is_err());
    }

    #[test]
    fn leftovers_are_only_dead_processes_on_this_machine() {
        let tag = host_tag();
        // Above the kernel's pid limit (4194304), so no such process.
        assert!(is_leftover(&format!("{PREFIX}4294967_{tag}_abc"), tag));
        assert!(!is_leftover(
            &format!("{PREFIX}{}_{tag}_abc", std::process::id()),
            tag
        ));
        assert!(!is_leftover(&format!("{PREFIX}1_{tag}_abc"), tag));
        assert!(!is_leftover("ledger_test_4294967_othertag_abc", tag));
        assert!(!is_leftover("ledger", tag));
    }

    async fn select_one(url: &str) -> i32 {
        let mut conn = PgConnection::connect(url).await.expect("connect");
        let one = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .expect("select");
        conn.close().await.expect("close");
        one
    }

    async fn exists(name: &str) -> bool {
        let server = server().await.expect("server");
        let mut conn = server.connect_admin().await.expect("connect admin");
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .expect("query");
        conn.close().await.expect("close");
        found.is_some()
    }

    #[tokio::test]
    async fn creates_distinct_usable_databases() {
        let a = TestDatabase::create().await.expect("create a");
        let b = TestDatabase::create().await.expect("create b");
        assert_ne!(a.name(), b.name());
        assert_ne!(a.url(), b.url());
        assert_eq!(select_one(a.url()).await, 1);
        assert_eq!(select_one(b.url()).await, 1);

        let mut conn = PgConnection::connect(a.url()).await.expect("connect");
        let current: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .expect("select");
        assert_eq!(current, a.name());
        // Still connected: the drop must disconnect it.
        let (a_name, b_name) = (a.name().to_string(), b.name().to_string());
        a.drop_database().await.expect("drop a");
        b.drop_database().await.expect("drop b");
        drop(conn);
        assert!(!exists(&a_name).await);
        assert!(!exists(&b_name).await);
    }

    #[tokio::test]
    async fn creates_databases_concurrently() {
        let tasks: Vec<_> = (0..8)
            .map(|_| tokio::spawn(TestDatabase::create()))
            .collect();
        let mut databases = Vec::new();
        for task in tasks {
            databases.push(task.await.expect("join").expect("create"));
        }
        for database in databases {
            assert_eq!(select_one(database.url()).await, 1);
            database.drop_database().await.expect("drop");
        }
    }

    #[tokio::test]
    async fn drops_leftovers_of_dead_processes_only() {
        let server = server().await.expect("server");
        let unique = uuid::Uuid::new_v4().simple();
        let dead = format!("{PREFIX}4294967_{}_{unique}", host_tag());
        let live = format!("{PREFIX}{}_{}_{unique}", std::process::id(), host_tag());
        let mut conn = server.connect_admin().await.expect("connect admin");
        for name in [&dead, &live] {
            drop_database(&mut conn, name).await.expect("drop old");
            create_database(&mut conn, name).await.expect("create");
        }
        conn.close().await.expect("close");

        drop_leftovers(&server.admin_url).await;
        assert!(!exists(&dead).await);
        assert!(exists(&live).await);

        let mut conn = server.connect_admin().await.expect("connect admin");
        drop_database(&mut conn, &live).await.expect("drop");
        conn.close().await.expect("close");
    }
}
