//! Opening accounts and changing them: status (freeze, unfreeze, close) and balance bounds.

use super::named_units;
use crate::command::{
    BoundChange, ChangeAccountStatus, OpenAccount, SetAccountLimits, SetBookingMethod, StatusChange,
};
use crate::error::Rejection;
use crate::event::{
    AccountLimitsSet, AccountOpened, AccountStatusChanged, BookingMethodSet, Event,
};
use crate::ledger::LedgerState;
use crate::money;
use crate::values::AccountStatus;

impl LedgerState {
    pub(super) fn decide_open_account(&self, c: &OpenAccount) -> Result<Event, Rejection> {
        if c.code.is_reserved() {
            return Err(Rejection::ValidationError {
                message: format!(
                    "account code {:?} is reserved: /v1/accounts/{} is a route of its own",
                    c.code.as_str(),
                    c.code.as_str()
                ),
            });
        }
        if self.account_by_code(&c.code).is_some() || self.account(c.id).is_some() {
            return Err(Rejection::DuplicateAccount {
                account: c.code.to_string(),
            });
        }
        Ok(Event::AccountOpened(AccountOpened {
            account_id: c.id,
            code: c.code.clone(),
            allow_negative: c.allow_negative,
            metadata: c.metadata.clone(),
            booking_method: c.booking_method,
        }))
    }

    pub(super) fn decide_booking_method(&self, c: &SetBookingMethod) -> Result<Event, Rejection> {
        let account = self.resolve_account(&c.account)?;
        if account.status == AccountStatus::Closed {
            return Err(Rejection::AccountClosed {
                account: account.code.to_string(),
            });
        }
        Ok(Event::BookingMethodSet(BookingMethodSet {
            account: account.code.clone(),
            booking_method: c.booking_method,
            metadata: c.metadata.clone(),
        }))
    }

    pub(super) fn decide_status_change(&self, c: &ChangeAccountStatus) -> Result<Event, Rejection> {
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

    pub(super) fn decide_limits(&self, c: &SetAccountLimits) -> Result<Event, Rejection> {
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
            BoundChange::To(value) => named_units(name, value.get(), asset, scale).map(Some),
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
}
