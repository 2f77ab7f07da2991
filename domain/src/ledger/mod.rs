//! The ledger's state and its two functions: `decide` (may this command happen, and as which event?)
//! and `apply` (what an event does to the state). `decide` never changes the state; `apply` is the
//! only thing that does, so replaying the log through `apply` gives the same state that the writer
//! had when it decided.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::command::{
    AccountStatus, BalanceFigure, BoundChange, ChangeAccountStatus, Command, Comparison,
    DefineAsset, ExecuteTrade, Guards, OpenAccount, PostTransaction, PostingInstruction,
    SetAccountLimits, StatusChange, TransactionKind, CONDITIONS_MAX, EXPECTED_VERSIONS_MAX,
    FEES_MAX, POSTINGS_MAX,
};
use crate::error::{ApplyError, ConditionFailure, Rejection};
use crate::event::{
    AccountLimitsSet, AccountOpened, AccountStatusChanged, AssetDefined, Event, Fee, Posting,
    TradeExecuted, TransactionPosted,
};
use crate::money::{self, UnitsError};
use crate::values::{
    AccountCode, AccountId, AccountRef, AssetCode, PositiveDecimal, Scale, TransactionId,
};

mod holds;
mod reversals;
mod steps;

pub use holds::{Hold, HoldOutcome};
use steps::Effect;
pub use steps::Figures;

/// The most decimal places a trade price may have.
pub const PRICE_SCALE_MAX: u32 = 18;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub code: AccountCode,
    pub allow_negative: bool,
    pub status: AccountStatus,
    /// The position of the last event that changed the account (opened it, moved one of its
    /// balances, changed its status or limits): what `expected_version` compares with.
    pub version: i64,
    /// Figures in smallest units, per asset; an account holds few assets, so a small vector.
    balances: Vec<(AssetCode, Figures)>,
    /// Bounds set explicitly, per asset; other assets have the default ones.
    limits: Vec<(AssetCode, Limits)>,
}

/// An account's bounds in one asset, in smallest units; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_units: Option<i128>,
    pub max_units: Option<i128>,
}

impl Account {
    /// The bounds in `asset`: those set for it, or by default a minimum of zero (unbounded when
    /// the account was opened with `allow_negative`) and no maximum.
    pub fn limits(&self, asset: &AssetCode) -> Limits {
        self.explicit_limits(asset).unwrap_or(Limits {
            min_units: if self.allow_negative { None } else { Some(0) },
            max_units: None,
        })
    }

    pub fn explicit_limits(&self, asset: &AssetCode) -> Option<Limits> {
        self.limits
            .iter()
            .find(|(a, _)| a == asset)
            .map(|(_, limits)| *limits)
    }

    pub fn all_explicit_limits(&self) -> impl Iterator<Item = (&AssetCode, Limits)> {
        self.limits.iter().map(|(a, l)| (a, *l))
    }

    fn set_limits(&mut self, asset: &AssetCode, limits: Limits) {
        match self.limits.iter().position(|(a, _)| a == asset) {
            Some(i) => self.limits[i].1 = limits,
            None => self.limits.push((asset.clone(), limits)),
        }
    }

    /// The posted balance.
    pub fn balance(&self, asset: &AssetCode) -> i128 {
        self.figures(asset).posted
    }

    pub fn figures(&self, asset: &AssetCode) -> Figures {
        self.balances
            .iter()
            .find(|(a, _)| a == asset)
            .map_or_else(Figures::default, |(_, f)| *f)
    }

    /// The posted balances that are not zero.
    pub fn balances(&self) -> impl Iterator<Item = (&AssetCode, i128)> {
        self.balances
            .iter()
            .filter(|(_, f)| f.posted != 0)
            .map(|(a, f)| (a, f.posted))
    }

    /// Every asset with a posted balance or a reservation.
    pub fn all_figures(&self) -> impl Iterator<Item = (&AssetCode, Figures)> {
        self.balances.iter().map(|(a, f)| (a, *f))
    }

    /// Zero figures are not kept, so that equal states are equal however they were reached.
    fn set_figures(&mut self, asset: &AssetCode, figures: Figures) {
        match self.balances.iter().position(|(a, _)| a == asset) {
            Some(i) if figures.is_zero() => {
                self.balances.swap_remove(i);
            }
            Some(i) => self.balances[i].1 = figures,
            None if figures.is_zero() => {}
            None => self.balances.push((asset.clone(), figures)),
        }
    }
}

