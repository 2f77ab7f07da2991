//! The ledger's state and its two functions: `decide` (may this command happen, and as which event?)
//! and `apply` (what an event does to the state). `decide` never changes the state; `apply` is the
//! only thing that does, so replaying the log through `apply` gives the same state that the writer
//! had when it decided.

use std::collections::{BTreeMap, HashMap};

use crate::command::{
    Command, DefineAsset, ExecuteTrade, OpenAccount, PostTransaction, PostingInstruction,
    TransactionKind, FEES_MAX, POSTINGS_MAX,
};
use crate::error::{ApplyError, Rejection};
use crate::event::{
    AccountOpened, AssetDefined, Event, Fee, Posting, TradeExecuted, TransactionPosted,
};
use crate::money::{self, UnitsError};
use crate::values::{AccountCode, AccountId, AccountRef, AssetCode, PositiveDecimal, Scale};

/// The most decimal places a trade price may have.
pub const PRICE_SCALE_MAX: u32 = 18;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub code: AccountCode,
    pub allow_negative: bool,
    /// Balances in smallest units, per asset; an account holds few assets, so a small vector.
    balances: Vec<(AssetCode, i128)>,
}

impl Account {
    pub fn balance(&self, asset: &AssetCode) -> i128 {
        self.balances
            .iter()
            .find(|(a, _)| a == asset)
            .map_or(0, |(_, units)| *units)
    }

    pub fn balances(&self) -> impl Iterator<Item = (&AssetCode, i128)> {
        self.balances.iter().map(|(a, units)| (a, *units))
    }

