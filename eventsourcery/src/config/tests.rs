//! The settings: defaults, the environment, the checks of `validate`, and `Debug`.

use super::*;
use crate::personal::MasterKey;

#[test]
fn defaults_are_three_sqlite_files_and_a_generated_key() {
    let settings = Settings::defaults("data");
    assert_eq!(settings.events_url, "sqlite://data/events.db");
    assert_eq!(settings.keys_url, "sqlite://data/keys.db");
    assert_eq!(
        settings.master_key,
        MasterKeySource::GeneratedFile(PathBuf::from("data/master.key"))
    );
}

#[test]
fn debug_hides_passwords_and_keys() {
    let mut settings = Settings::defaults("data");
    settings.events_url = "postgres://app:s3cret@db:5432/events".into();
    settings.master_key = MasterKeySource::Hex("ab".repeat(32));
    let debug = format!("{settings:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("abab"),
        "{debug}"
    );
    assert!(
        debug.contains("postgres://app:***@db:5432/events"),
        "{debug}"
    );
}

#[test]
fn debug_hides_password_parameters_in_every_url() {
    let mut settings = Settings::defaults("data");
    settings.events_url = "postgres://db/events?user=app&password=s3cret-e".into();
    settings.keys_url = "postgres://db/keys?sslmode=verify-full&sslpassword=s3cret-k".into();
    settings.personal_url = "postgres://app:s3cret-p@db/personal?password=s3cret-q".into();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    for shown in [
        "postgres://db/events?user=app&password=***",
        "postgres://db/keys?sslmode=verify-full&sslpassword=***",
        "postgres://app:***@db/personal?password=***",
    ] {
        assert!(debug.contains(shown), "{shown} missing from {debug}");
    }
}