/// One side of a posting as it lands on an account: what the postings history records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub account_id: AccountId,
    pub asset: AssetCode,
    pub scale: Scale,
    /// Signed smallest units: negative for the source, positive for the destination.
    pub units: i128,
    pub balance_after: i128,
    pub counterparty_id: AccountId,
    pub posting_index: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    assets: HashMap<AssetCode, Scale>,
    account_ids: HashMap<AccountCode, AccountId>,
    accounts: HashMap<AccountId, Account>,
    /// The position of the last event applied: the log is gap-free and every event is applied
    /// in order, so the next one applied is at `head + 1`.
    head: i64,
    /// Pending transactions not yet settled, and their expiry times in order.
    holds: HashMap<TransactionId, Hold>,
    expiries: BTreeSet<(DateTime<Utc>, TransactionId)>,
    /// How each settled pending transaction ended, for a clear answer to a second settlement.
    settled: HashMap<TransactionId, HoldOutcome>,
    /// Reversed transactions, and the reversal of each.
    reversed: HashMap<TransactionId, TransactionId>,
    /// While a group is open: what to restore, newest last, to roll the group back.
    journal: Option<Vec<Undo>>,
}

/// One change the journal can take back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    AssetDefined(AssetCode),
    /// The account as it was before a change; `None` when the change opened it.
    Account(AccountId, Option<Account>),
    /// A hold as it was; `None` when it did not exist.
    Hold(TransactionId, Option<Hold>),
    /// A settlement recorded (to be forgotten on rollback).
    Settled(TransactionId),
    /// A reversal of this transaction recorded.
    Reversed(TransactionId),
    Head(i64),
}

/// A posting after its accounts, asset and amount were resolved and checked.
struct Resolved<'a> {
    source: &'a Account,
    destination: &'a Account,
    asset: &'a AssetCode,
    scale: Scale,
    units: i128,
}

