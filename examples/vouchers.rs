//! Vouchers that people register for with their email address: register two people, forget
//! one, and see every event still load, the forgotten person's data gone, and a projection
//! (whose read model holds addresses by reference only) and a process manager at work.
//!
//! Run with `cargo run --example vouchers`. It keeps its SQLite files (events, personal data,
//! keys) and a generated master key in a fresh temporary directory; set the variables of
//! `eventsourcery::config` to use your own.

use eventsourcery::config::{EventsBackend, Settings};
use eventsourcery::dispatch::{Commands, Dispatcher, PersonalRefs, ProjectionTx};
use eventsourcery::personal::PersonalRef;
use eventsourcery::sqlx; // the sqlx eventsourcery is built with
use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, CommandError, DomainEvent, Id, Personal, PersonalData,
    PersonalKey, Repository, SerializableValue,
};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(PersonalData, Clone)]
struct Email(String);

#[derive(DomainEvent)]
#[event(name = "voucher_issued", version = 1)]
struct VoucherIssued {
    voucher: VoucherId,
    places: u32,
}

#[derive(DomainEvent)]
#[event(name = "candidate_registered", version = 1)]
struct CandidateRegistered {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal(subject = candidate, lookup)]
    email: Personal<Email>,
}

#[derive(DomainEvent)]
#[event(name = "registration_confirmed", version = 1)]
struct RegistrationConfirmed {
    voucher: VoucherId,
    candidate: PersonalKey,
}

#[derive(Aggregate, Default)]
#[aggregate(id = VoucherId, events(VoucherIssued, CandidateRegistered, RegistrationConfirmed))]
struct Voucher {
    places: u32,
    candidates: Vec<(PersonalKey, Personal<Email>)>,
    confirmed: Vec<PersonalKey>,
}

impl Apply<VoucherIssued> for Voucher {
    fn apply(&mut self, event: &VoucherIssued) {
        self.places = event.places;
    }
}

impl Apply<CandidateRegistered> for Voucher {
    fn apply(&mut self, event: &CandidateRegistered) {
        self.candidates.push((event.candidate, event.email.clone()));
    }
}

impl Apply<RegistrationConfirmed> for Voucher {
    fn apply(&mut self, event: &RegistrationConfirmed) {
        self.confirmed.push(event.candidate);
    }
}

#[derive(Command, Clone)]
struct IssueVoucher {
    voucher: VoucherId,
    places: u32,
}

#[derive(Command, Clone)]
#[command(subject = candidate)]
struct RegisterCandidate {
    voucher: VoucherId,
    candidate: PersonalKey,
    #[personal]
    email: Email,
}

#[derive(Command, Clone)]
struct ConfirmRegistration {
    voucher: VoucherId,
    candidate: PersonalKey,
}

