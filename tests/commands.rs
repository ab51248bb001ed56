//! The command bus: handlers, parameters, the command log, causation and correlation, atomic
//! commits, and retries after concurrency conflicts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use eventsourcery::bus::ExecuteOptions;
use eventsourcery::service::CommandMeta;
use eventsourcery::store::{CommandOutcome, EventStore};
use eventsourcery::testkit::{Scenario, event};
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, CommandError, Dep, DomainEvent, Id, MemoryStore,
    Repository, SerializableValue,
};
use uuid::Uuid;

#[derive(SerializableValue, Clone, Debug)]
struct AccountId(Uuid);

#[derive(DomainEvent, Debug)]
struct Deposited {
    account: AccountId,
    cents: u64,
}

#[derive(DomainEvent, Debug)]
struct Withdrawn {
    account: AccountId,
    cents: u64,
}

#[derive(Aggregate, Default)]
#[aggregate(id = AccountId, events(Deposited, Withdrawn))]
struct Account {
    balance: u64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance -= e.cents;
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("insufficient funds: balance {balance}, asked {asked}")]
struct InsufficientFunds {
    balance: u64,
    asked: u64,
}

#[derive(Debug, thiserror::Error)]
enum BankError {
    #[error(transparent)]
    Store(#[from] eventsourcery::StoreError),
    #[error(transparent)]
    Funds(#[from] InsufficientFunds),
}

#[derive(Command, Clone, Debug)]
struct Deposit {
    account: AccountId,
    cents: u64,
}

#[derive(Command, Clone, Debug)]
#[command(name = "bank.withdraw")]
struct Withdraw {
    account: AccountId,
    cents: u64,
}

#[derive(Command, Clone, Debug)]
struct Transfer {
    from: AccountId,
    to: AccountId,
    cents: u64,
}

/// Counts handler calls, to observe retries.
#[derive(Default)]
struct Calls(AtomicU32);

#[eventsourcery::handler]
async fn deposit(
    cmd: Deposit,
    accounts: Repository<Account>,
    calls: Dep<Calls>,
) -> Result<(), eventsourcery::Error> {
    calls.0.fetch_add(1, Ordering::SeqCst);
    let mut account = accounts.load(&cmd.account).await?;
    // Yield so that concurrent commands interleave between load and commit.
    tokio::task::yield_now().await;
    account.raise(Deposited {
        account: cmd.account,
        cents: cmd.cents,
    });
    accounts.save(&mut account).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn withdraw(cmd: Withdraw, accounts: Repository<Account>) -> Result<(), BankError> {
    let mut account = accounts.load(&cmd.account).await?;
    if account.balance < cmd.cents {
        return Err(InsufficientFunds {
            balance: account.balance,
            asked: cmd.cents,
        }
        .into());
    }
    account.raise(Withdrawn {
        account: cmd.account,
        cents: cmd.cents,
    });
    accounts.save(&mut account).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn transfer(cmd: Transfer, accounts: Repository<Account>) -> Result<(), BankError> {
    let mut from = accounts.load(&cmd.from).await?;
    let mut to = accounts.load(&cmd.to).await?;
    if from.balance < cmd.cents {
        return Err(InsufficientFunds {
            balance: from.balance,
            asked: cmd.cents,
        }
        .into());
    }
    from.raise(Withdrawn {
        account: cmd.from,
        cents: cmd.cents,
    });
    to.raise(Deposited {
        account: cmd.to,
        cents: cmd.cents,
    });
    accounts.save(&mut from).await?;
    accounts.save(&mut to).await?;
    Ok(())
}

/// Always loses the race: a "concurrent writer" appends between its load and its commit.
#[derive(Command, Clone, Debug)]
struct Contend {
    account: AccountId,
}

#[eventsourcery::handler]
async fn contend(
    cmd: Contend,
    accounts: Repository<Account>,
    store: Arc<dyn EventStore>,
) -> Result<(), eventsourcery::Error> {
    let mut account = accounts.load(&cmd.account).await?;
    let outsider = Repository::<Account>::new(store);
    let mut other = outsider.load(&cmd.account).await?;
    other.raise(Deposited {
        account: cmd.account.clone(),
        cents: 1,
    });
    outsider.save(&mut other).await?;
    account.raise(Deposited {
        account: cmd.account,
        cents: 1000,
    });
    accounts.save(&mut account).await?;
    Ok(())
}

#[derive(Command, Clone, Debug)]
struct WhoAmI;

struct Seen(std::sync::Mutex<Vec<CommandMeta>>);

#[eventsourcery::handler]
async fn who_am_i(_: WhoAmI, meta: CommandMeta, seen: Dep<Seen>) {
    seen.0.lock().unwrap().push(meta);
}

#[derive(Command, Clone, Debug)]
struct Unhandled;

fn bus() -> CommandBus {
    CommandBus::builder(MemoryStore::new())
        .service(Calls::default())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_command_appends_its_events_and_logs_itself_with_causation() {
    let bus = bus();
    let account = AccountId::generate();
    let receipt = bus
        .execute(Deposit {
            account: account.clone(),
            cents: 500,
        })
        .await
        .unwrap();
    assert_eq!(receipt.attempts, 1);
    assert_eq!(receipt.correlation_id, receipt.command_id);
    let [event] = receipt.events.as_slice() else {
        panic!("one event expected")
    };
    assert_eq!(event.event_name, "deposited");
    assert_eq!(event.stream_version, 1);
    assert_eq!(event.position, 1);
    assert_eq!(event.metadata.causation_id, Some(receipt.command_id));
    assert_eq!(event.metadata.correlation_id, Some(receipt.command_id));
    assert_eq!(event.metadata.command_id, Some(receipt.command_id));

    let log = bus.store().read_commands(0, 10).await.unwrap();
    let [entry] = log.as_slice() else {
        panic!("one log entry expected")
    };
    assert_eq!(entry.command_id, receipt.command_id);
    assert_eq!(entry.name, "deposit");
    assert_eq!(
        entry.payload,
        serde_json::json!({ "account": account.to_string(), "cents": 500 })
    );
    assert_eq!(entry.outcome, CommandOutcome::Succeeded { events: 1 });
}

#[tokio::test]
async fn correlation_flows_from_the_caller() {
    let bus = bus();
    let (correlation, cause) = (Uuid::now_v7(), Uuid::now_v7());
    let receipt = bus
        .execute_with(
            Deposit {
                account: AccountId::generate(),
                cents: 1,
            },
            ExecuteOptions::caused_by(correlation, cause),
        )
        .await
        .unwrap();
    assert_eq!(receipt.correlation_id, correlation);
    let metadata = &receipt.events[0].metadata;
    assert_eq!(metadata.correlation_id, Some(correlation));
    assert_eq!(metadata.causation_id, Some(cause));
    assert_eq!(metadata.command_id, Some(receipt.command_id));
    let entry = &bus.store().read_commands(0, 1).await.unwrap()[0];
    assert_eq!(entry.metadata.causation_id, Some(cause));
}

#[tokio::test]
async fn a_rejected_command_appends_nothing_and_is_logged_as_failed() {
    let bus = bus();
    let account = AccountId::generate();
    bus.execute(Deposit {
        account: account.clone(),
        cents: 100,
    })
    .await
    .unwrap();
    let error = bus
        .execute(Withdraw {
            account,
            cents: 250,
        })
        .await
        .unwrap_err();
    assert_eq!(
        error
            .rejection::<BankError>()
            .map(ToString::to_string)
            .as_deref(),
        Some("insufficient funds: balance 100, asked 250")
    );
    assert_eq!(bus.store().read_all(0, 10).await.unwrap().len(), 1);
    let log = bus.store().read_commands(0, 10).await.unwrap();
    assert_eq!(log[1].name, "bank.withdraw");
    assert_eq!(
        log[1].outcome,
        CommandOutcome::Failed {
            error: "insufficient funds: balance 100, asked 250".into()
        }
    );
}

#[tokio::test]
async fn events_of_several_aggregates_commit_together() {
    let bus = bus();
    let (a, b) = (AccountId::generate(), AccountId::generate());
    bus.execute(Deposit {
        account: a.clone(),
        cents: 100,
    })
    .await
    .unwrap();
    let receipt = bus
        .execute(Transfer {
            from: a.clone(),
            to: b.clone(),
            cents: 60,
        })
        .await
        .unwrap();
    assert_eq!(receipt.events.len(), 2);
    let accounts = bus.repository::<Account>();
    assert_eq!(accounts.load(&a).await.unwrap().balance, 40);
    assert_eq!(accounts.load(&b).await.unwrap().balance, 60);
    // A failed transfer changes neither account.
    assert!(
        bus.execute(Transfer {
            from: a.clone(),
            to: b.clone(),
            cents: 1000
        })
        .await
        .is_err()
    );
    assert_eq!(bus.store().read_all(0, 100).await.unwrap().len(), 3);
}

#[tokio::test]
async fn concurrent_commands_on_one_aggregate_are_retried_until_all_succeed() {
    let bus = CommandBus::builder(MemoryStore::new())
        .service(Calls::default())
        .max_attempts(1000)
        .build()
        .unwrap();
    let account = AccountId::generate();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let bus = bus.clone();
            let account = account.clone();
            tokio::spawn(async move {
                let mut retried = 0;
                for _ in 0..25 {
                    let receipt = bus
                        .execute(Deposit {
                            account: account.clone(),
                            cents: 1,
                        })
                        .await
                        .unwrap();
                    retried += receipt.attempts - 1;
                }
                retried
            })
        })
        .collect();
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }
    let loaded = bus.repository::<Account>().load(&account).await.unwrap();
    assert_eq!(loaded.balance, 400);
    assert_eq!(loaded.version(), 400);
    let events = bus.store().read_all(0, 1000).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=400).collect::<Vec<_>>());
    let log = bus.store().read_commands(0, 1000).await.unwrap();
    assert_eq!(log.len(), 400, "one log entry per command, not per attempt");
    println!("retries: {retries}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_really_conflict_and_retry() {
    let bus = CommandBus::builder(MemoryStore::new())
        .service(Calls::default())
        .max_attempts(1000)
        .build()
        .unwrap();
    let account = AccountId::generate();
    let mut total_attempts = 0;
    let results = futures_util::future::join_all((0..8).map(|_| {
        bus.execute(Deposit {
            account: account.clone(),
            cents: 1,
        })
    }))
    .await;
    for result in results {
        total_attempts += result.unwrap().attempts;
    }
    // All 8 loaded version 0 before any committed (each yields after loading), so 7 retried.
    assert!(
        total_attempts > 8,
        "expected conflicts, got {total_attempts} attempts"
    );
    assert_eq!(
        bus.repository::<Account>()
            .load(&account)
            .await
            .unwrap()
            .balance,
        8
    );
}

#[tokio::test]
async fn a_command_that_always_conflicts_is_reported_after_the_bound() {
    let bus = CommandBus::builder(MemoryStore::new())
        .max_attempts(3)
        .build()
        .unwrap();
    let account = AccountId::generate();
    let error = bus
        .execute(Contend {
            account: account.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CommandError::Conflict {
                attempts: 3,
                command: "contend"
            }
        ),
        "{error}"
    );
    assert!(error.is_conflict());
    // Only the outsider's three deposits landed.
    assert_eq!(
        bus.repository::<Account>()
            .load(&account)
            .await
            .unwrap()
            .balance,
        3
    );
    let log = bus.store().read_commands(0, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].outcome, CommandOutcome::Conflicted { attempts: 3 });
}

