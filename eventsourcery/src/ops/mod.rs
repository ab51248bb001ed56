//! The ops command line (feature `cli`): what an operator runs against the stores, in two
//! forms.
//!
//! - **Embedded**, as a subcommand of the application's own binary (`myapp ops ...`): the
//!   application builds its [`CommandBus`] and [`Dispatcher`] as usual and hands them over in a
//!   [`Context`], so the commands see its registered consumers and event types.
//! - **Standalone**, the `eventsourcery` binary (`cargo install --path eventsourcery --features
//!   cli`; add `postgres` for PostgreSQL stores), for what needs no application code: `erase
//!   --subject`, `export`, `migrate`, `rotate-master-key`, `events show`, `events tail`,
//!   `audit`, `verify`. Its consumer commands (`status`, `rebuild`, `skip`, `retry`) exit
//!   with 2, as it knows no consumers, and its `verify` upcasts only the event types it knows
//!   (the framework's own).
//!
//! Both read the stores and the master key from the environment as
//! [`Settings::from_env`](crate::config::Settings::from_env) does (see [`config`](crate::config)
//! for the variables); the flags `--data-dir`, `--events-url`, `--personal-url`, `--keys-url`,
//! `--master-key-file` and `--tenant` override the variable of the same name. The master key
//! itself is never a flag (it would show in the process list and the shell history).
//!
//! | command | what | exit 1 when |
//! | --- | --- | --- |
//! | `status [--max-lag N]` | per consumer: checkpoint, head, lag, parked event with its error (and the lease as this process saw it: a command line takes none, so `unknown`) | a consumer is parked, lags more than N (1000) or lost its lease |
//! | `rebuild NAME` | resets consumer NAME and replays the log: a progress bar on a terminal, a line a second otherwise (on stderr) | it fails |
//! | `skip NAME --reason R` | skips the event a parked consumer stopped at, recording R | it fails |
//! | `retry NAME` | unparks a consumer, so it retries the event it stopped at | it fails |
//! | `erase (--subject KEY \| --lookup VALUE) --reason R` | erases a data subject (key, data, blind index) and appends the PII-free fact to the log | it fails |
//! | `export --subject KEY [-o FILE]` | the subject-access export: all of the subject's personal data, as JSON, to FILE (created with mode 0600) or stdout | it fails |
//! | `migrate` | opens the three stores, which applies their embedded migrations | it fails |
//! | `rotate-master-key` | re-wraps every data key under the current master key, with the old one set as a previous master key (`EVENTSOURCERY_PREVIOUS_MASTER_KEYS`); online and safe to rerun (see [`PersonalVault::rotate_master_key`]) | a key that no configured master key opens is left as it is |
//! | `events show STREAM [--after VERSION] [--decrypt ...]` | a stream's events as stored: personal fields are references (`{"$personal": id, "subject": key}`), decrypted only with `--decrypt`; of the metadata, the ids only | it fails |
//! | `events tail [--from POSITION] [--limit N] [--decrypt ...]` | follows the global log from its head (or from POSITION, inclusive), printing each new event as `events show` does (the stream too; with `--json`, one JSON object a line) until interrupted or N events were printed; says on stderr where it starts | it fails |
//! | `audit [--after SEQUENCE] [--limit N]` | the audit log of decrypted reads (oldest first, 100 at most): sequence, time, actor, action, stream or global log, positions, subjects, fields and reason; never a value | it fails |
//! | `verify [--max-problems N]` | reads the whole log: every payload is an object, every event of a known type upcasts, every personal reference resolves or reads erased | any problem is found |
//!
//! Exit codes: **0** done, nothing wrong; **1** problems found, or the operation failed (a store
//! error); **2** a usage or configuration error (unknown flag or consumer, a subject that is not
//! a key, settings that do not parse, a command the standalone binary cannot run).
//!
//! Every command takes `--json`: the result as one JSON document on stdout (errors as
//! `{"error": "..."}`), for scripts. Progress and diagnostics go to stderr.
//!
//! Nothing prints a personal value: `status` shows parked errors (PII-free by design), `verify`
//! names problems by position, stream and field, `erase --lookup` prints the subjects found,
//! never the value. The exceptions are `export`, whose purpose is to hand a subject their
//! data (it writes the values to the file named by `-o`, or to stdout when no file is named),
//! and `--decrypt`.
//!
//! `events show --decrypt` and `events tail --decrypt` print each personal field with its
//! `value` (or `"erased": true` once its subject is forgotten, or the `error` that kept it from
//! decrypting). They need `--actor NAME` (or `EVENTSOURCERY_ACTOR`) and `--reason R`, and a
//! configured master key (a generated one would open nothing, so none is generated); without
//! them they exit with 2 before reading anything. Every such read is first recorded in the
//! audit log of the personal data store ([`AuditEntry`](crate::store::AuditEntry): who, when,
//! the stream or the global log, the positions, the subjects and fields, the reason; never a
//! value), and only then decrypted and printed: a read that cannot be recorded prints nothing.
//! `tail` records one entry per batch of events it prints; a read of events without personal
//! fields records none. `audit` lists the entries.
//!
//! `erase --lookup VALUE` finds the subject through the blind index, which needs the
//! [`PersonalData`] type the value was stored as: the embedded form takes it with
//! [`Context::with_lookup`]; the standalone binary has none and exits with 2.
//!
//! Embedding it (the application's binary, with clap):
//!
//! ```no_run
//! use std::process::ExitCode;
//! use clap::{Parser, Subcommand};
//! use eventsourcery::{CommandBus, Dispatcher, ops};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: AppCommand,
//! }
//!
//! #[derive(Subcommand)]
//! enum AppCommand {
//!     /// Operate the stores: status, rebuild, erase, export, verify...
//!     Ops(ops::Ops),
//!     /// Serve requests.
//!     Serve,
//! }
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     match Cli::parse().command {
//!         AppCommand::Ops(ops) => {
//!             let stores = match ops.open().await {
//!                 Ok(stores) => stores,
//!                 Err(error) => return ops.fail(&error),
//!             };
//!             let bus = CommandBus::builder(stores.events.clone())
//!                 .personal_data(stores.vault.clone())
//!                 .build()
//!                 .expect("the application's handlers");
//!             let dispatcher = Dispatcher::builder(&bus, stores.events.clone())
//!                 .build()
//!                 .expect("the application's consumers");
//!             let context = ops::Context::new(bus, stores).with_dispatcher(dispatcher);
//!             ops.run(context).await
//!         }
//!         AppCommand::Serve => ExitCode::SUCCESS,
//!     }
//! }
//! ```
//!
//! Guide: [operating](crate::docs::operating).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::bus::CommandBus;
use crate::config::{ConfigError, Settings, Stores};
use crate::dispatch::{DispatchError, Dispatcher};
use crate::erasure::EraseError;
use crate::event::RegistryError;
use crate::personal::{PersonalData, PersonalError, PersonalKey};
use crate::store::StoreError;
use crate::vault::PersonalVault;

mod args;
mod audit;
mod consumers;
mod events;
mod personal;
mod verify;

pub use args::{Decrypt, EventsCommand, Ops, OpsCommand, Options};
/// The clap crate the ops commands are built with.
pub use clap;
pub use events::ACTOR_ENV;

/// Exit code: done, nothing wrong.
pub const EXIT_OK: u8 = 0;
/// Exit code: problems found, or the operation failed.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code: a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// An ops command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The settings do not parse, or a store did not open (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command needs the application's consumers (exit 2).
    #[error(
        "`{command}` needs the application's consumers: run it as the application's `ops {command}` \
         (see eventsourcery::ops), not from the standalone binary"
    )]
    NeedsConsumers {
        /// The command.
        command: &'static str,
    },
    /// `erase --lookup` without a lookup type (exit 2).
    #[error(
        "`erase --lookup` needs the personal data type to look up: the application registers it \
         with `Context::with_lookup`; the standalone binary takes `--subject` only"
    )]
    NoLookup,
    /// A `--subject` that is not a subject key (exit 2). The value is not repeated: it may be
    /// personal data typed in the wrong place.
    #[error("--subject: not a subject key (a UUID such as 0190c1c4-...)")]
    InvalidSubject,
    /// `--decrypt` without who reads or why (exit 2): nothing was read.
    #[error(
        "--decrypt needs {what}: every decrypted read is recorded in the audit log with who read \
         and why, before anything is printed"
    )]
    DecryptNeeds {
        /// The missing flag.
        what: &'static str,
    },
    /// `--decrypt` with no master key configured (exit 2): a generated one would open
    /// nothing, so none is generated.
    #[error(
        "--decrypt needs the master key: none is configured (EVENTSOURCERY_MASTER_KEY or \
         EVENTSOURCERY_MASTER_KEY_FILE) and there is no key file at {}",
        .path.display()
    )]
    NoMasterKey {
        /// Where the generated key file would be.
        path: PathBuf,
    },
    /// `erase --lookup` found no subject, or more than one (exit 1).
    #[error("--lookup: {found} subjects hold this value; erase by --subject")]
    LookupNotUnique {
        /// How many were found.
        found: usize,
    },
    /// Dispatch failed (exit 2 for an unknown consumer, 1 otherwise).
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// The vault failed (exit 1).
    #[error(transparent)]
    Personal(#[from] PersonalError),
    /// The erasure failed (exit 1); erasing again finishes it.
    #[error(transparent)]
    Erase(#[from] EraseError),
    /// The event store failed (exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The command bus could not be built (exit 2).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The output could not be written (exit 1).
    #[error("writing {}: {source}", .path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl OpsError {
    /// The exit code this error ends the command with: 2 for usage and configuration
    /// errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_)
            | Self::NeedsConsumers { .. }
            | Self::NoLookup
            | Self::InvalidSubject
            | Self::DecryptNeeds { .. }
            | Self::NoMasterKey { .. }
            | Self::Registry(_)
            | Self::Dispatch(DispatchError::UnknownConsumer { .. }) => EXIT_USAGE,
            _ => EXIT_PROBLEMS,
        }
    }
}

