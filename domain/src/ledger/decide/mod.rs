//! Deciding commands: may this command happen, and as which event? `decide` never changes the
//! state. Each family of commands has its own module; what they share (resolving what a command
//! names, amounts in smallest units, the final check of an event) is here.

use super::state::{AccountView, LedgerState};
use crate::command::{Command, PostingInstruction};
use crate::error::Rejection;
use crate::event::{Cost, Event, Posting};
use crate::money::{self, UnitsError};
use crate::values::{AccountRef, AssetCode, PositiveDecimal, Scale};

mod accounts;
mod assets;
mod guards;
mod prices;
mod reversal;
mod settlement;
mod transactions;

pub use settlement::FAIL_REASON_BYTES_MAX;
pub use transactions::{PRICE_SCALE_MAX, SETTLEMENT_DAYS_MAX};

/// A posting after its accounts, asset and amount were resolved and checked.
struct Resolved<'a> {
    source: AccountView<'a>,
    destination: AccountView<'a>,
    asset: &'a AssetCode,
    scale: Scale,
    units: i128,
    cost: Option<Cost>,
}

impl LedgerState {
    /// Decides a command against the current state: the event it becomes, or why it is refused.
    pub fn decide(&self, command: &Command) -> Result<Event, Rejection> {
        match command {
            Command::DefineAsset(c) => self.decide_define_asset(c),
            Command::OpenAccount(c) => self.decide_open_account(c),
            Command::PostTransaction(c) => self.decide_post_transaction(c),
            Command::ExecuteTrade(c) => self.decide_trade(c),
            Command::ChangeAccountStatus(c) => self.decide_status_change(c),
            Command::SetAccountLimits(c) => self.decide_limits(c),
            Command::SettlePending(c) => self.decide_settlement(c),
            Command::ReverseTransaction(c) => self.decide_reversal(c),
            Command::ClosePeriod(c) => self.decide_close(c),
            Command::ReopenPeriod(c) => self.decide_reopen(c),
            Command::SetBookingMethod(c) => self.decide_booking_method(c),
            Command::MarkPrice(c) => self.decide_mark(c),
        }
    }

    /// Checks an event being decided against statuses and bounds, step by step.
    fn check_event(&self, event: &Event) -> Result<(), Rejection> {
        // The postings were resolved against this state, so their steps exist.
        let steps = self
            .steps_of(event)
            .map_err(|e| Rejection::validation(e.0))?;
        // A settlement never lowers an available balance or raises a ceiling overall (it posts
        // at most what was reserved), so bounds changed since the hold do not refuse it.
        self.check_steps(&steps, event.released().is_empty())
    }

    fn resolve_account(&self, account: &AccountRef) -> Result<AccountView<'_>, Rejection> {
        let found = match account {
            AccountRef::Id(id) => self.account(*id),
            AccountRef::Code(code) => self.account_by_code(code),
        };
        found.ok_or_else(|| Rejection::AccountNotFound {
            account: account.to_string(),
        })
    }

    fn resolve_asset<'a>(&'a self, asset: &AssetCode) -> Result<(&'a AssetCode, Scale), Rejection> {
        self.assets
            .get(asset)
            .map(|(_, a, s)| (a, s))
            .ok_or_else(|| Rejection::AssetNotFound {
                asset: asset.to_string(),
            })
    }

    fn resolve_posting(&self, p: &PostingInstruction) -> Result<Resolved<'_>, Rejection> {
        let mut resolved =
            self.resolve_posting_parts(&p.source, &p.destination, &p.asset, p.amount)?;
        if let Some(cost) = &p.cost {
            let (currency, scale) = self.resolve_asset(&cost.currency)?;
            if currency == resolved.asset {
                return Err(Rejection::validation(format!(
                    "a cost of {} is stated in another asset",
                    resolved.asset
                )));
            }
            let units = named_units("cost", cost.amount.get(), currency, scale)?;
            resolved.cost = Some(Cost {
                amount: money::to_decimal(units, scale),
                currency: currency.clone(),
            });
        }
        Ok(resolved)
    }

    fn resolve_posting_parts(
        &self,
        source: &AccountRef,
        destination: &AccountRef,
        asset: &AssetCode,
        amount: PositiveDecimal,
    ) -> Result<Resolved<'_>, Rejection> {
        let (asset, scale) = self.resolve_asset(asset)?;
        let source = self.resolve_account(source)?;
        let destination = self.resolve_account(destination)?;
        if source.id == destination.id {
            return Err(Rejection::validation(format!(
                "source and destination are both {}; a posting moves money between two accounts",
                source.code
            )));
        }
        let units = amount_units(amount, asset, scale)?;
        Ok(Resolved {
            source,
            destination,
            asset,
            scale,
            units,
            cost: None,
        })
    }
}

impl Resolved<'_> {
    fn to_posting(&self) -> Posting {
        Posting {
            source: self.source.code.clone(),
            destination: self.destination.code.clone(),
            asset: self.asset.clone(),
            amount: money::to_decimal(self.units, self.scale),
            cost: self.cost.clone(),
        }
    }
}

/// A signed amount (a condition's) in smallest units of `asset`, refusing rather than rounding.
fn amount_units_signed(
    amount: rust_decimal::Decimal,
    asset: &AssetCode,
    scale: Scale,
) -> Result<i128, Rejection> {
    named_units("amount", amount, asset, scale)
}

/// `amount` in smallest units of `asset`, refusing rather than rounding; `name` says in the
/// refusal which figure of the command it was (`amount`, `min_balance`, …).
fn named_units(
    name: &str,
    amount: rust_decimal::Decimal,
    asset: &AssetCode,
    scale: Scale,
) -> Result<i128, Rejection> {
    money::to_units(amount, scale).map_err(|e| match e {
        UnitsError::Precision => Rejection::AmountPrecision {
            message: format!(
                "{name} {amount} has more decimal places than {asset} allows ({})",
                scale.get()
            ),
        },
        UnitsError::Overflow => Rejection::validation(format!(
            "{name} {amount} {asset} is beyond the range of the balance type"
        )),
    })
}

fn amount_units(
    amount: PositiveDecimal,
    asset: &AssetCode,
    scale: Scale,
) -> Result<i128, Rejection> {
    amount_units_signed(amount.get(), asset, scale)
}