impl LedgerState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of the last event applied.
    pub fn head(&self) -> i64 {
        self.head
    }

    /// Sets the head when the state is restored from the projections rather than replayed.
    pub fn restore_head(&mut self, head: i64) {
        self.head = head;
    }

    pub fn asset_scale(&self, asset: &AssetCode) -> Option<Scale> {
        self.assets.get(asset).copied()
    }

    pub fn assets(&self) -> impl Iterator<Item = (&AssetCode, Scale)> {
        self.assets.iter().map(|(a, s)| (a, *s))
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn account_by_code(&self, code: &AccountCode) -> Option<&Account> {
        self.account_ids
            .get(code)
            .and_then(|id| self.accounts.get(id))
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The sum of all balances per asset. Every posting debits what it credits, so each is zero;
    /// anything else means the state was corrupted.
    pub fn totals_per_asset(&self) -> BTreeMap<AssetCode, i128> {
        let mut totals: BTreeMap<AssetCode, i128> =
            self.assets.keys().map(|a| (a.clone(), 0)).collect();
        for account in self.accounts.values() {
            for (asset, units) in account.balances() {
                *totals.entry(asset.clone()).or_default() += units;
            }
        }
        totals
    }

    /// Checks conservation: the sum of balances is zero for every asset, and every reservation
    /// has both sides (pending debits and pending credits sum to the same per asset).
    pub fn check_conservation(&self) -> Result<(), ApplyError> {
        for (asset, total) in self.totals_per_asset() {
            if total != 0 {
                return Err(ApplyError(format!(
                    "balances of {asset} sum to {total} smallest units, not zero"
                )));
            }
        }
        let mut pending: BTreeMap<&AssetCode, (i128, i128)> = BTreeMap::new();
        for account in self.accounts.values() {
            for (asset, figures) in account.all_figures() {
                let sums = pending.entry(asset).or_default();
                sums.0 += figures.pending_debits;
                sums.1 += figures.pending_credits;
            }
        }
        for (asset, (debits, credits)) in pending {
            if debits != credits {
                return Err(ApplyError(format!(
                    "pending debits of {asset} sum to {debits} smallest units, pending credits to {credits}"
                )));
            }
        }
        Ok(())
    }

    /// Restores an asset read from the projections when the writer starts.
    pub fn restore_asset(&mut self, asset: AssetCode, scale: Scale) -> Result<(), ApplyError> {
        self.apply(&Event::AssetDefined(AssetDefined { asset, scale }))
            .map(drop)
    }

    /// Restores an account read from the projections when the writer starts (without balances).
    pub fn restore_account(
        &mut self,
        id: AccountId,
        code: AccountCode,
        allow_negative: bool,
        status: AccountStatus,
        version: i64,
    ) -> Result<(), ApplyError> {
        if self.account_ids.contains_key(&code) || self.accounts.contains_key(&id) {
            return Err(ApplyError(format!("account {code} would exist twice")));
        }
        self.account_ids.insert(code.clone(), id);
        self.accounts.insert(
            id,
            Account {
                id,
                code,
                allow_negative,
                status,
                version,
                balances: Vec::new(),
                limits: Vec::new(),
            },
        );
        Ok(())
    }

    /// Restores limits read from the projections when the writer starts.
    pub fn restore_limits(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        limits: Limits,
    ) -> Result<(), ApplyError> {
        if !self.assets.contains_key(asset) {
            return Err(ApplyError(format!("limits in undefined asset {asset}")));
        }
        self.accounts
            .get_mut(&account_id)
            .ok_or_else(|| ApplyError(format!("limits of unknown account {account_id}")))?
            .set_limits(asset, limits);
        Ok(())
    }

    /// Restores a balance read from the projections when the writer starts. The caller checks
    /// conservation once everything is restored.
    pub fn restore_balance(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        units: i128,
    ) -> Result<(), ApplyError> {
        self.restore_figures(account_id, asset, |f| f.posted = units)
    }

    /// Restores an account's reservations in an asset, read from the projections.
    pub fn restore_pending(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        pending_debits: i128,
        pending_credits: i128,
    ) -> Result<(), ApplyError> {
        self.restore_figures(account_id, asset, |f| {
            f.pending_debits = pending_debits;
            f.pending_credits = pending_credits;
        })
    }

    fn restore_figures(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        change: impl FnOnce(&mut Figures),
    ) -> Result<(), ApplyError> {
        if !self.assets.contains_key(asset) {
            return Err(ApplyError(format!("balance in undefined asset {asset}")));
        }
        let account = self
            .accounts
            .get_mut(&account_id)
            .ok_or_else(|| ApplyError(format!("balance of unknown account {account_id}")))?;
        let mut figures = account.figures(asset);
        change(&mut figures);
        account.set_figures(asset, figures);
        Ok(())
    }

    // ---------------------------------------------------------------- decide

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

    fn decide_status_change(&self, c: &ChangeAccountStatus) -> Result<Event, Rejection> {
        let account = self.resolve_account(&c.account)?;
        let refused = |rejection: fn(String) -> Rejection| Err(rejection(account.code.to_string()));
        let status = match (account.status, c.change) {
            (AccountStatus::Closed, _) => {
                return refused(|account| Rejection::AccountClosed { account })
            }
            (AccountStatus::Frozen, StatusChange::Freeze) => {
                return refused(|account| Rejection::AccountFrozen { account })
            }
            (AccountStatus::Open, StatusChange::Unfreeze) => {
                return refused(|account| Rejection::AccountNotFrozen { account })
            }
            (_, StatusChange::Freeze) => AccountStatus::Frozen,
            (_, StatusChange::Unfreeze) => AccountStatus::Open,
            (_, StatusChange::Close) => {
                if let Some((asset, units)) = account.balances().next() {
                    let balance = self.asset_scale(asset).map_or_else(
                        || units.to_string(),
                        |scale| money::to_decimal(units, scale).to_string(),
                    );
                    return Err(Rejection::AccountNotEmpty {
                        account: account.code.to_string(),
                        asset: asset.to_string(),
                        balance,
                    });
                }
                let reserved = account
                    .all_figures()
                    .find(|(_, f)| f.pending_debits != 0 || f.pending_credits != 0);
                if let Some((asset, figures)) = reserved {
                    let shown = |units: i128| {
                        self.asset_scale(asset).map_or_else(
                            || units.to_string(),
                            |scale| money::to_decimal(units, scale).to_string(),
                        )
                    };
                    return Err(Rejection::AccountHasHolds {
                        account: account.code.to_string(),
                        asset: asset.to_string(),
                        pending_debits: shown(figures.pending_debits),
                        pending_credits: shown(figures.pending_credits),
                    });
                }
                AccountStatus::Closed
            }
        };
        Ok(Event::AccountStatusChanged(AccountStatusChanged {
            account: account.code.clone(),
            status,
            metadata: c.metadata.clone(),
        }))
    }

    fn decide_limits(&self, c: &SetAccountLimits) -> Result<Event, Rejection> {
        let account = self.resolve_account(&c.account)?;
        if account.status == AccountStatus::Closed {
            return Err(Rejection::AccountClosed {
                account: account.code.to_string(),
            });
        }
        let (asset, scale) = self.resolve_asset(&c.asset)?;
        let current = account.limits(asset);
        let bound = |change: BoundChange, current: Option<i128>, name: &str| match change {
            BoundChange::Keep => Ok(current),
            BoundChange::Unbounded => Ok(None),
            BoundChange::To(value) => {
                money::to_units(value.get(), scale)
                    .map(Some)
                    .map_err(|e| match e {
                        UnitsError::Precision => Rejection::AmountPrecision {
                            message: format!(
                                "{name} {value} has more decimal places than {asset} allows ({})",
                                scale.get()
                            ),
                        },
                        UnitsError::Overflow => Rejection::validation(format!(
                            "{name} {value} {asset} is beyond the range of the balance type"
                        )),
                    })
            }
        };
        let min_units = bound(c.min_balance, current.min_units, "min_balance")?;
        let max_units = bound(c.max_balance, current.max_units, "max_balance")?;
        if let (Some(min), Some(max)) = (min_units, max_units) {
            if min > max {
                return Err(Rejection::validation(format!(
                    "min_balance {} is above max_balance {}",
                    money::to_decimal(min, scale),
                    money::to_decimal(max, scale)
                )));
            }
        }
        Ok(Event::AccountLimitsSet(AccountLimitsSet {
            account: account.code.clone(),
            asset: asset.clone(),
            min_balance: min_units.map(|u| money::to_decimal(u, scale)),
            max_balance: max_units.map(|u| money::to_decimal(u, scale)),
        }))
    }

    /// Checks a command's conditions and expected versions against the state before it.
    fn check_guards(&self, guards: &Guards) -> Result<(), Rejection> {
        if guards.conditions.len() > CONDITIONS_MAX
            || guards.expected_versions.len() > EXPECTED_VERSIONS_MAX
        {
            return Err(Rejection::validation(format!(
                "a command carries at most {CONDITIONS_MAX} conditions and {EXPECTED_VERSIONS_MAX} expected versions"
            )));
        }
        for expected in &guards.expected_versions {
            let account = self.resolve_account(&expected.account)?;
            if account.version != expected.version {
                return Err(Rejection::VersionMismatch {
                    account: account.code.to_string(),
                    expected: expected.version,
                    actual: account.version,
                });
            }
        }
        for (index, condition) in guards.conditions.iter().enumerate() {
            let account = self.resolve_account(&condition.account)?;
            let (asset, scale) = self.resolve_asset(&condition.asset)?;
            let amount = amount_units_signed(condition.amount.get(), asset, scale)?;
            // With no holds, available and posted are the same figure.
            let figures = account.figures(asset);
            let actual = match condition.balance {
                BalanceFigure::Available => figures.available(),
                BalanceFigure::Posted => figures.posted,
            };
            let holds = match condition.op {
                Comparison::Gte => actual >= amount,
                Comparison::Lte => actual <= amount,
                Comparison::Eq => actual == amount,
            };
            if !holds {
                return Err(Rejection::ConditionFailed(Box::new(ConditionFailure {
                    index,
                    account: account.code.to_string(),
                    asset: asset.to_string(),
                    figure: match condition.balance {
                        BalanceFigure::Available => "available",
                        BalanceFigure::Posted => "posted",
                    }
                    .to_owned(),
                    op: condition.op.as_str().to_owned(),
                    amount: money::to_decimal(amount, scale).to_string(),
                    actual: money::to_decimal(actual, scale).to_string(),
                })));
            }
        }
        Ok(())
    }

    fn decide_define_asset(&self, c: &DefineAsset) -> Result<Event, Rejection> {
        if let Some(existing) = self.assets.get(&c.code) {
            return Err(Rejection::DuplicateAsset {
                asset: c.code.to_string(),
                scale: existing.get(),
            });
        }
        Ok(Event::AssetDefined(AssetDefined {
            asset: c.code.clone(),
            scale: c.scale,
        }))
    }

    fn decide_open_account(&self, c: &OpenAccount) -> Result<Event, Rejection> {
        if self.account_ids.contains_key(&c.code) || self.accounts.contains_key(&c.id) {
            return Err(Rejection::DuplicateAccount {
                account: c.code.to_string(),
            });
        }
        Ok(Event::AccountOpened(AccountOpened {
            account_id: c.id,
            code: c.code.clone(),
            allow_negative: c.allow_negative,
            metadata: c.metadata.clone(),
        }))
    }

    fn decide_post_transaction(&self, c: &PostTransaction) -> Result<Event, Rejection> {
        if c.postings.is_empty() || c.postings.len() > POSTINGS_MAX {
            return Err(Rejection::validation(format!(
                "a transaction has 1 to {POSTINGS_MAX} postings; this one has {}",
                c.postings.len()
            )));
        }
        if c.kind == TransactionKind::Reversal {
            return Err(Rejection::validation(
                "a reversal is made by reversing a transaction",
            ));
        }
        if c.kind == TransactionKind::Transfer && c.postings.len() != 1 {
            return Err(Rejection::validation("a transfer has exactly one posting"));
        }
        self.check_guards(&c.guards)?;
        let resolved = c
            .postings
            .iter()
            .map(|p| self.resolve_posting(p))
            .collect::<Result<Vec<_>, _>>()?;
        let event = Event::TransactionPosted(TransactionPosted {
            transaction_id: c.id,
            kind: c.kind,
            postings: resolved.iter().map(Resolved::to_posting).collect(),
            metadata: c.metadata.clone(),
            pending: c.pending.is_some(),
            expires_at: c.pending.and_then(|terms| terms.expires_at),
            reverses: None,
            forced: false,
        });
        self.check_event(&event)?;
        Ok(event)
    }

    fn decide_trade(&self, c: &ExecuteTrade) -> Result<Event, Rejection> {
        if c.fees.len() > FEES_MAX {
            return Err(Rejection::validation(format!(
                "a trade has at most {FEES_MAX} fees; this one has {}",
                c.fees.len()
            )));
        }
        self.check_guards(&c.guards)?;
        let buyer = self.resolve_account(&c.buyer)?;
        let seller = self.resolve_account(&c.seller)?;
        if buyer.id == seller.id {
            return Err(Rejection::validation(
                "buyer and seller must be different accounts",
            ));
        }
        if c.instrument == c.currency {
            return Err(Rejection::validation(
                "instrument and currency must be different assets",
            ));
        }
        let (instrument, instrument_scale) = self.resolve_asset(&c.instrument)?;
        let (currency, currency_scale) = self.resolve_asset(&c.currency)?;
        let quantity_units = amount_units(c.quantity, instrument, instrument_scale)?;
        let price = c.price.get();
        if price.normalize().scale() > PRICE_SCALE_MAX {
            return Err(Rejection::validation(format!(
                "price {price} has more than {PRICE_SCALE_MAX} decimal places"
            )));
        }
        let notional_units =
            money::exact_product(quantity_units, instrument_scale, price, currency_scale)
                .map_err(|e| match e {
                    UnitsError::Precision => Rejection::AmountPrecision {
                        message: format!(
                            "notional {} × {price} is not exact at the {currency_scale} decimal places of {currency}; it is never rounded",
                            c.quantity,
                            currency_scale = currency_scale.get()
                        ),
                    },
                    UnitsError::Overflow => Rejection::BalanceOverflow {
                        message: format!(
                            "notional {} × {price} is beyond the range of the balance type",
                            c.quantity
                        ),
                    },
                })?;
        let mut resolved = vec![
            Resolved {
                source: seller,
                destination: buyer,
                asset: instrument,
                scale: instrument_scale,
                units: quantity_units,
            },
            Resolved {
                source: buyer,
                destination: seller,
                asset: currency,
                scale: currency_scale,
                units: notional_units,
            },
        ];
        for fee in &c.fees {
            let fee_asset = fee.asset.as_ref().unwrap_or(&c.currency);
            resolved.push(self.resolve_posting_parts(
                &fee.payer,
                &fee.account,
                fee_asset,
                fee.amount,
            )?);
        }
        let postings: Vec<Posting> = resolved.iter().map(Resolved::to_posting).collect();
        let fees = postings[2..]
            .iter()
            .map(|p| Fee {
                payer: p.source.clone(),
                account: p.destination.clone(),
                asset: p.asset.clone(),
                amount: p.amount,
            })
            .collect();
        let event = Event::TradeExecuted(TradeExecuted {
            trade_id: c.id,
            buyer: buyer.code.clone(),
            seller: seller.code.clone(),
            instrument: instrument.clone(),
            quantity: money::to_decimal(quantity_units, instrument_scale),
            price: price.normalize(),
            currency: currency.clone(),
            notional: money::to_decimal(notional_units, currency_scale),
            fees,
            postings,
            metadata: c.metadata.clone(),
            pending: c.pending.is_some(),
            expires_at: c.pending.and_then(|terms| terms.expires_at),
        });
        self.check_event(&event)?;
        Ok(event)
    }

    fn resolve_account(&self, account: &AccountRef) -> Result<&Account, Rejection> {
        let found = match account {
            AccountRef::Id(id) => self.accounts.get(id),
            AccountRef::Code(code) => self.account_by_code(code),
        };
        found.ok_or_else(|| Rejection::AccountNotFound {
            account: account.to_string(),
        })
    }

    fn resolve_asset<'a>(&'a self, asset: &AssetCode) -> Result<(&'a AssetCode, Scale), Rejection> {
        self.assets
            .get_key_value(asset)
            .map(|(a, s)| (a, *s))
            .ok_or_else(|| Rejection::AssetNotFound {
                asset: asset.to_string(),
            })
    }

    fn resolve_posting(&self, p: &PostingInstruction) -> Result<Resolved<'_>, Rejection> {
        self.resolve_posting_parts(&p.source, &p.destination, &p.asset, p.amount)
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
        })
    }

    // ---------------------------------------------------------------- apply

    /// Applies an event. It checks everything before it changes anything, so a failed apply leaves
    /// the state as it was. Returns the legs the event's postings put on accounts, in order.
    pub fn apply(&mut self, event: &Event) -> Result<Vec<Leg>, ApplyError> {
        let position = self.head + 1;
        let legs = match event {
            Event::AssetDefined(e) => {
                if self.assets.contains_key(&e.asset) {
                    return Err(ApplyError(format!("asset {} defined twice", e.asset)));
                }
                self.record(Undo::AssetDefined(e.asset.clone()));
                self.assets.insert(e.asset.clone(), e.scale);
                Vec::new()
            }
            Event::AccountOpened(e) => {
                self.restore_account(
                    e.account_id,
                    e.code.clone(),
                    e.allow_negative,
                    AccountStatus::Open,
                    position,
                )?;
                self.record(Undo::Account(e.account_id, None));
                Vec::new()
            }
            Event::TransactionPosted(_)
            | Event::TradeExecuted(_)
            | Event::PendingPosted(_)
            | Event::PendingVoided(_)
            | Event::PendingExpired(_) => {
                // Everything is checked before anything changes.
                let hold_change = self.hold_change(event)?;
                let reverses = self.reversal_of(event)?;
                let legs = self.apply_steps(event, position)?;
                self.change_hold(hold_change);
                if let (Some(original), Some(reversal)) = (reverses, event.transaction_id()) {
                    self.record_reversal(original, reversal);
                }
                legs
            }
            Event::AccountStatusChanged(e) => {
                let id = self.known_account(&e.account)?.id;
                self.change_account(id, position, |account| account.status = e.status);
                Vec::new()
            }
            Event::AccountLimitsSet(e) => {
                let id = self.known_account(&e.account)?.id;
                let scale = self
                    .asset_scale(&e.asset)
                    .ok_or_else(|| ApplyError(format!("limits in undefined asset {}", e.asset)))?;
                let units = |bound: Option<rust_decimal::Decimal>| {
                    bound
                        .map(|b| money::to_units(b, scale))
                        .transpose()
                        .map_err(|_| ApplyError(format!("limit does not fit {}", e.asset)))
                };
                let limits = Limits {
                    min_units: units(e.min_balance)?,
                    max_units: units(e.max_balance)?,
                };
                self.change_account(id, position, |account| account.set_limits(&e.asset, limits));
                Vec::new()
            }
        };
        self.record(Undo::Head(self.head));
        self.head = position;
        Ok(legs)
    }

    /// Changes an account (journalled) and makes `position` its version.
    fn change_account(&mut self, id: AccountId, position: i64, change: impl FnOnce(&mut Account)) {
        let Some(account) = self.accounts.get_mut(&id) else {
            return;
        };
        if let Some(journal) = &mut self.journal {
            journal.push(Undo::Account(id, Some(account.clone())));
        }
        change(account);
        account.version = position;
    }

    fn record(&mut self, undo: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.push(undo);
        }
    }

    /// Opens a group of events that `roll_back_group` can take back whole: how an atomic batch
    /// is abandoned when one of its commands is refused.
    pub fn begin_group(&mut self) {
        self.journal = Some(Vec::new());
    }

    /// Keeps what the group applied.
    pub fn end_group(&mut self) {
        self.journal = None;
    }

    /// Restores the state to what it was at `begin_group`.
    pub fn roll_back_group(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::AssetDefined(asset) => {
                    self.assets.remove(&asset);
                }
                Undo::Account(id, Some(before)) => {
                    self.accounts.insert(id, before);
                }
                Undo::Account(id, None) => {
                    if let Some(account) = self.accounts.remove(&id) {
                        self.account_ids.remove(&account.code);
                    }
                }
                Undo::Hold(id, before) => self.undo_hold(id, before),
                Undo::Settled(id) => self.undo_settled(id),
                Undo::Reversed(id) => {
                    self.reversed.remove(&id);
                }
                Undo::Head(head) => self.head = head,
            }
        }
    }

    /// Performs an event's steps: the accounts' figures change, and the steps that move money
    /// become the legs the postings history records.
    fn apply_steps(&mut self, event: &Event, position: i64) -> Result<Vec<Leg>, ApplyError> {
        let steps = self.steps_of(event)?;
        let walked = self.walk(&steps).map_err(|index| {
            ApplyError(format!(
                "step {index} leaves the balance type or releases more than was reserved"
            ))
        })?;
        // Debits equal credits per asset, posted and pending: true by construction, asserted
        // because money depends on it.
        let mut net: Vec<(&AssetCode, Figures)> = Vec::new();
        for step in &steps {
            let slot = match net.iter().position(|(a, _)| *a == step.asset) {
                Some(slot) => slot,
                None => {
                    net.push((step.asset, Figures::default()));
                    net.len() - 1
                }
            };
            let sums = &mut net[slot].1;
            sums.posted += step.delta.posted;
            sums.pending_debits += step.delta.pending_debits;
            sums.pending_credits += step.delta.pending_credits;
        }
        if let Some((asset, sums)) = net
            .iter()
            .find(|(_, s)| s.posted != 0 || s.pending_debits != s.pending_credits)
        {
            return Err(ApplyError(format!(
                "postings in {asset} do not balance: {sums:?}"
            )));
        }
        let mut legs = Vec::new();
        for (step, (_, after)) in steps.iter().zip(&walked) {
            self.change_account(step.account, position, |account| {
                account.set_figures(step.asset, *after)
            });
            if step.effect == Effect::Move {
                legs.push(Leg {
                    account_id: step.account,
                    asset: step.asset.clone(),
                    scale: step.scale,
                    units: step.delta.posted,
                    balance_after: after.posted,
                    counterparty_id: step.counterparty,
                    posting_index: u16::try_from(legs.len() / 2).unwrap_or(u16::MAX),
                });
            }
        }
        Ok(legs)
    }

    fn known_account(&self, code: &AccountCode) -> Result<&Account, ApplyError> {
        self.account_by_code(code)
            .ok_or_else(|| ApplyError(format!("posting names unknown account {code}")))
    }
}

impl Resolved<'_> {
    fn to_posting(&self) -> Posting {
        Posting {
            source: self.source.code.clone(),
            destination: self.destination.code.clone(),
            asset: self.asset.clone(),
            amount: money::to_decimal(self.units, self.scale),
        }
    }
}

/// A signed amount (a condition's) in smallest units of `asset`, refusing rather than rounding.
fn amount_units_signed(
    amount: rust_decimal::Decimal,
    asset: &AssetCode,
    scale: Scale,
) -> Result<i128, Rejection> {
    money::to_units(amount, scale).map_err(|e| match e {
        UnitsError::Precision => Rejection::AmountPrecision {
            message: format!(
                "amount {amount} has more decimal places than {asset} allows ({})",
                scale.get()
            ),
        },
        UnitsError::Overflow => Rejection::validation(format!(
            "amount {amount} {asset} is beyond the range of the balance type"
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
