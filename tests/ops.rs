//! The ops command line on SQLite: the `ops-demo` application run as a subprocess against
//! SQLite files of each test's own, and the embedded form called in-process.

mod ops_cli;

use std::process::ExitCode;

use clap::Parser;
use eventsourcery::config::Settings;
use eventsourcery::ops::{Context, Ops};
use eventsourcery::sqlx;
use ops_cli::Demo;

#[test]
fn status_reports_each_consumer_with_its_lag() {
    let demo = Demo::sqlite("status");
    ops_cli::status_reports_lag(&demo);
    demo.finish();
}

#[test]
fn a_parked_consumer_is_shown_retried_and_skipped() {
    let demo = Demo::sqlite("parked");
    ops_cli::parked_consumer_retry_and_skip(&demo);
    demo.finish();
}

#[test]
fn rebuild_off_a_terminal_prints_progress_lines() {
    let demo = Demo::sqlite("rebuild");
    ops_cli::rebuild_shows_progress_lines(&demo);
    demo.finish();
}

#[test]
fn rebuild_with_the_lease_held_elsewhere_says_so() {
    let demo = Demo::sqlite("rebuild-lease");
    ops_cli::rebuild_with_the_lease_elsewhere(&demo);
    demo.finish();
}

#[test]
fn erase_by_subject_and_lookup_export_to_a_private_file() {
    let demo = Demo::sqlite("erase");
    ops_cli::erase_export_and_verify(&demo);
    demo.finish();
}

#[test]
fn events_show_prints_personal_fields_as_references() {
    let demo = Demo::sqlite("events-show");
    ops_cli::events_show_prints_references(&demo);
    demo.finish();
}

#[test]
fn rotate_master_key_rewraps_every_data_key() {
    let demo = Demo::sqlite("rotate");
    ops_cli::rotate_master_key(&demo);
    demo.finish();
}

#[test]
fn events_tail_prints_what_is_appended_after_it_started() {
    let demo = Demo::sqlite("tail");
    ops_cli::read::tail_prints_what_is_appended_after_it_started(&demo);
    demo.finish();
}

#[test]
fn decrypt_without_an_actor_or_a_reason_exits_with_2() {
    let demo = Demo::sqlite("decrypt-usage");
    ops_cli::read::decrypt_needs_an_actor_and_a_reason(&demo);
    demo.finish();
}

/// Every decrypted read is in the audit log; the audit table holds no personal value, and
/// refuses to change or lose an entry.
#[tokio::test]
async fn decrypted_reads_are_audited_without_personal_values() {
    let demo = Demo::sqlite("decrypt-audit");
    ops_cli::read::decrypt_is_recorded_in_the_audit_log(&demo);
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(demo.dir.join("personal.db"));
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT sequence || '|' || at_ns || '|' || actor || '|' || action || '|' || reason || '|' \
         || coalesce(stream, '') || '|' || positions || '|' || subjects || '|' || fields \
         FROM eventsourcery_audit_log",
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
    ] {
        let error = sqlx::query(change).execute(&pool).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{change}: {error}"
        );
    }
    pool.close().await;
    demo.finish();
}

#[test]
fn usage_errors_exit_with_2() {
    let demo = Demo::sqlite("usage");
    ops_cli::usage_errors(&demo);
    demo.finish();
}

async fn events_db(demo: &Demo) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(demo.dir.join("events.db"));
    sqlx::SqlitePool::connect_with(options).await.unwrap()
}

#[tokio::test]
async fn verify_finds_a_payload_that_does_not_decode() {
    let demo = Demo::sqlite("verify-corrupt");
    demo.seed(3);
    demo.run(&["ops", "verify"]).code(0);
    let pool = events_db(&demo).await;
    sqlx::query("UPDATE eventsourcery_events SET payload = 'not json' WHERE position = 2")
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
    assert_eq!(verify["complete"], false, "{verify}");
    let problem = verify["problems"][0]["problem"].as_str().unwrap();
    assert!(problem.contains("(position 2)"), "{problem}");
    demo.finish();
}

#[tokio::test]
async fn verify_finds_a_reference_copied_to_another_event() {
    let demo = Demo::sqlite("verify-reference");
    demo.seed(2);
    let pool = events_db(&demo).await;
    // The second event's email now points at the first one's value, which is bound to another
    // subject.
    let first: String =
        sqlx::query_scalar("SELECT json_extract(payload, '$.email.\"$personal\"') FROM eventsourcery_events WHERE position = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    sqlx::query("UPDATE eventsourcery_events SET payload = json_set(payload, '$.email.\"$personal\"', ?1) WHERE position = 2")
        .bind(&first)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = demo.run(&["ops", "verify"]).code(1).no_personal_values();
    assert!(out.stdout.contains("1 problems"), "{out:?}");
    assert!(out.stdout.contains("position 2"), "{out:?}");
    assert!(out.stdout.contains("ops_demo_registered.email"), "{out:?}");
    demo.finish();
}

/// The embedded form in-process: parsed by clap as the application would, run against the
/// stores of a directory, with no consumers.
#[tokio::test]
async fn the_embedded_form_runs_in_process() {
    let dir =
        std::env::temp_dir().join(format!("eventsourcery-ops-inproc-{}", uuid::Uuid::now_v7()));
    let data_dir = dir.display().to_string();
    let parse = |args: &[&str]| {
        #[derive(Parser)]
        struct App {
            #[command(subcommand)]
            ops: AppCommand,
        }
        #[derive(clap::Subcommand)]
        enum AppCommand {
            Ops(Ops),
        }
        let mut argv = vec!["app", "ops", "--data-dir", &data_dir];
        argv.extend_from_slice(args);
        match App::try_parse_from(argv).unwrap().ops {
            AppCommand::Ops(ops) => ops,
        }
    };
    let ops = parse(&["verify", "--json"]);
    assert_eq!(
        ops.settings().events_url,
        Settings::defaults(&dir).events_url
    );
    let context = Context::from_stores(ops.open().await.unwrap()).unwrap();
    assert_eq!(ops.run(context).await, ExitCode::SUCCESS);

    // Without the application's dispatcher, the consumer commands are usage errors.
    let ops = parse(&["status"]);
    let context = Context::from_stores(ops.open().await.unwrap()).unwrap();
    assert_eq!(ops.run(context).await, ExitCode::from(2));
    let _ = std::fs::remove_dir_all(&dir);
}