/// Finds the subjects holding a personal value, given as text (see [`Context::with_lookup`]).
type LookupFn = Box<
    dyn for<'a> Fn(
            &'a PersonalVault,
            &'a str,
        ) -> Pin<
            Box<dyn Future<Output = Result<Vec<PersonalKey>, PersonalError>> + Send + 'a>,
        > + Send
        + Sync,
>;

/// What the commands run against: the stores, the command bus, and (embedded) the
/// application's dispatcher and lookup type.
pub struct Context {
    stores: Stores,
    bus: CommandBus,
    dispatcher: Option<Arc<Dispatcher>>,
    lookup: Option<LookupFn>,
}

crate::redact::debug_fields!(Context { stores, dispatcher, lookup.is_some() });

impl Context {
    /// The application's bus over `stores` (built with `.personal_data(stores.vault)`, so
    /// erasures append their fact to the log).
    pub fn new(bus: CommandBus, stores: Stores) -> Self {
        Self {
            stores,
            bus,
            dispatcher: None,
            lookup: None,
        }
    }

    /// A context with a bus of its own over `stores` and no consumers: the standalone form.
    pub fn from_stores(stores: Stores) -> Result<Self, OpsError> {
        let bus = CommandBus::builder(stores.events.clone())
            .personal_data(stores.vault.clone())
            .build()?;
        Ok(Self::new(bus, stores))
    }

