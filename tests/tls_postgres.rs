//! TLS to the three PostgreSQL stores: each connects with `sslmode=require` and with
//! `verify-ca` (in its URL, or from `Settings`) and its sessions are encrypted
//! (`pg_stat_ssl`); `verify-ca` with another root and `verify-full` for a name the certificate
//! does not hold are refused; loopback without TLS works as before; and no store's or
//! setting's `Debug` shows a password.
//!
//! Needs the server to be on this machine with `ssl = on` (Debian's default snakeoil
//! certificate; `.ci/run` turns it on): its `ssl_cert_file` is read as the root certificate,
//! or the file named by `EVENTSOURCERY_POSTGRES_SSLROOTCERT`. The refusal of plaintext to a
//! network host is a unit test of the URL policy (`eventsourcery::tls`), which sends nothing.
//!
//! Runs when `EVENTSOURCERY_POSTGRES_URL` is set; otherwise each test prints that it was
//! skipped. Each test that ran appends `tls_postgres::<test>` to the file named by
//! `EVENTSOURCERY_POSTGRES_MARKER` (CI counts them).
#![cfg(feature = "postgres")]

mod support;

use std::path::{Path, PathBuf};

use eventsourcery::backend::{PostgresKeyStore, PostgresPersonalStore};
use eventsourcery::config::{MasterKeySource, Settings, SslMode};
use eventsourcery::personal::MasterKey;
use eventsourcery::personal::PersonalError;
use eventsourcery::sqlx::postgres::{PgConnectOptions, PgPool, PgSslMode};
use eventsourcery::store::KeyStore;
use eventsourcery::tls::PlaintextConnections;
use eventsourcery::{EventStore, PersonalKey, PersonalVault, PostgresStore, StoreError};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use support::postgres::TestDatabase;

/// Overrides the root certificate the tests trust (by default the server's `ssl_cert_file`).
const ROOT_CERT: &str = "EVENTSOURCERY_POSTGRES_SSLROOTCERT";

/// A certificate that signed nothing the server holds.
const UNRELATED_CA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/unrelated-ca.pem"
);

const HEX: &str = "4f1c2b3a59687766554433221100ffeeddccbbaa99887766554433221100ffee";

/// `count` databases of their own for `test`.
async fn databases(test: &'static str, count: usize) -> Option<Vec<TestDatabase>> {
    let mut databases = Vec::with_capacity(count);
    for _ in 0..count {
        databases.push(TestDatabase::create(test).await?);
    }
    Some(databases)
}

/// `url` with `parameters` (`a=1&b=2`) added to its query.
fn with(url: &str, parameters: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{parameters}")
}

/// The certificate to trust as root: the server's own (self-signed) certificate file.
async fn server_certificate(database: &TestDatabase) -> PathBuf {
    let pool = database.pool().await;
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        ssl, "on",
        "the test server has ssl off: `.ci/run` turns it on, or run \
         ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf(); as a superuser"
    );
    let path = match std::env::var(ROOT_CERT) {
        Ok(path) => PathBuf::from(path),
        Err(_) => {
            let file: String = sqlx::query_scalar("SHOW ssl_cert_file")
                .fetch_one(&pool)
                .await
                .unwrap();
            let file = PathBuf::from(file);
            if file.is_absolute() {
                file
            } else {
                let data: String = sqlx::query_scalar("SHOW data_directory")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                Path::new(&data).join(file)
            }
        }
    };
    pool.close().await;
    assert!(
        path.is_file(),
        "{} is not readable here: run the server on this machine, or set {ROOT_CERT}",
        path.display()
    );
    path
}