#[eventsourcery::handler]
async fn issue(
    cmd: IssueVoucher,
    vouchers: Repository<Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    if !voucher.is_new() {
        return Err(eventsourcery::Error::rejected("voucher already issued"));
    }
    voucher.raise(VoucherIssued {
        voucher: cmd.voucher,
        places: cmd.places,
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn register(
    cmd: RegisterCandidate,
    vouchers: Repository<Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    if voucher.candidates.len() as u32 >= voucher.places {
        return Err(eventsourcery::Error::rejected(
            "no places left on this voucher",
        ));
    }
    voucher.raise(CandidateRegistered {
        voucher: cmd.voucher,
        candidate: cmd.candidate,
        email: cmd.email.into(),
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn confirm(
    cmd: ConfirmRegistration,
    vouchers: Repository<Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    if !voucher.confirmed.contains(&cmd.candidate) {
        voucher.raise(RegistrationConfirmed {
            voucher: cmd.voucher,
            candidate: cmd.candidate,
        });
        vouchers.save(&mut voucher).await?;
    }
    Ok(())
}

/// A process manager: every registration gets confirmed by a command of its own, which carries
/// the registration's correlation id and has the registration event as its cause.
#[eventsourcery::process_manager(consumer = "confirmations")]
async fn confirmations(event: CandidateRegistered, commands: Commands) -> Result<(), CommandError> {
    commands
        .execute(ConfirmRegistration {
            voucher: event.voucher,
            candidate: event.candidate,
        })
        .await
        .map(drop)
}

/// A projection in the event store's own database: the registrations, updated in the
/// transaction that moves its checkpoint. It keeps each address by reference, never the
/// address: read back through the vault, a forgotten person's reads as erased, so the read
/// model has nothing to forget.
#[eventsourcery::projection(consumer = "registrations", reset = clear_registrations)]
async fn record_registration(
    event: CandidateRegistered,
    refs: PersonalRefs,
    tx: &mut ProjectionTx<'_>,
) -> Result<(), sqlx::Error> {
    let email = refs.get::<Email>("email").map(|r| r.to_string());
    if let Some(conn) = tx.sqlite() {
        sqlx::query("INSERT INTO registrations (voucher, candidate, email) VALUES (?1, ?2, ?3)")
            .bind(event.voucher.to_string())
            .bind(event.candidate.to_string())
            .bind(email)
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn clear_registrations(tx: &mut ProjectionTx<'_>) -> Result<(), sqlx::Error> {
    if let Some(conn) = tx.sqlite() {
        sqlx::query("DELETE FROM registrations")
            .execute(conn)
            .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Shows the warning about the generated master key, among others.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .init();
    let dir = std::env::temp_dir().join(format!("eventsourcery-vouchers-{}", uuid::Uuid::now_v7()));
    println!("data in {}", dir.display());
    // Three SQLite files and a generated master key; see `Settings::from_env` for production.
    let stores = Settings::defaults(&dir).open().await?;
    let bus = CommandBus::builder(stores.events.clone())
        .personal_data(stores.vault.clone())
        .build()?;
    bus.check().map_err(|problems| format!("{problems:?}"))?;

    // The projection's table lives in the event store's database.
    if let EventsBackend::Sqlite(sqlite) = &stores.backend {
        sqlx::query("CREATE TABLE IF NOT EXISTS registrations (voucher TEXT NOT NULL, candidate TEXT NOT NULL, email TEXT)")
            .execute(sqlite.pool())
            .await?;
    }
    let dispatcher = Dispatcher::builder(&bus, stores.events.clone()).build()?;
    dispatcher.dispatch_inline();

    let voucher = VoucherId::generate();
    let (ann, bob) = (PersonalKey::issue(), PersonalKey::issue());
    bus.execute(IssueVoucher {
        voucher: voucher.clone(),
        places: 10,
    })
    .await?;
    bus.execute(RegisterCandidate {
        voucher: voucher.clone(),
        candidate: ann,
        email: Email("ann@example.com".into()),
    })
    .await?;
    bus.execute(RegisterCandidate {
        voucher: voucher.clone(),
        candidate: bob,
        email: Email("bob@example.com".into()),
    })
    .await?;

    println!("\nthe event log (personal fields are references, never values):");
    for event in bus.store().read_all(0, 100).await? {
        println!(
            "  #{} {} {}",
            event.position, event.event_name, event.payload
        );
    }

    let loaded = bus.repository::<Voucher>().load(&voucher).await?;
    println!(
        "\nbefore erasure: {} candidates, {} confirmed by the process manager",
        loaded.candidates.len(),
        loaded.confirmed.len()
    );
    for (who, email) in &loaded.candidates {
        println!(
            "  {who}: {}",
            email.present().map_or("<erased>", |e| e.0.as_str())
        );
    }

    // Ann asks to be forgotten; her email finds her through the blind index. The bus erases
    // her through the vault and appends the PII-free fact to the log, for consumers that
    // copied her data.
    let found = stores
        .vault
        .lookup(&Email("ann@example.com".into()))
        .await?;
    assert_eq!(found, vec![ann]);
    bus.erase(ann, "erasure request 2026-0042").await?;

    let replayed = bus.repository::<Voucher>().load(&voucher).await?;
    println!(
        "\nafter erasing Ann, every event still loads and replays (version {}):",
        replayed.version()
    );
    for (who, email) in &replayed.candidates {
        println!(
            "  {who}: {}",
            email.present().map_or("<erased>", |e| e.0.as_str())
        );
    }
    assert!(replayed.candidates[0].1.is_erased());
    assert!(replayed.candidates[1].1.present().is_some());

    let export = stores.vault.export(ann).await?;
    println!("\nexport of Ann's data: {}", export.to_json());
    println!(
        "export of Bob's data: {}",
        stores.vault.export(bob).await?.to_json()
    );
    assert!(export.fields.is_empty() && export.erased);

    let progress = dispatcher.rebuild("registrations", |_| {}).await?;
    println!(
        "\nprojection rebuilt over {} events ({:.0} events/s)",
        progress.done, progress.rate
    );
    // The read model the projection keeps in the event store's database: references only,
    // resolved through the vault as it is read.
    if let EventsBackend::Sqlite(sqlite) = &stores.backend {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT candidate, email FROM registrations ORDER BY rowid")
                .fetch_all(sqlite.pool())
                .await?;
        let refs: Vec<PersonalRef<Email>> = rows
            .iter()
            .map(|(_, email)| email.parse())
            .collect::<Result<_, _>>()?;
        let emails = stores.vault.resolve_refs(&refs).await?;
        println!("the registrations read model, its addresses read through the vault:");
        for ((candidate, _), email) in rows.iter().zip(&emails) {
            println!(
                "  {candidate}: {}",
                email.present().map_or("<erased>", |e| e.0.as_str())
            );
        }
        assert!(emails[0].is_erased() && emails[1].present().is_some());
    }
    Ok(())
}