#[tokio::test]
async fn handlers_take_command_metadata_and_services() {
    let seen = Arc::new(Seen(std::sync::Mutex::new(Vec::new())));
    let bus = CommandBus::builder(MemoryStore::new())
        .service_shared(seen.clone())
        .build()
        .unwrap();
    let receipt = bus.execute(WhoAmI).await.unwrap();
    assert!(receipt.events.is_empty());
    let log = bus.store().read_commands(0, 10).await.unwrap();
    assert_eq!(log[0].outcome, CommandOutcome::Succeeded { events: 0 });
    assert_eq!(log[0].payload, serde_json::json!({}));
    // The handler saw the same ids the receipt reports.
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen[0].command_id, receipt.command_id);
    assert_eq!(seen[0].correlation_id, receipt.correlation_id);
}

#[tokio::test]
async fn a_missing_service_is_an_error_naming_the_type() {
    let bus = CommandBus::builder(MemoryStore::new()).build().unwrap();
    let error = bus
        .execute(Deposit {
            account: AccountId::generate(),
            cents: 1,
        })
        .await
        .unwrap_err();
    assert!(matches!(error, CommandError::Unresolved { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("commands::Calls"), "{message}");
    assert!(message.contains("commands::deposit"), "{message}");
    assert!(bus.store().read_all(0, 10).await.unwrap().is_empty());

    // The same problem, found at start-up.
    let problems = bus.check().unwrap_err();
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(messages.iter().any(|m| m.contains("Calls")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("Seen")), "{messages:?}");
    let complete = CommandBus::builder(MemoryStore::new())
        .service(Calls::default())
        .service(Seen(std::sync::Mutex::new(Vec::new())))
        .without_handler::<Unhandled>()
        .build()
        .unwrap();
    complete.check().unwrap();
}

#[tokio::test]
async fn the_start_up_check_lists_the_commands_without_a_handler() {
    let bus = CommandBus::builder(MemoryStore::new())
        .service(Calls::default())
        .service(Seen(std::sync::Mutex::new(Vec::new())))
        .build()
        .unwrap();
    let problems = bus.check().unwrap_err();
    assert!(
        matches!(
            problems.as_slice(),
            [CommandError::NoHandler {
                command: "unhandled"
            }]
        ),
        "{problems:?}"
    );
    assert!(
        problems[0]
            .to_string()
            .contains("#[eventsourcery::handler]")
    );
}

#[tokio::test]
async fn a_command_without_handler_is_an_error() {
    let error = bus().execute(Unhandled).await.unwrap_err();
    assert!(
        matches!(
            error,
            CommandError::NoHandler {
                command: "unhandled"
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn given_when_then() {
    let account = AccountId::generate();
    Scenario::new()
        .given::<Account, _>(
            &account,
            Deposited {
                account: account.clone(),
                cents: 100,
            },
        )
        .when(Withdraw {
            account: account.clone(),
            cents: 30,
        })
        .await
        .assert_events(vec![event(Withdrawn {
            account: account.clone(),
            cents: 30,
        })]);

    let then = Scenario::new()
        .given::<Account, _>(
            &account,
            Deposited {
                account: account.clone(),
                cents: 10,
            },
        )
        .when(Withdraw {
            account: account.clone(),
            cents: 30,
        })
        .await;
    let BankError::Funds(error) = then.assert_rejected::<BankError>() else {
        panic!("wrong error")
    };
    assert_eq!(
        error,
        &InsufficientFunds {
            balance: 10,
            asked: 30
        }
    );

    Scenario::new()
        .service(Calls::default())
        .when(Deposit {
            account: account.clone(),
            cents: 5,
        })
        .await
        .assert_events(vec![event(Deposited { account, cents: 5 })]);
}