    /// Zero balances are not kept, so that equal states are equal however they were reached.
    fn set_balance(&mut self, asset: &AssetCode, units: i128) {
        match self.balances.iter().position(|(a, _)| a == asset) {
            Some(i) if units == 0 => {
                self.balances.swap_remove(i);
            }
            Some(i) => self.balances[i].1 = units,
            None if units == 0 => {}
            None => self.balances.push((asset.clone(), units)),
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

    /// Checks conservation: the sum of balances is zero for every asset.
    pub fn check_conservation(&self) -> Result<(), ApplyError> {
        for (asset, total) in self.totals_per_asset() {
            if total != 0 {
                return Err(ApplyError(format!(
                    "balances of {asset} sum to {total} smallest units, not zero"
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
                balances: Vec::new(),
            },
        );
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
        if !self.assets.contains_key(asset) {
            return Err(ApplyError(format!("balance in undefined asset {asset}")));
        }
        let account = self
            .accounts
            .get_mut(&account_id)
            .ok_or_else(|| ApplyError(format!("balance of unknown account {account_id}")))?;
        account.set_balance(asset, units);
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
        }
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
        if c.kind == TransactionKind::Transfer && c.postings.len() != 1 {
            return Err(Rejection::validation("a transfer has exactly one posting"));
        }
        let resolved = c
            .postings
            .iter()
            .map(|p| self.resolve_posting(p))
            .collect::<Result<Vec<_>, _>>()?;
        self.check_balances(&resolved)?;
        Ok(Event::TransactionPosted(TransactionPosted {
            transaction_id: c.id,
            kind: c.kind,
            postings: resolved.iter().map(Resolved::to_posting).collect(),
            metadata: c.metadata.clone(),
        }))
    }

    fn decide_trade(&self, c: &ExecuteTrade) -> Result<Event, Rejection> {
        if c.fees.len() > FEES_MAX {
            return Err(Rejection::validation(format!(
                "a trade has at most {FEES_MAX} fees; this one has {}",
                c.fees.len()
            )));
        }
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
        self.check_balances(&resolved)?;
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
        Ok(Event::TradeExecuted(TradeExecuted {
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
        }))
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

    /// Applies the postings in order to a scratch copy of the touched balances: no balance of an
    /// account that does not allow negatives may go below zero at any step, and none may leave the
    /// balance type's range.
    fn check_balances(&self, postings: &[Resolved<'_>]) -> Result<(), Rejection> {
        // At most 2 × POSTINGS_MAX entries: a linear scan beats hashing at this size.
        let mut scratch: Vec<(AccountId, &AssetCode, i128)> =
            Vec::with_capacity(postings.len() * 2);
        let slots: Vec<(usize, usize)> = postings
            .iter()
            .map(|p| {
                (
                    scratch_slot(&mut scratch, p.source, p.asset),
                    scratch_slot(&mut scratch, p.destination, p.asset),
                )
            })
            .collect();
        for (p, (source_slot, destination_slot)) in postings.iter().zip(slots) {
            let source_balance = scratch[source_slot].2;
            let after = money::checked_sub(source_balance, p.units)
                .ok_or_else(|| overflow(p.source, p.asset))?;
            if after < 0 && !p.source.allow_negative {
                return Err(Rejection::InsufficientFunds {
                    account: p.source.code.to_string(),
                    asset: p.asset.to_string(),
                    balance: money::to_decimal(source_balance, p.scale).to_string(),
                    required: money::to_decimal(p.units, p.scale).to_string(),
                });
            }
            scratch[source_slot].2 = after;
            let destination_balance = scratch[destination_slot].2;
            scratch[destination_slot].2 = money::checked_add(destination_balance, p.units)
                .ok_or_else(|| overflow(p.destination, p.asset))?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- apply

    /// Applies an event. It checks everything before it changes anything, so a failed apply leaves
    /// the state as it was. Returns the legs the event's postings put on accounts, in order.
    pub fn apply(&mut self, event: &Event) -> Result<Vec<Leg>, ApplyError> {
        match event {
            Event::AssetDefined(e) => {
                if self.assets.contains_key(&e.asset) {
                    return Err(ApplyError(format!("asset {} defined twice", e.asset)));
                }
                self.assets.insert(e.asset.clone(), e.scale);
                Ok(Vec::new())
            }
            Event::AccountOpened(e) => {
                self.restore_account(e.account_id, e.code.clone(), e.allow_negative)?;
                Ok(Vec::new())
            }
            Event::TransactionPosted(_) | Event::TradeExecuted(_) => {
                let legs = self.legs_of(event.postings())?;
                for leg in &legs {
                    if let Some(account) = self.accounts.get_mut(&leg.account_id) {
                        account.set_balance(&leg.asset, leg.balance_after);
                    }
                }
                Ok(legs)
            }
        }
    }

    /// Reverts an event that was just applied (the last one, with the legs `apply` returned): how
    /// an atomic group of commands is abandoned when one of them is refused.
    pub fn undo(&mut self, event: &Event, legs: &[Leg]) {
        match event {
            Event::AssetDefined(e) => {
                self.assets.remove(&e.asset);
            }
            Event::AccountOpened(e) => {
                self.account_ids.remove(&e.code);
                self.accounts.remove(&e.account_id);
            }
            Event::TransactionPosted(_) | Event::TradeExecuted(_) => {
                for leg in legs.iter().rev() {
                    if let Some(account) = self.accounts.get_mut(&leg.account_id) {
                        account.set_balance(&leg.asset, leg.balance_after - leg.units);
                    }
                }
            }
        }
    }

    /// Computes the legs of postings with their running balances, without changing the state.
    fn legs_of(&self, postings: &[Posting]) -> Result<Vec<Leg>, ApplyError> {
        let mut legs: Vec<Leg> = Vec::with_capacity(postings.len() * 2);
        let mut net_per_asset: Vec<(&AssetCode, i128)> = Vec::new();
        for (index, posting) in postings.iter().enumerate() {
            let posting_index = u16::try_from(index)
                .map_err(|_| ApplyError("too many postings in one event".into()))?;
            let scale = self.asset_scale(&posting.asset).ok_or_else(|| {
                ApplyError(format!("posting in undefined asset {}", posting.asset))
            })?;
            let units = money::to_units(posting.amount, scale)
                .ok()
                .filter(|u| *u > 0)
                .ok_or_else(|| {
                    ApplyError(format!(
                        "posting amount {} is not a positive amount of {}",
                        posting.amount, posting.asset
                    ))
                })?;
            let source = self.known_account(&posting.source)?;
            let destination = self.known_account(&posting.destination)?;
            for (account, counterparty, delta) in
                [(source, destination, -units), (destination, source, units)]
            {
                let before = legs
                    .iter()
                    .rev()
                    .find(|l| l.account_id == account.id && l.asset == posting.asset)
                    .map_or_else(|| account.balance(&posting.asset), |l| l.balance_after);
                let balance_after = money::checked_add(before, delta).ok_or_else(|| {
                    ApplyError(format!(
                        "balance of {} in {} leaves the balance type",
                        account.code, posting.asset
                    ))
                })?;
                legs.push(Leg {
                    account_id: account.id,
                    asset: posting.asset.clone(),
                    scale,
                    units: delta,
                    balance_after,
                    counterparty_id: counterparty.id,
                    posting_index,
                });
                match net_per_asset.iter_mut().find(|(a, _)| *a == &posting.asset) {
                    Some((_, net)) => *net += delta,
                    None => net_per_asset.push((&posting.asset, delta)),
                }
            }
        }
        // Debits equal credits per asset: true by construction, asserted because money depends on it.
        if let Some((asset, net)) = net_per_asset.iter().find(|(_, net)| *net != 0) {
            return Err(ApplyError(format!(
                "postings in {asset} do not balance: net {net}"
            )));
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

fn amount_units(
    amount: PositiveDecimal,
    asset: &AssetCode,
    scale: Scale,
) -> Result<i128, Rejection> {
    money::to_units(amount.get(), scale).map_err(|e| match e {
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

/// The index of an (account, asset) balance in the scratch list, adding it if absent.
fn scratch_slot<'a>(
    scratch: &mut Vec<(AccountId, &'a AssetCode, i128)>,
    account: &Account,
    asset: &'a AssetCode,
) -> usize {
    match scratch
        .iter()
        .position(|(id, a, _)| *id == account.id && *a == asset)
    {
        Some(i) => i,
        None => {
            scratch.push((account.id, asset, account.balance(asset)));
            scratch.len() - 1
        }
    }
}

fn overflow(account: &Account, asset: &AssetCode) -> Rejection {
    Rejection::BalanceOverflow {
        message: format!(
            "the balance of {} in {asset} would leave the range of the balance type",
            account.code
        ),
    }
}