    /// The application's dispatcher, for `status`, `rebuild`, `skip` and `retry`.
    pub fn with_dispatcher(mut self, dispatcher: Arc<Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// The personal data type `erase --lookup VALUE` parses VALUE as (with
    /// [`PersonalData::from_plaintext`]) and looks up in the blind index: a field marked
    /// `#[personal(lookup)]`, an email say.
    pub fn with_lookup<T: PersonalData>(mut self) -> Self {
        self.lookup = Some(Box::new(|vault, value| {
            Box::pin(async move {
                let value =
                    T::from_plaintext(value).map_err(|_| PersonalError::InvalidPlaintext {
                        type_name: std::any::type_name::<T>(),
                    })?;
                vault.lookup(&value).await
            })
        }));
        self
    }

    fn dispatcher(&self, command: &'static str) -> Result<&Dispatcher, OpsError> {
        self.dispatcher
            .as_deref()
            .ok_or(OpsError::NeedsConsumers { command })
    }
}

/// What a command found: its JSON form, its text form, and whether it found problems.
pub(crate) struct Report {
    json: Value,
    text: String,
    problems: bool,
}

impl Report {
    fn ok(json: Value, text: impl Into<String>) -> Self {
        Self {
            json,
            text: text.into(),
            problems: false,
        }
    }

