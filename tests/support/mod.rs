//! Helpers shared by the backend test files: a database of its own per PostgreSQL test, and
//! temporary SQLite files.
#![allow(dead_code)]

pub mod spans;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// What a test runs after it passed: closing pools, removing files, dropping databases.
pub type Finish = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A fresh SQLite file path in the temporary directory.
pub fn sqlite_file(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("eventsourcery-{test}-{}.db", uuid::Uuid::now_v7()))
}

/// Removes a SQLite file and its WAL files.
pub fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// A memory store whose stream reads fail, as a broken database would.
#[derive(Default)]
pub struct BrokenReads {
    inner: eventsourcery::MemoryStore,
}

#[eventsourcery::store::async_trait]
impl eventsourcery::EventStore for BrokenReads {
    async fn append(
        &self,
        commit: eventsourcery::store::Commit,
    ) -> Result<Vec<eventsourcery::store::RecordedEvent>, eventsourcery::StoreError> {
        self.inner.append(commit).await
    }
    async fn read_stream_page(
        &self,
        stream: &eventsourcery::value::StreamId,
        _: u64,
        _: usize,
    ) -> Result<Vec<eventsourcery::store::RecordedEvent>, eventsourcery::StoreError> {
        Err(eventsourcery::StoreError::Corrupt {
            table: "eventsourcery_events",
            location: format!("stream `{stream}`"),
            reason: "a broken row".into(),
        })
    }
    async fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<eventsourcery::store::RecordedEvent>, eventsourcery::StoreError> {
        self.inner.read_all(after, limit).await
    }
    async fn read_commands(
        &self,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<eventsourcery::store::CommandRecord>, eventsourcery::StoreError> {
        self.inner.read_commands(offset, limit).await
    }
    async fn load_snapshot(
        &self,
        stream: &eventsourcery::value::StreamId,
    ) -> Result<Option<eventsourcery::store::Snapshot>, eventsourcery::StoreError> {
        self.inner.load_snapshot(stream).await
    }
    async fn save_snapshot(
        &self,
        snapshot: eventsourcery::store::Snapshot,
    ) -> Result<(), eventsourcery::StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
}

#[cfg(feature = "postgres")]
pub mod postgres {
    use std::io::Write;

    use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
    use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
    use uuid::Uuid;

    pub const URL: &str = "EVENTSOURCERY_POSTGRES_URL";
    pub const MARKER: &str = "EVENTSOURCERY_POSTGRES_MARKER";

    /// A database of its own for one test, on the server named by `EVENTSOURCERY_POSTGRES_URL`;
    /// dropped by [`TestDatabase::finish`] when the test passes.
    pub struct TestDatabase {
        test: &'static str,
        admin: PgConnectOptions,
        pub name: String,
        pub options: PgConnectOptions,
    }

    impl TestDatabase {
        /// Creates the database, or prints that the test is skipped when no server is set.
        pub async fn create(test: &'static str) -> Option<Self> {
            let Ok(url) = std::env::var(URL) else {
                println!(
                    "skipped {test}: set {URL} (e.g. postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests"
                );
                return None;
            };
            let admin: PgConnectOptions = url
                .parse()
                .expect("EVENTSOURCERY_POSTGRES_URL is a PostgreSQL URL");
            let name = format!("es_test_{}", Uuid::new_v4().simple());
            let mut conn = PgConnection::connect_with(&admin)
                .await
                .expect("connect to EVENTSOURCERY_POSTGRES_URL");
            conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create test database");
            let _ = conn.close().await;
            let options = admin.clone().database(&name);
            Some(Self {
                test,
                admin,
                name,
                options,
            })
        }

        /// The URL of the test database.
        pub fn url(&self) -> String {
            let base = std::env::var(URL).unwrap_or_default();
            match base.rfind('/') {
                Some(slash) => format!("{}/{}", &base[..slash], self.name),
                None => panic!("{URL} has no database part"),
            }
        }

        /// A pool on the test database.
        pub async fn pool(&self) -> PgPool {
            PgPoolOptions::new()
                .max_connections(20)
                .connect_with(self.options.clone())
                .await
                .expect("connect to the test database")
        }

        /// Records that the test really ran (CI counts these), and drops the database.
        pub async fn finish(self) {
            if let Ok(path) = std::env::var(MARKER) {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open marker");
                let binary = std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                let binary = binary.split('-').next().unwrap_or_default().to_owned();
                writeln!(file, "{binary}::{}", self.test).expect("write marker");
            }
            if let Ok(mut conn) = PgConnection::connect_with(&self.admin).await {
                let _ = conn
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    )))
                    .await;
            }
        }
    }
}

/// A `nats-server -js` of the test's own, on a free port with its own store directory, that
/// the test can stop and start again (same port, same directory); killed when dropped.
#[cfg(feature = "nats")]
pub mod nats {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub const SWITCH: &str = "EVENTSOURCERY_NATS";
    pub const MARKER: &str = "EVENTSOURCERY_NATS_MARKER";

    pub struct NatsServer {
        pub port: u16,
        pub dir: PathBuf,
        child: Option<Child>,
    }

    impl NatsServer {
        /// Starts a server, or prints that the test is skipped unless `EVENTSOURCERY_NATS=1`.
        pub fn start(test: &str) -> Option<Self> {
            if std::env::var(SWITCH).as_deref() != Ok("1") {
                println!(
                    "skipped {test}: set {SWITCH}=1 (with nats-server on the PATH) to run the NATS tests"
                );
                return None;
            }
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir = std::env::temp_dir().join(format!(
                "eventsourcery-nats-{test}-{}",
                uuid::Uuid::now_v7()
            ));
            std::fs::create_dir_all(&dir).expect("the server's store directory");
            let mut server = Self {
                port,
                dir,
                child: None,
            };
            server.resume();
            Some(server)
        }

        pub fn url(&self) -> String {
            format!("nats://127.0.0.1:{}", self.port)
        }

        /// Starts the server (again), and waits until it accepts connections.
        pub fn resume(&mut self) {
            let child = Command::new("nats-server")
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-sd",
                ])
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server on the PATH (apt-get install nats-server)");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        /// Kills the server (SIGKILL: an outage, not a clean shutdown).
        pub fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Records that the test really ran (CI counts these); dropping `self` then stops the
        /// server and removes its directory.
        pub fn finish(self, test: &str) {
            if let Ok(path) = std::env::var(MARKER) {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open marker");
                let binary = std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                let binary = binary.split('-').next().unwrap_or_default().to_owned();
                writeln!(file, "{binary}::{test}").expect("write marker");
            }
        }
    }

    /// A failing test stops its server and removes its store directory too.
    impl Drop for NatsServer {
        fn drop(&mut self) {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
