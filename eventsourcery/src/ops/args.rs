//! The command line's model: the flags and commands clap parses.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The ops commands, with the flags that locate the stores: embed it as a subcommand
/// (`Ops(eventsourcery::ops::Ops)` in the application's clap `Subcommand` enum).
#[derive(Debug, Clone, Args)]
pub struct Ops {
    /// Where the stores are, and how to print.
    #[command(flatten)]
    pub options: Options,
    /// What to do.
    #[command(subcommand)]
    pub command: OpsCommand,
}

/// The flags every command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Options {
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the default SQLite files and key file are (EVENTSOURCERY_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The event store URL (EVENTSOURCERY_EVENTS_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub events_url: Option<String>,
    /// The personal data store URL (EVENTSOURCERY_PERSONAL_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub personal_url: Option<String>,
    /// The key store URL (EVENTSOURCERY_KEYS_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub keys_url: Option<String>,
    /// A file holding the master key (EVENTSOURCERY_MASTER_KEY_FILE).
    #[arg(long, global = true, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The tenant whose stores to open (EVENTSOURCERY_TENANT).
    #[arg(long, global = true, value_name = "NAME")]
    pub tenant: Option<String>,
}

/// One ops command. See the [module docs](crate::ops) for what each does and its exit codes.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum OpsCommand {
    /// Per consumer: checkpoint, head of the log, lag, lease and parked event.
    Status {
        /// A consumer further behind than this is a problem (exit 1).
        #[arg(long, default_value_t = 1000)]
        max_lag: u64,
    },
    /// Reset a consumer and replay the whole log into it, with progress.
    Rebuild {
        /// The consumer.
        name: String,
    },
    /// Skip the event a parked consumer stopped at.
    Skip {
        /// The consumer.
        name: String,
        /// Why (recorded; never personal data).
        #[arg(long)]
        reason: String,
    },
    /// Unpark a consumer: it retries the event it stopped at.
    Retry {
        /// The consumer.
        name: String,
    },
    /// Erase a data subject: its key, its personal data and its blind-index entries.
    Erase {
        /// The subject's key (a UUID).
        #[arg(
            long,
            value_name = "KEY",
            required_unless_present = "lookup",
            conflicts_with = "lookup"
        )]
        subject: Option<String>,
        /// Find the subject by a personal value (embedded form with a lookup type only).
        #[arg(long, value_name = "VALUE")]
        lookup: Option<String>,
        /// Why (a request id or a policy name; never personal data).
        #[arg(long)]
        reason: String,
    },
    /// Export all personal data of a subject (the right of access).
    Export {
        /// The subject's key (a UUID).
        #[arg(long, value_name = "KEY")]
        subject: String,
        /// The file to write (created with mode 0600); stdout without it.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Apply the stores' embedded migrations.
    Migrate,
    /// Re-wrap every data key under the current master key (after a master key change,
    /// with the old key among the previous master keys).
    RotateMasterKey,
    /// Read the event log.
    Events {
        /// What to read.
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Check the whole log: payloads, upcasts and personal references.
    Verify {
        /// How many problems to list (all are counted).
        #[arg(long, default_value_t = 20)]
        max_problems: usize,
    },
    /// List the audit log of decrypted reads: who read which subjects' fields, when and why.
    Audit {
        /// Only the entries after this sequence number.
        #[arg(long, default_value_t = 0, value_name = "SEQUENCE")]
        after: u64,
        /// List at most this many entries.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
    },
}

/// `events ...`: reading the event log.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum EventsCommand {
    /// A stream's events as stored: personal fields are references, unless --decrypt.
    Show {
        /// The stream id (as stored, `voucher-0190...` say).
        stream: String,
        /// Only the events after this stream version.
        #[arg(long, default_value_t = 0, value_name = "VERSION")]
        after: u64,
        /// Decrypting personal fields, audited.
        #[command(flatten)]
        decrypt: Decrypt,
    },
    /// Follow the global log, printing each new event as `show` does, until interrupted.
    Tail {
        /// Start at this global position (inclusive) instead of the head.
        #[arg(long, value_name = "POSITION")]
        from: Option<u64>,
        /// Stop after printing this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Decrypting personal fields, audited.
        #[command(flatten)]
        decrypt: Decrypt,
    },
}

/// `--decrypt`: personal fields printed as their values (erased ones as erased), each read
/// recorded in the audit log, before anything is printed, with who read and why.
#[derive(Debug, Clone, Default, Args)]
pub struct Decrypt {
    /// Print personal values instead of references (audited; needs --actor and --reason).
    #[arg(long)]
    pub decrypt: bool,
    /// Who reads the values, for the audit log (else EVENTSOURCERY_ACTOR).
    #[arg(long, value_name = "NAME", requires = "decrypt")]
    pub actor: Option<String>,
    /// Why the values are read, for the audit log (a ticket or request id; never personal data).
    #[arg(long, value_name = "REASON", requires = "decrypt")]
    pub reason: Option<String>,
}

impl OpsCommand {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Rebuild { .. } => "rebuild",
            Self::Skip { .. } => "skip",
            Self::Retry { .. } => "retry",
            Self::Erase { .. } => "erase",
            Self::Export { .. } => "export",
            Self::Migrate => "migrate",
            Self::RotateMasterKey => "rotate-master-key",
            Self::Events { .. } => "events",
            Self::Verify { .. } => "verify",
            Self::Audit { .. } => "audit",
        }
    }
}