    /// The command printed its result as it went (`events tail`): nothing more to print.
    fn printed() -> Self {
        Self::ok(Value::Null, "")
    }
}

impl Ops {
    /// The settings: the environment as [`Settings::from_env`] reads it, with the flags
    /// overriding their variables.
    pub fn settings(&self) -> Settings {
        let o = &self.options;
        let flag = |name: &str| -> Option<String> {
            match name {
                "EVENTSOURCERY_DATA_DIR" => o.data_dir.as_ref().map(|p| p.display().to_string()),
                "EVENTSOURCERY_EVENTS_URL" => o.events_url.clone(),
                "EVENTSOURCERY_PERSONAL_URL" => o.personal_url.clone(),
                "EVENTSOURCERY_KEYS_URL" => o.keys_url.clone(),
                "EVENTSOURCERY_MASTER_KEY_FILE" => {
                    o.master_key_file.as_ref().map(|p| p.display().to_string())
                }
                "EVENTSOURCERY_TENANT" => o.tenant.clone(),
                _ => None,
            }
        };
        let master_file = o.master_key_file.is_some();
        Settings::from_vars(|name| {
            // A key file on the command line wins over a key in the environment.
            if master_file && name == crate::personal::MASTER_KEY_ENV {
                return None;
            }
            flag(name).or_else(|| std::env::var(name).ok())
        })
    }

    /// Opens the stores the [settings](Self::settings) name (which applies their migrations).
    ///
    /// With no master key configured, the settings generate a key file on first use (the
    /// embedded default of a first try): said on stderr, since a command line run in the wrong
    /// directory would otherwise start a new set of stores unnoticed.
    pub async fn open(&self) -> Result<Stores, OpsError> {
        let settings = self.settings();
        if let Some(decrypt) = self.decrypt() {
            // Refused before anything is opened or read.
            events::reader(decrypt)?;
            if let crate::config::MasterKeySource::GeneratedFile(path) = &settings.master_key
                && !path.exists()
            {
                return Err(OpsError::NoMasterKey { path: path.clone() });
            }
        }
        if let crate::config::MasterKeySource::GeneratedFile(path) = &settings.master_key
            && !path.exists()
        {
            eprintln!(
                "warning: no master key is configured (EVENTSOURCERY_MASTER_KEY or \
                 EVENTSOURCERY_MASTER_KEY_FILE): generating {}; production must supply its own",
                path.display()
            );
        }
        Ok(settings.open().await?)
    }

