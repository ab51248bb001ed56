//! A small domain for the tests that go through repositories and the command bus.

use eventsourcery::{Aggregate, Apply, Command, DomainEvent, Repository, SerializableValue};

/// The id of an account.
#[derive(SerializableValue, Clone, Debug)]
pub(crate) struct AccountId(pub(crate) uuid::Uuid);

/// Money paid in.
#[derive(DomainEvent, Clone, Debug, PartialEq)]
#[event(name = "conformance_deposited", version = 1)]
pub(crate) struct Deposited {
    pub(crate) amount: u64,
}

/// The account's label; version 1 called it `name`.
#[derive(DomainEvent, Clone, Debug, PartialEq)]
#[event(name = "conformance_labelled", version = 2)]
pub(crate) struct Labelled {
    pub(crate) label: String,
    pub(crate) note: Option<String>,
}

eventsourcery::upcaster!("conformance_labelled", 1 => |mut payload| {
    let object = payload.as_object_mut().ok_or("not an object")?;
    let name = object.remove("name").ok_or("no `name`")?;
    object.insert("label".into(), name);
    Ok(payload)
});

/// An account: its balance and how many deposits made it.
#[derive(Aggregate, Default, Debug)]
#[aggregate(id = AccountId, events(Deposited, Labelled))]
pub(crate) struct Account {
    pub(crate) balance: u64,
    pub(crate) deposits: u64,
    pub(crate) label: String,
}

impl Apply<Labelled> for Account {
    fn apply(&mut self, event: &Labelled) {
        self.label = event.label.clone();
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, event: &Deposited) {
        self.balance += event.amount;
        self.deposits += 1;
    }
}

/// Pay money into an account.
#[derive(Command, Clone, Debug)]
pub(crate) struct Deposit {
    pub(crate) account: AccountId,
    pub(crate) amount: u64,
}

#[eventsourcery::handler]
async fn deposit(
    command: Deposit,
    accounts: Repository<Account>,
) -> Result<(), eventsourcery::Error> {
    let mut account = accounts.load(&command.account).await?;
    account.raise(Deposited {
        amount: command.amount,
    });
    accounts.save(&mut account).await?;
    Ok(())
}
