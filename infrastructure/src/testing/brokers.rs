//! Real message brokers for the relays' tests, from Debian's packages (`scripts/test.sh` installs
//! them when missing; by hand, `apt-get install -y rabbitmq-server nats-server`): each on
//! loopback, on free ports, with its data in a scratch directory of its own, stopped and removed
//! on drop. They can be stopped and started again on the same ports and data, as a broker
//! restart. A broker that is not installed fails the test with the command to run.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How long a broker may take to accept connections after it is started (RabbitMQ boots an
/// Erlang VM: about 10 s on a busy 2-core machine).
const START_BOUND: Duration = Duration::from_secs(90);
/// How long a broker may take to exit after SIGTERM before it is killed.
const STOP_BOUND: Duration = Duration::from_secs(30);

const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// What a test says when a broker is not installed: it fails, never skips.
const MISSING: &str = "RabbitMQ or NATS is not installed: run the tests with scripts/test.sh, \
     which installs what is missing, or install the brokers: apt-get install -y rabbitmq-server \
     nats-server";

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn scratch_dir(kind: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ledger-{kind}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Waits until `port` on loopback accepts connections, or `child` exits.
fn wait_for_port(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < START_BOUND {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(Error::Provision(format!(
                "{what} exited at start: {status}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Provision(format!(
        "{what} did not accept connections within {START_BOUND:?}"
    )))
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Sends SIGTERM to `pid` (the child itself, or the process it runs as), then waits for `child`
/// to exit, with SIGKILL after `STOP_BOUND`. (`kill -0` would not do: an exited child that is
/// not yet reaped still answers it.)
fn terminate(child: &mut Child, pid: u32) {
    signal(pid, "-TERM");
    let started = Instant::now();
    while matches!(child.try_wait(), Ok(None)) {
        if started.elapsed() > STOP_BOUND {
            signal(pid, "-KILL");
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_file(dir: &Path, name: &str) -> Result<Stdio> {
    Ok(Stdio::from(std::fs::File::create(dir.join(name))?))
}

/// A RabbitMQ node of its own: its own node name, ports, Erlang port mapper and data.
pub struct RabbitMq {
    dir: PathBuf,
    port: u16,
    epmd_port: u16,
    dist_port: u16,
    child: Option<Child>,
}

impl RabbitMq {
    pub fn start() -> Result<Self> {
        if !Path::new(RABBITMQ_SERVER).exists() {
            return Err(Error::Provision(MISSING.into()));
        }
        let dir = scratch_dir("rabbitmq")?;
        let port = free_port()?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"),
        )?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        let mut broker = Self {
            dir,
            port,
            epmd_port: free_port()?,
            dist_port: free_port()?,
            child: None,
        };
        broker.resume()?;
        Ok(broker)
    }

    /// `amqp://` on its port, as the default user.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node again on the same ports and data.
    pub fn resume(&mut self) -> Result<()> {
        let dir = &self.dir;
        let mut child = Command::new(RABBITMQ_SERVER)
            .env("HOME", dir)
            .env(
                "RABBITMQ_NODENAME",
                format!("ledger{}@localhost", self.port),
            )
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .stdin(Stdio::null())
            .stdout(log_file(dir, "stdout.log")?)
            .stderr(log_file(dir, "stderr.log")?)
            .spawn()?;
        wait_for_port(self.port, &mut child, "rabbitmq-server")?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the node (SIGTERM: RabbitMQ shuts down in order), keeping its data.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = self.beam_pid().unwrap_or(child.id());
            terminate(&mut child, pid);
        }
    }

    /// The Erlang VM's pid, which the start script writes (the script itself may not be it).
    fn beam_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.pause();
        // The node's own Erlang port mapper outlives it.
        let _ = Command::new("epmd")
            .arg("-kill")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A NATS server with JetStream, its store in a scratch directory.
pub struct Nats {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Result<Self> {
        let mut broker = Self {
            dir: scratch_dir("nats")?,
            port: free_port()?,
            child: None,
        };
        broker.resume()?;
        Ok(broker)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and store.
    pub fn resume(&mut self) -> Result<()> {
        let mut child = Command::new("nats-server")
            .args(["--jetstream", "--addr", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--store_dir")
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(log_file(&self.dir, "stdout.log")?)
            .stderr(log_file(&self.dir, "stderr.log")?)
            .spawn()
            .map_err(|e| Error::Provision(format!("nats-server: {e}; {MISSING}")))?;
        wait_for_port(self.port, &mut child, "nats-server")?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops the server (SIGTERM), keeping its store.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            terminate(&mut child, pid);
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.pause();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
