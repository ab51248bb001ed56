//! Vouchers: issue one, redeem it, and see the second redemption rejected.
//!
//! Run with `cargo run --example vouchers`.

use eventsourcery::{
    Aggregate, Apply, Command, CommandBus, DomainEvent, Id, MemoryStore, Repository,
    SerializableValue,
};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(DomainEvent, Debug)]
#[event(name = "voucher_issued", version = 1)]
struct VoucherIssued {
    voucher: VoucherId,
    amount_cents: u64,
}

#[derive(DomainEvent, Debug)]
struct VoucherRedeemed {
    voucher: VoucherId,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(id = VoucherId, events(VoucherIssued, VoucherRedeemed))]
struct Voucher {
    amount_cents: u64,
    redeemed: bool,
}

impl Apply<VoucherIssued> for Voucher {
    fn apply(&mut self, event: &VoucherIssued) {
        self.amount_cents = event.amount_cents;
    }
}

impl Apply<VoucherRedeemed> for Voucher {
    fn apply(&mut self, _: &VoucherRedeemed) {
        self.redeemed = true;
    }
}

#[derive(Command, Clone)]
struct IssueVoucher {
    voucher: VoucherId,
    amount_cents: u64,
}

#[derive(Command, Clone)]
struct RedeemVoucher {
    voucher: VoucherId,
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
        amount_cents: cmd.amount_cents,
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

#[eventsourcery::handler]
async fn redeem(
    cmd: RedeemVoucher,
    vouchers: Repository<Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    if voucher.is_new() {
        return Err(eventsourcery::Error::rejected("no such voucher"));
    }
    if voucher.redeemed {
        return Err(eventsourcery::Error::rejected("voucher already redeemed"));
    }
    voucher.raise(VoucherRedeemed {
        voucher: cmd.voucher,
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = CommandBus::builder(MemoryStore::new()).build()?;

    let voucher = VoucherId::generate();
    bus.execute(IssueVoucher {
        voucher: voucher.clone(),
        amount_cents: 2_500,
    })
    .await?;
    let receipt = bus
        .execute(RedeemVoucher {
            voucher: voucher.clone(),
        })
        .await?;
    println!(
        "redeemed voucher {voucher} (command {})",
        receipt.command_id
    );

    match bus
        .execute(RedeemVoucher {
            voucher: voucher.clone(),
        })
        .await
    {
        Err(error) => println!("second redemption refused: {error}"),
        Ok(_) => return Err("a voucher was redeemed twice".into()),
    }

    let state = bus.repository::<Voucher>().load(&voucher).await?;
    println!(
        "voucher at version {}: {:?}",
        state.version(),
        state.state()
    );

    for event in bus.store().read_all(0, 100).await? {
        println!(
            "#{} {} v{} {}",
            event.position, event.stream_id, event.stream_version, event.event_name
        );
    }
    Ok(())
}
