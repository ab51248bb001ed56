//! Two tenants on SQLite: a directory of files each (see `tenants/mod.rs`).
#![cfg(feature = "sqlite")]

mod support;
mod tenants;

use eventsourcery::config::{MasterKeySource, Settings};

#[tokio::test]
async fn two_tenants_see_nothing_of_each_other() {
    let dir = support::sqlite_file("tenants");
    let mut settings = Settings::defaults(&dir);
    settings.master_key = MasterKeySource::Hex(
        "4f1c2b3a59687766554433221100ffeeddccbbaa99887766554433221100ffee".into(),
    );
    // Opening is a future that can be spawned.
    fn spawnable<F: std::future::Future + Send>(_: &F) {}
    spawnable(&settings.open_tenant("acme"));
    spawnable(&settings.open());

    tenants::two_tenants_see_nothing_of_each_other(&settings).await;
    for tenant in ["acme", "globex"] {
        for file in ["events.db", "keys.db", "personal.db"] {
            let path = dir.join(tenant).join(file);
            assert!(path.is_file(), "{} is missing", path.display());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