/// The settings that `vars` (name, value) give, as if they were the environment.
fn from(vars: &[(&str, &str)]) -> Settings {
    Settings::from_vars(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[cfg(feature = "postgres")]
const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn tls_settings_come_from_the_environment() {
    let settings = from(&[
        ("EVENTSOURCERY_SSLMODE", "Verify-Full"),
        ("EVENTSOURCERY_SSLROOTCERT", "/etc/ssl/ca.pem"),
        ("EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES", "1"),
    ]);
    assert_eq!(settings.ssl_mode, Some(SslMode::VerifyFull));
    assert_eq!(
        settings.ssl_root_cert,
        Some(PathBuf::from("/etc/ssl/ca.pem"))
    );
    assert!(settings.allow_plaintext_personal_stores);
    assert!(settings.validate().is_ok());

    let settings = from(&[]);
    assert_eq!(settings, Settings::defaults("eventsourcery-data"));
    assert!(!settings.allow_plaintext_personal_stores);
    assert_eq!(settings.ssl_mode, None);
    let settings = from(&[("EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES", "off")]);
    assert!(!settings.allow_plaintext_personal_stores);
}

#[test]
fn values_that_do_not_parse_are_reported_by_validate_naming_the_variable() {
    for (variable, value) in [
        ("EVENTSOURCERY_SSLMODE", "strict"),
        ("EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES", "maybe"),
    ] {
        // `from_env` cannot fail; the bad value waits for `validate` and `open`.
        let settings = from(&[(variable, value)]);
        let error = settings.validate().err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.starts_with(variable) && error.contains(value),
            "{error}"
        );
    }
}

#[cfg(feature = "postgres")]
#[test]
fn a_postgres_store_without_a_configured_master_key_is_refused() {
    for variable in [EVENTS_URL, KEYS_URL, PERSONAL_URL] {
        let settings = from(&[(variable, "postgres://app@127.0.0.1/db")]);
        let error = settings.validate().err();
        assert!(
            matches!(error, Some(ConfigError::MasterKeyRequired { variable: v }) if v == variable),
            "{error:?}"
        );
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        for needed in [
            variable,
            "EVENTSOURCERY_MASTER_KEY ",
            "EVENTSOURCERY_MASTER_KEY_FILE",
            "all-SQLite",
        ] {
            assert!(text.contains(needed), "{needed} missing from {text}");
        }
        for key in [
            ("EVENTSOURCERY_MASTER_KEY", HEX),
            ("EVENTSOURCERY_MASTER_KEY_FILE", "/run/secrets/master.key"),
        ] {
            assert!(
                from(&[(variable, "postgres://app@127.0.0.1/db"), key])
                    .validate()
                    .is_ok()
            );
        }
    }
    // The all-SQLite first run still generates its key.
    assert!(from(&[]).validate().is_ok());
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn open_refuses_before_generating_a_key_or_connecting() {
    let dir = std::env::temp_dir().join(format!("es-config-{}", uuid::Uuid::now_v7()));
    let mut settings = Settings::defaults(&dir);
    settings.keys_url = "postgres://app@127.0.0.1:1/keys".into();
    let error = settings.open().await.err();
    assert!(
        matches!(error, Some(ConfigError::MasterKeyRequired { .. })),
        "{error:?}"
    );
    assert!(
        !dir.exists(),
        "nothing is written for settings that fail their checks"
    );
}

#[cfg(feature = "postgres")]
#[test]
fn key_and_personal_stores_on_a_network_need_tls_and_the_event_store_does_not() {
    // URLs without `sslmode` take PGSSLMODE's; this test is about the default, `prefer`.
    if std::env::var_os("PGSSLMODE").is_some() {
        println!("skipped: PGSSLMODE is set");
        return;
    }
    let remote = "postgres://app:s3cret@db.example.com/db";
    for variable in [KEYS_URL, PERSONAL_URL] {
        let settings = from(&[(variable, remote), ("EVENTSOURCERY_MASTER_KEY", HEX)]);
        let error = settings.validate().err();
        assert!(
            matches!(&error, Some(ConfigError::PlaintextConnection { variable: v, .. }) if *v == variable),
            "{error:?}"
        );
        let text = error.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with(variable) && !text.contains("s3cret"),
            "{text}"
        );
        assert!(
            text.contains("EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES=1"),
            "{text}"
        );

        // TLS from the URL, TLS from the settings, or plaintext explicitly allowed.
        let url = format!("{remote}?sslmode=verify-full");
        for allowed in [
            from(&[(variable, &url), ("EVENTSOURCERY_MASTER_KEY", HEX)]),
            from(&[
                (variable, remote),
                ("EVENTSOURCERY_MASTER_KEY", HEX),
                ("EVENTSOURCERY_SSLMODE", "require"),
            ]),
            from(&[
                (variable, remote),
                ("EVENTSOURCERY_MASTER_KEY", HEX),
                ("EVENTSOURCERY_ALLOW_PLAINTEXT_PERSONAL_STORES", "true"),
            ]),
        ] {
            assert!(allowed.validate().is_ok(), "{allowed:?}");
        }
        // A URL that asks for plaintext keeps it, whatever the settings' mode.
        let url = format!("{remote}?sslmode=disable");
        let settings = from(&[
            (variable, url.as_str()),
            ("EVENTSOURCERY_MASTER_KEY", HEX),
            ("EVENTSOURCERY_SSLMODE", "verify-full"),
        ]);
        assert!(settings.validate().is_err());
    }
    let events = from(&[(EVENTS_URL, remote), ("EVENTSOURCERY_MASTER_KEY", HEX)]);
    assert!(events.validate().is_ok());
    // Loopback needs no TLS.
    let local = from(&[
        (KEYS_URL, "postgres://app@127.0.0.1/keys?sslmode=disable"),
        (PERSONAL_URL, "postgres://app@localhost/personal"),
        ("EVENTSOURCERY_MASTER_KEY", HEX),
    ]);
    assert!(local.validate().is_ok());
}

#[test]
fn previous_master_keys_come_from_the_environment_and_are_not_shown() {
    let old = "0f".repeat(32);
    let older = "1e".repeat(32);
    let keys = format!("{old}, {older}");
    let settings = from(&[
        ("EVENTSOURCERY_MASTER_KEY", HEX),
        ("EVENTSOURCERY_PREVIOUS_MASTER_KEYS", keys.as_str()),
        (
            "EVENTSOURCERY_PREVIOUS_MASTER_KEY_FILES",
            "/keys/a.key:/keys/b.key",
        ),
    ]);
    assert_eq!(
        settings.previous_master_keys,
        [
            MasterKeySource::Hex(old.clone()),
            MasterKeySource::Hex(older.clone()),
            MasterKeySource::File(PathBuf::from("/keys/a.key")),
            MasterKeySource::File(PathBuf::from("/keys/b.key")),
        ]
    );
    let debug = format!("{settings:?}");
    assert!(!debug.contains(&old) && !debug.contains(&older), "{debug}");
    assert!(debug.contains("a.key"), "{debug}");
}

#[tokio::test]
async fn the_vault_holds_the_previous_master_keys() {
    let dir = std::env::temp_dir().join(format!("es-config-ring-{}", uuid::Uuid::now_v7()));
    let old = "0f".repeat(32);
    let mut settings = Settings::defaults(&dir);
    settings.master_key = MasterKeySource::Hex(HEX.to_owned());
    settings.previous_master_keys = vec![MasterKeySource::Hex(old.clone())];
    let stores = settings.open().await.unwrap_or_else(|e| panic!("{e}"));
    let ring = stores.vault.master_keys();
    let current = MasterKey::from_hex(HEX)
        .unwrap_or_else(|e| panic!("{e}"))
        .id();
    let previous = MasterKey::from_hex(&old)
        .unwrap_or_else(|e| panic!("{e}"))
        .id();
    assert_eq!(ring.current().id(), current);
    assert!(ring.get(&previous).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
