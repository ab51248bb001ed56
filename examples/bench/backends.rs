//! The backends: their stores, and the raw sqlx single-insert baseline on the same database
//! engine, with the same durability settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use eventsourcery::PersonalVault;
use uuid::Uuid;

use super::{Backend, Stores};

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Runs `total` calls of `insert` over `tasks` tasks; rows per second.
async fn spread<F, Fut>(total: usize, tasks: usize, insert: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let insert = Arc::new(insert);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (insert, next) = (insert.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        break;
                    }
                    insert(i).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle
            .await
            .unwrap_or_else(|e| panic!("raw insert task: {e}"));
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn master() -> eventsourcery::personal::MasterKey {
    eventsourcery::personal::MasterKey::generate().unwrap_or_else(|e| panic!("master key: {e}"))
}

#[cfg(feature = "sqlite")]
pub struct Sqlite {
    dir: std::path::PathBuf,
    counter: AtomicUsize,
}

#[cfg(feature = "sqlite")]
impl Sqlite {
    pub fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("eventsourcery-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            counter: AtomicUsize::new(0),
        })
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(format!(
            "{name}-{}.db",
            self.counter.fetch_add(1, Ordering::SeqCst)
        ))
    }
}

#[cfg(feature = "sqlite")]
#[eventsourcery::store::async_trait]
impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn fresh(&self) -> Stores {
        let events = eventsourcery::SqliteStore::open(self.path("events"))
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        // The default layout: keys and personal data in files of their own.
        let keys = eventsourcery::backend::SqliteKeyStore::open(self.path("keys"))
            .await
            .unwrap_or_else(|e| panic!("keys: {e}"));
        let personal = eventsourcery::backend::SqlitePersonalStore::open(self.path("personal"))
            .await
            .unwrap_or_else(|e| panic!("personal: {e}"));
        let vault = PersonalVault::new(keys, personal, master());
        Stores {
            events: Arc::new(events),
            vault: Arc::new(vault),
        }
    }

    async fn raw_inserts(&self, total: usize, tasks: usize) -> f64 {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let options = SqliteConnectOptions::new()
            .filename(self.path("raw"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(tasks as u32)
            .connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("raw sqlite: {e}"));
        sqlx::query(
            "CREATE TABLE raw_events (position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, \
             stream_id TEXT NOT NULL, stream_version INTEGER NOT NULL, event_name TEXT NOT NULL, \
             schema_version INTEGER NOT NULL, payload TEXT NOT NULL, metadata TEXT NOT NULL, \
             recorded_at_ns INTEGER NOT NULL, UNIQUE (stream_id, stream_version))",
        )
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("raw table: {e}"));
        spread(total, tasks, move |i| {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO raw_events (event_id, stream_id, stream_version, event_name, schema_version, payload, metadata, recorded_at_ns) VALUES (?, ?, 1, 'incremented', 1, '{\"by\":1}', '{}', ?)")
                    .bind(Uuid::now_v7().to_string())
                    .bind(format!("counter-{i}"))
                    .bind(now_ns())
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("raw insert: {e}"));
            }
        })
        .await
    }

    async fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "postgres")]
pub struct Postgres {
    admin: sqlx::PgPool,
    base: String,
    databases: std::sync::Mutex<Vec<String>>,
}

#[cfg(feature = "postgres")]
impl Postgres {
    pub async fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let base = std::env::var("EVENTSOURCERY_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&base)
            .await?;
        Ok(Self {
            admin,
            base,
            databases: std::sync::Mutex::new(Vec::new()),
        })
    }

    async fn database(&self) -> sqlx::PgPool {
        let name = format!(
            "es_bench_{}_{}",
            std::process::id(),
            Uuid::new_v4().simple()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&self.admin)
            .await
            .unwrap_or_else(|e| panic!("create database: {e}"));
        self.databases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        let url = match self.base.rfind('/') {
            Some(slash) => format!("{}/{name}", &self.base[..slash]),
            None => panic!("EVENTSOURCERY_POSTGRES_URL has no database part"),
        };
        // Every pool, the raw baseline's too, has the options `PostgresStore::connect` uses.
        eventsourcery::PostgresStore::pool_options()
            .max_connections(16)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }
}

#[cfg(feature = "postgres")]
#[eventsourcery::store::async_trait]
impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn fresh(&self) -> Stores {
        let pool = self.database().await;
        let events = eventsourcery::PostgresStore::from_pool(pool)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        // The default layout: keys and personal data in databases of their own.
        let keys = eventsourcery::backend::PostgresKeyStore::from_pool(self.database().await)
            .await
            .unwrap_or_else(|e| panic!("keys: {e}"));
        let personal =
            eventsourcery::backend::PostgresPersonalStore::from_pool(self.database().await)
                .await
                .unwrap_or_else(|e| panic!("personal: {e}"));
        let vault = PersonalVault::new(keys, personal, master());
        Stores {
            events: Arc::new(events),
            vault: Arc::new(vault),
        }
    }

    async fn raw_inserts(&self, total: usize, tasks: usize) -> f64 {
        let pool = self.database().await;
        sqlx::query(
            "CREATE TABLE raw_events (position BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL UNIQUE, \
             stream_id TEXT NOT NULL, stream_version BIGINT NOT NULL, event_name TEXT NOT NULL, \
             schema_version BIGINT NOT NULL, payload JSONB NOT NULL, metadata JSONB NOT NULL, \
             recorded_at_ns BIGINT NOT NULL, UNIQUE (stream_id, stream_version))",
        )
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("raw table: {e}"));
        spread(total, tasks, move |i| {
            let pool = pool.clone();
            async move {
                sqlx::query("INSERT INTO raw_events (event_id, stream_id, stream_version, event_name, schema_version, payload, metadata, recorded_at_ns) VALUES ($1, $2, 1, 'incremented', 1, '{\"by\":1}', '{}', $3)")
                    .bind(Uuid::now_v7())
                    .bind(format!("counter-{i}"))
                    .bind(now_ns())
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("raw insert: {e}"));
            }
        })
        .await
    }

    async fn cleanup(&self) {
        let names = std::mem::take(&mut *self.databases.lock().unwrap_or_else(|p| p.into_inner()));
        for name in names {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&self.admin)
            .await;
        }
    }
}