    /// Runs the command against `context`, prints its result and returns the exit code.
    pub async fn run(self, context: Context) -> ExitCode {
        match self.execute(&context).await {
            Ok(report) => {
                if self.options.json {
                    if !report.json.is_null() {
                        println!("{}", report.json);
                    }
                } else if !report.text.is_empty() {
                    println!("{}", report.text.trim_end());
                }
                ExitCode::from(if report.problems {
                    EXIT_PROBLEMS
                } else {
                    EXIT_OK
                })
            }
            Err(error) => self.fail(&error),
        }
    }

    /// The standalone form: opens the stores, then runs the command with no consumers.
    pub async fn run_standalone(self) -> ExitCode {
        let stores = match self.open().await {
            Ok(stores) => stores,
            Err(error) => return self.fail(&error),
        };
        match Context::from_stores(stores) {
            Ok(context) => self.run(context).await,
            Err(error) => self.fail(&error),
        }
    }

    /// Prints `error` (on stderr, and as `{"error": ...}` on stdout with `--json`) and returns
    /// its exit code.
    pub fn fail(&self, error: &OpsError) -> ExitCode {
        let message = crate::error::chain(error);
        eprintln!("error: {} failed: {message}", self.command.name());
        if self.options.json {
            println!(
                "{}",
                json!({ "command": self.command.name(), "error": message })
            );
        }
        ExitCode::from(error.exit_code())
    }

    async fn execute(&self, context: &Context) -> Result<Report, OpsError> {
        let json = self.options.json;
        match &self.command {
            OpsCommand::Status { max_lag } => {
                consumers::status(context.dispatcher("status")?, *max_lag).await
            }
            OpsCommand::Rebuild { name } => {
                consumers::rebuild(context.dispatcher("rebuild")?, name, json).await
            }
            OpsCommand::Skip { name, reason } => {
                consumers::skip(context.dispatcher("skip")?, name, reason).await
            }
            OpsCommand::Retry { name } => {
                consumers::retry(context.dispatcher("retry")?, name).await
            }
            OpsCommand::Erase {
                subject,
                lookup,
                reason,
            } => personal::erase(context, subject.as_deref(), lookup.as_deref(), reason).await,
            OpsCommand::Export { subject, output } => {
                personal::export(context, subject, output.as_deref()).await
            }
            OpsCommand::Migrate => Ok(migrate(&context.stores)),
            OpsCommand::RotateMasterKey => personal::rotate_master_key(&context.stores).await,
            OpsCommand::Events {
                command:
                    EventsCommand::Show {
                        stream,
                        after,
                        decrypt,
                    },
            } => {
                let reader = events::reader(decrypt)?;
                events::show(&context.stores, stream, *after, reader.as_ref()).await
            }
            OpsCommand::Events {
                command:
                    EventsCommand::Tail {
                        from,
                        limit,
                        decrypt,
                    },
            } => {
                let reader = events::reader(decrypt)?;
                events::tail(&context.stores, *from, *limit, reader.as_ref(), json).await
            }
            OpsCommand::Verify { max_problems } => {
                verify::verify(&context.stores, *max_problems).await
            }
            OpsCommand::Audit { after, limit } => {
                audit::list(&context.stores, *after, *limit).await
            }
        }
    }

    /// The `--decrypt` flags of the command, if it has them and they ask to decrypt.
    fn decrypt(&self) -> Option<&Decrypt> {
        match &self.command {
            OpsCommand::Events {
                command: EventsCommand::Show { decrypt, .. } | EventsCommand::Tail { decrypt, .. },
            } if decrypt.decrypt => Some(decrypt),
            _ => None,
        }
    }
}

/// The stores were migrated when they were opened: say so.
fn migrate(stores: &Stores) -> Report {
    let backend = stores.backend.name();
    Report::ok(
        json!({ "migrated": true, "events_backend": backend }),
        format!(
            "migrated: the event store ({backend}), the key store and the personal data store are up to date"
        ),
    )
}

/// Parses a `--subject`.
fn subject(value: &str) -> Result<PersonalKey, OpsError> {
    value.trim().parse().map_err(|_| OpsError::InvalidSubject)
}
