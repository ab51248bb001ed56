//! The ops command line on PostgreSQL: the `ops-demo` application run as a subprocess with
//! its three stores in a database of each test's own.
#![cfg(feature = "postgres")]

mod ops_cli;
mod support;

use eventsourcery::sqlx;
use ops_cli::Demo;
use support::postgres::TestDatabase;

/// Runs `scenario` against a fresh database.
async fn on_postgres(test: &'static str, scenario: fn(&Demo)) {
    let Some(database) = TestDatabase::create(test).await else {
        return;
    };
    let demo = Demo::postgres(test, &database.url());
    scenario(&demo);
    demo.finish();
    database.finish().await;
}

#[tokio::test]
async fn status_reports_each_consumer_with_its_lag() {
    on_postgres(
        "status_reports_each_consumer_with_its_lag",
        ops_cli::status_reports_lag,
    )
    .await;
}

#[tokio::test]
async fn a_parked_consumer_is_shown_retried_and_skipped() {
    on_postgres(
        "a_parked_consumer_is_shown_retried_and_skipped",
        ops_cli::parked_consumer_retry_and_skip,
    )
    .await;
}

#[tokio::test]
async fn rebuild_off_a_terminal_prints_progress_lines() {
    on_postgres(
        "rebuild_off_a_terminal_prints_progress_lines",
        ops_cli::rebuild_shows_progress_lines,
    )
    .await;
}

#[tokio::test]
async fn rebuild_with_the_lease_held_elsewhere_says_so() {
    on_postgres(
        "rebuild_with_the_lease_held_elsewhere_says_so",
        ops_cli::rebuild_with_the_lease_elsewhere,
    )
    .await;
}

#[tokio::test]
async fn erase_by_subject_and_lookup_export_to_a_private_file() {
    on_postgres(
        "erase_by_subject_and_lookup_export_to_a_private_file",
        ops_cli::erase_export_and_verify,
    )
    .await;
}

#[tokio::test]
async fn events_show_prints_personal_fields_as_references() {
    on_postgres(
        "events_show_prints_personal_fields_as_references",
        ops_cli::events_show_prints_references,
    )
    .await;
}

#[tokio::test]
async fn rotate_master_key_rewraps_every_data_key() {
    on_postgres(
        "rotate_master_key_rewraps_every_data_key",
        ops_cli::rotate_master_key,
    )
    .await;
}

#[tokio::test]
async fn events_tail_prints_what_is_appended_after_it_started() {
    on_postgres(
        "events_tail_prints_what_is_appended_after_it_started",
        ops_cli::read::tail_prints_what_is_appended_after_it_started,
    )
    .await;
}

#[tokio::test]
async fn decrypt_without_an_actor_or_a_reason_exits_with_2() {
    on_postgres(
        "decrypt_without_an_actor_or_a_reason_exits_with_2",
        ops_cli::read::decrypt_needs_an_actor_and_a_reason,
    )
    .await;
}

/// Every decrypted read is in the audit log; the audit table holds no personal value, and
/// refuses to change or lose an entry.
#[tokio::test]
async fn decrypted_reads_are_audited_without_personal_values() {
    let test = "decrypted_reads_are_audited_without_personal_values";
    let Some(database) = TestDatabase::create(test).await else {
        return;
    };
    let demo = Demo::postgres(test, &database.url());
    ops_cli::read::decrypt_is_recorded_in_the_audit_log(&demo);
    let pool = database.pool().await;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT concat_ws('|', sequence, at_ns, actor, action, reason, stream, positions, \
         subjects, fields) FROM eventsourcery_audit_log",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let all = rows.join("\n");
    assert!(
        all.contains("ops_demo_registered.email") && all.contains("alice"),
        "{all}"
    );
    assert!(!all.contains(ops_cli::EMAIL_DOMAIN), "{all}");
    for change in [
        "UPDATE eventsourcery_audit_log SET actor = 'mallory'",
        "DELETE FROM eventsourcery_audit_log",
        "TRUNCATE eventsourcery_audit_log",
    ] {
        let error = sqlx::query(change).execute(&pool).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{change}: {error}"
        );
    }
    pool.close().await;
    demo.finish();
    database.finish().await;
}

#[tokio::test]
async fn usage_errors_exit_with_2() {
    on_postgres("usage_errors_exit_with_2", ops_cli::usage_errors).await;
}

#[tokio::test]
async fn verify_finds_a_corrupted_payload() {
    let test = "verify_finds_a_corrupted_payload";
    let Some(database) = TestDatabase::create(test).await else {
        return;
    };
    let demo = Demo::postgres(test, &database.url());
    demo.seed(3);
    demo.run(&["ops", "verify"]).code(0);
    let pool = database.pool().await;
    sqlx::query(
        "UPDATE eventsourcery_events SET payload = '\"garbage\"'::jsonb WHERE position = 2",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let verify = demo
        .run(&["ops", "verify", "--json"])
        .code(1)
        .no_personal_values()
        .json();
    assert_eq!(verify["problem_count"], 1, "{verify}");
    assert_eq!(verify["complete"], true, "{verify}");
    let problem = &verify["problems"][0];
    assert_eq!(problem["position"], 2, "{verify}");
    assert_eq!(problem["event"], "ops_demo_registered", "{verify}");
    assert!(
        problem["problem"]
            .as_str()
            .unwrap()
            .contains("not a JSON object"),
        "{verify}"
    );
    demo.finish();
    database.finish().await;
}