/// Whether the session of one of `pool`'s connections is encrypted.
async fn encrypted(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// How many sessions other than the asking one are connected to `database`, and whether
/// every one of them is encrypted.
async fn sessions(admin: &PgPool, database: &str) -> (i64, bool) {
    sqlx::query_as(
        "SELECT count(*), coalesce(bool_and(s.ssl), false)
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Erases and exports a subject: a write and a read in both personal stores.
async fn exercise(vault: &PersonalVault) {
    let subject = PersonalKey::issue();
    vault.erase(subject, "tls test").await.unwrap();
    assert!(vault.export(subject).await.unwrap().erased);
}

/// The error and its sources, as one text.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

async fn finish(databases: Vec<TestDatabase>) {
    for database in databases {
        database.finish().await;
    }
}

/// Connects the three stores with `parameters` in their URLs and checks each is encrypted.
async fn three_stores_encrypted(databases: &[TestDatabase], parameters: &str) {
    let urls: Vec<String> = databases
        .iter()
        .map(|d| with(&d.url(), parameters))
        .collect();
    let events = PostgresStore::connect(&urls[0]).await.unwrap();
    let keys = PostgresKeyStore::connect(&urls[1]).await.unwrap();
    let data = PostgresPersonalStore::connect(&urls[2]).await.unwrap();
    for (store, pool) in [
        ("event store", events.pool()),
        ("key store", keys.pool()),
        ("personal data store", data.pool()),
    ] {
        assert!(
            encrypted(pool).await,
            "the {store} session is not encrypted"
        );
    }
    events.read_all(0, 10).await.unwrap();
    assert!(keys.all_keys().await.unwrap().is_empty());
    let vault = PersonalVault::new(keys.clone(), data.clone(), MasterKey::generate().unwrap());
    exercise(&vault).await;
    for pool in [events.pool(), keys.pool(), data.pool()] {
        pool.close().await;
    }
}

#[tokio::test]
async fn all_three_stores_connect_with_sslmode_require() {
    let Some(databases) = databases("all_three_stores_connect_with_sslmode_require", 3).await
    else {
        return;
    };
    // The server must have TLS on, or `require` would fail for the wrong reason.
    server_certificate(&databases[0]).await;
    three_stores_encrypted(&databases, "sslmode=require").await;
    finish(databases).await;
}

#[tokio::test]
async fn all_three_stores_verify_the_server_certificate_as_root() {
    let Some(databases) =
        databases("all_three_stores_verify_the_server_certificate_as_root", 3).await
    else {
        return;
    };
    let root = server_certificate(&databases[0]).await;
    let parameters = format!("sslmode=verify-ca&sslrootcert={}", root.display());
    three_stores_encrypted(&databases, &parameters).await;
    finish(databases).await;
}

#[tokio::test]
async fn settings_give_every_url_their_sslmode_and_root() {
    let Some(databases) = databases("settings_give_every_url_their_sslmode_and_root", 3).await
    else {
        return;
    };
    let root = server_certificate(&databases[0]).await;
    let mut settings = Settings::defaults(std::env::temp_dir().join("es-tls-unused"));
    settings.events_url = databases[0].url();
    settings.keys_url = databases[1].url();
    settings.personal_url = databases[2].url();
    settings.master_key = MasterKeySource::Hex(HEX.into());
    settings.ssl_mode = Some(SslMode::VerifyCa);
    settings.ssl_root_cert = Some(root);
    settings.validate().unwrap();
    let stores = settings.open().await.unwrap();
    stores.events.read_all(0, 10).await.unwrap();
    exercise(&stores.vault).await;

    let admin = databases[0].pool().await;
    for database in &databases {
        let (count, all_encrypted) = sessions(&admin, &database.name).await;
        assert!(
            count > 0 && all_encrypted,
            "{}: {count} sessions",
            database.name
        );
    }
    admin.close().await;
    drop(stores);
    finish(databases).await;
}

#[tokio::test]
async fn verify_ca_refuses_a_certificate_from_another_root() {
    let Some(database) =
        TestDatabase::create("verify_ca_refuses_a_certificate_from_another_root").await
    else {
        return;
    };
    server_certificate(&database).await;
    let url = with(
        &database.url(),
        &format!("sslmode=verify-ca&sslrootcert={UNRELATED_CA}"),
    );
    let error = PostgresKeyStore::connect(&url).await.err();
    assert!(
        matches!(
            error,
            Some(PersonalError::Database {
                operation: "connect",
                ..
            })
        ),
        "{error:?}"
    );
    let text = error.map(|e| chain(&e)).unwrap_or_default();
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    let error = PostgresStore::connect(&url).await.err();
    assert!(
        matches!(
            error,
            Some(StoreError::Database {
                operation: "connect",
                ..
            })
        ),
        "{error:?}"
    );
    database.finish().await;
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_name() {
    let Some(database) =
        TestDatabase::create("verify_full_refuses_a_certificate_for_another_name").await
    else {
        return;
    };
    let root = server_certificate(&database).await;
    // The certificate names a host (`localhost` or the machine's name), never an address.
    let options = database
        .options
        .clone()
        .host("127.0.0.1")
        .ssl_mode(PgSslMode::VerifyFull)
        .ssl_root_cert(&root);
    let error = PostgresPersonalStore::connect_with(options.clone(), PlaintextConnections::Refuse)
        .await
        .err();
    let text = error.as_ref().map(|e| chain(e)).unwrap_or_default();
    assert!(
        matches!(
            error,
            Some(PersonalError::Database {
                operation: "connect",
                ..
            })
        ),
        "{text}"
    );
    assert!(text.contains("not valid for name \"127.0.0.1\""), "{text}");
    // The same chain without the name check is accepted: the name was the reason.
    let store = PostgresPersonalStore::connect_with(
        options.clone().ssl_mode(PgSslMode::VerifyCa),
        PlaintextConnections::Refuse,
    )
    .await
    .unwrap();
    assert!(encrypted(store.pool()).await);
    store.pool().close().await;
    // Where the certificate names `localhost` (Debian's snakeoil on a machine of that name),
    // verify-full to `localhost` passes.
    if text.contains("DnsName(\"localhost\")") {
        let store = PostgresPersonalStore::connect_with(
            options.host("localhost"),
            PlaintextConnections::Refuse,
        )
        .await
        .unwrap();
        assert!(encrypted(store.pool()).await);
        store.pool().close().await;
    } else {
        println!("the certificate does not name localhost: verify-full was only refused: {text}");
    }
    database.finish().await;
}

#[tokio::test]
async fn loopback_without_tls_works_as_before() {
    let Some(database) = TestDatabase::create("loopback_without_tls_works_as_before").await else {
        return;
    };
    let loopback = database.options.get_host() == "127.0.0.1"
        || database.options.get_host() == "localhost"
        || database.options.get_host() == "::1";
    assert!(
        loopback,
        "this test needs a loopback EVENTSOURCERY_POSTGRES_URL"
    );
    // The URL as given (no TLS settings), and with TLS explicitly off.
    for url in [database.url(), with(&database.url(), "sslmode=disable")] {
        let keys = PostgresKeyStore::connect(&url).await.unwrap();
        let data = PostgresPersonalStore::connect(&url).await.unwrap();
        let vault = PersonalVault::new(keys.clone(), data.clone(), MasterKey::generate().unwrap());
        exercise(&vault).await;
        keys.pool().close().await;
        data.pool().close().await;
    }
    let url = with(&database.url(), "sslmode=disable");
    let keys = PostgresKeyStore::connect(&url).await.unwrap();
    assert!(!encrypted(keys.pool()).await, "sslmode=disable is honoured");
    keys.pool().close().await;
    database.finish().await;
}

#[tokio::test]
async fn debug_shows_no_password_of_any_store_or_setting() {
    let Some(database) =
        TestDatabase::create("debug_shows_no_password_of_any_store_or_setting").await
    else {
        return;
    };
    // A role of its own, so that its password is a string found nowhere else.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let role = format!("es_test_role_{suffix}");
    let password = format!("Pw{suffix}");
    let admin = database.pool().await;
    admin
        .execute(AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'"
        )))
        .await
        .unwrap();
    admin
        .execute(AssertSqlSafe(format!(
            "ALTER DATABASE {} OWNER TO {role}",
            database.name
        )))
        .await
        .unwrap();
    admin.close().await;
    let host = database.options.get_host().to_owned();
    let port = database.options.get_port();
    let in_user_info = format!(
        "postgres://{role}:{password}@{host}:{port}/{}?sslmode=require",
        database.name
    );
    let in_query = format!(
        "postgres://{host}:{port}/{}?user={role}&password={password}&sslmode=require",
        database.name
    );

    let events = PostgresStore::connect(&in_user_info).await.unwrap();
    let keys = PostgresKeyStore::connect(&in_query).await.unwrap();
    let data = PostgresPersonalStore::connect(&in_user_info).await.unwrap();
    let mut settings = Settings::defaults(std::env::temp_dir().join("es-tls-unused"));
    settings.events_url = in_query.clone();
    settings.keys_url = in_user_info.clone();
    settings.personal_url = in_query.clone();
    settings.master_key = MasterKeySource::Hex(HEX.into());
    let stores = settings.open().await.unwrap();
    let debug = format!("{events:?} {keys:?} {data:?} {settings:?} {stores:?}");
    assert!(!debug.contains(&password), "{debug}");
    assert!(!debug.contains(HEX), "{debug}");
    assert!(debug.contains(&database.name), "{debug}");
    assert!(
        debug.contains("password=***") && debug.contains(":***@"),
        "{debug}"
    );

    for pool in [events.pool(), keys.pool(), data.pool()] {
        pool.close().await;
    }
    if let eventsourcery::config::EventsBackend::Postgres(store) = &stores.backend {
        store.pool().close().await;
    }
    drop(stores);
    database.finish().await;
    let base: PgConnectOptions = std::env::var(support::postgres::URL)
        .unwrap()
        .parse()
        .unwrap();
    let mut conn = PgConnection::connect_with(&base).await.unwrap();
    conn.execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .await
        .unwrap();
    let _ = conn.close().await;
}
