//! An application that embeds the ops command line, as tests/ops.rs and tests/ops_postgres.rs
//! run it: `ops-demo seed --count N` registers N people (with an email, a personal field) on
//! a voucher, `ops-demo run` catches its consumers up, `ops-demo ops ...` is
//! `eventsourcery::ops` with its consumers and the `Email` lookup type.
//!
//! The stores come from the environment, as `eventsourcery::config::Settings::from_env` reads
//! it. With `OPS_DEMO_FAIL=1`, the `fragile` listener fails, so `run` parks it; `run
//! --keep-leases` keeps the consumers' leases, as an instance still running would.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use eventsourcery::config::Settings;
use eventsourcery::dispatch::{DispatchConfig, Dispatcher};
use eventsourcery::ops;
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, DomainEvent, Id, Personal, PersonalData, PersonalKey,
    Repository, SerializableValue,
};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(DomainEvent)]
#[event(name = "ops_demo_registered", version = 1)]
struct Registered {
    voucher: VoucherId,
    person: PersonalKey,
    #[personal(subject = person, lookup)]
    email: Personal<Email>,
}

#[derive(Aggregate, Default)]
#[aggregate(id = VoucherId, events(Registered))]
struct Voucher {
    people: u32,
}

impl Apply<Registered> for Voucher {
    fn apply(&mut self, _: &Registered) {
        self.people += 1;
    }
}

#[derive(Command, Clone)]
#[command(subject = person)]
struct Register {
    voucher: VoucherId,
    person: PersonalKey,
    #[personal]
    email: Email,
}

#[eventsourcery::handler]
async fn register(
    cmd: Register,
    vouchers: Repository<Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    voucher.raise(Registered {
        voucher: cmd.voucher,
        person: cmd.person,
        email: cmd.email.into(),
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

/// A consumer that always succeeds: the one `rebuild` replays.
#[eventsourcery::listener(consumer = "welcome")]
async fn welcome(_: Registered) -> Result<(), eventsourcery::Error> {
    Ok(())
}

/// A consumer that fails while `OPS_DEMO_FAIL` is set: the one `status` finds parked.
#[eventsourcery::listener(consumer = "fragile")]
async fn fragile(_: Registered) -> Result<(), eventsourcery::Error> {
    if std::env::var_os("OPS_DEMO_FAIL").is_some() {
        return Err(eventsourcery::Error::rejected("the mail server said no"));
    }
    Ok(())
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Subcommand)]
enum AppCommand {
    /// Register COUNT people on a new voucher; prints their subject keys, one a line, and the
    /// voucher's stream on stderr.
    Seed {
        #[arg(long, default_value_t = 3)]
        count: u32,
    },
    /// Catch the consumers up, then give up their leases.
    Run {
        /// Keep the leases until they expire, as a running instance would.
        #[arg(long)]
        keep_leases: bool,
    },
    /// The ops command line.
    Ops(Box<ops::Ops>),
}

type Failure = Box<dyn std::error::Error>;

fn app(
    stores: &eventsourcery::config::Stores,
) -> Result<(CommandBus, std::sync::Arc<Dispatcher>), Failure> {
    let bus = CommandBus::builder(stores.events.clone())
        .personal_data(stores.vault.clone())
        .build()?;
    let config = DispatchConfig::default()
        .max_attempts(1)
        .backoff(Duration::from_millis(1));
    let dispatcher = Dispatcher::builder(&bus, stores.events.clone())
        .config(config)
        .build()?;
    Ok((bus, dispatcher))
}

async fn seed(count: u32) -> Result<(), Failure> {
    let stores = Settings::from_env().open().await?;
    let (bus, _) = app(&stores)?;
    let voucher = VoucherId::generate();
    for n in 0..count {
        let person = PersonalKey::issue();
        bus.execute(Register {
            voucher: voucher.clone(),
            person,
            email: Email(format!("person{n}@example.com")),
        })
        .await?;
        println!("{person}");
    }
    let stream = bus.repository::<Voucher>().load(&voucher).await?;
    eprintln!("stream {}", stream.stream_id());
    Ok(())
}

async fn run(keep_leases: bool) -> Result<(), Failure> {
    let stores = Settings::from_env().open().await?;
    let (_, dispatcher) = app(&stores)?;
    dispatcher.catch_up().await?;
    if !keep_leases {
        for name in dispatcher.consumer_names() {
            dispatcher.release(name).await?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        AppCommand::Seed { count } => seed(count).await,
        AppCommand::Run { keep_leases } => run(keep_leases).await,
        AppCommand::Ops(ops) => {
            let stores = match ops.open().await {
                Ok(stores) => stores,
                Err(error) => return ops.fail(&error),
            };
            let (bus, dispatcher) = match app(&stores) {
                Ok(app) => app,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(ops::EXIT_USAGE);
                }
            };
            let context = ops::Context::new(bus, stores)
                .with_dispatcher(dispatcher)
                .with_lookup::<Email>();
            return ops.run(context).await;
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
