//! A complete aggregate with its events, a command and its handler.

use eventsourcery::{Aggregate, Apply, Command, DomainEvent, Repository, SerializableValue};

#[derive(SerializableValue, Clone, Debug)]
struct VoucherId(uuid::Uuid);

#[derive(DomainEvent)]
#[event(name = "voucher_issued", version = 2)]
struct VoucherIssued {
    voucher: VoucherId,
    amount_cents: u64,
}

#[derive(DomainEvent)]
struct VoucherRedeemed {
    voucher: VoucherId,
}

#[derive(Aggregate, Default)]
#[aggregate(id = VoucherId, events(VoucherIssued, VoucherRedeemed), name = "voucher")]
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
#[command(name = "vouchers.redeem")]
struct RedeemVoucher {
    voucher: VoucherId,
}

#[eventsourcery::handler]
async fn redeem(
    cmd: RedeemVoucher,
    vouchers: Repository<Voucher>,
) -> Result<(), eventsourcery::Error> {
    let mut voucher = vouchers.load(&cmd.voucher).await?;
    if voucher.redeemed {
        return Err(eventsourcery::Error::rejected("voucher already redeemed"));
    }
    voucher.raise(VoucherRedeemed {
        voucher: cmd.voucher,
    });
    vouchers.save(&mut voucher).await?;
    Ok(())
}

fn main() {
    assert_eq!(<Voucher as Aggregate>::NAME, "voucher");
    assert_eq!(<RedeemVoucher as Command>::NAME, "vouchers.redeem");
}
