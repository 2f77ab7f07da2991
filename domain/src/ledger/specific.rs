//! Sales that name their lots: an account that books by `specific` lots names, on every sale,
//! which of its open lots the sale closes. The lots themselves are a projection (`crate::lots`),
//! never kept here: the reads layer supplies the seller's open lots as known at a position (as it
//! supplies a reversal's original), and the decision accepts the named lots only if nothing
//! touched the seller after that position. So only accounts that book this way cost the writer
//! anything: one map entry each, with the position of the last event that touched it.

use super::records::Undo;
use super::state::LedgerState;
use crate::command::ExecuteTrade;
use crate::error::Rejection;
use crate::event::{Event, LotPick};
use crate::money;
use crate::values::{AccountCode, BookingMethod, Scale};

impl LedgerState {
    /// Whether `account` books by specific lots.
    pub fn books_specific_lots(&self, account: &AccountCode) -> bool {
        self.specific.accounts.contains_key(account)
    }

    /// The lots a trade's sale names, checked against the seller's open lots: none unless the
    /// seller books by specific lots; then named lots adding up to the whole quantity, each at
    /// most what is open of it, distinct, in units of the instrument.
    pub(super) fn check_lot_picks(
        &self,
        c: &ExecuteTrade,
        seller: &AccountCode,
        instrument_scale: Scale,
    ) -> Result<Vec<LotPick>, Rejection> {
        let Some(last_touched) = self.specific.accounts.get(seller) else {
            if !c.lots.is_empty() {
                return Err(Rejection::validation(format!(
                    "{seller} does not book by specific lots: a sale names lots only then"
                )));
            }
            return Ok(Vec::new());
        };
        if c.lots.is_empty() {
            return Err(Rejection::validation(format!(
                "{seller} books by specific lots: the sale names the lots it closes (lots)"
            )));
        }
        let open = c.open_lots.as_ref().ok_or_else(|| {
            Rejection::validation("the seller's open lots were not read for the named lots")
        })?;
        let known_since = (*last_touched).max(self.specific.known_after);
        if open.known_at_position < known_since {
            return Err(Rejection::LotsRaced {
                message: format!(
                    "{seller}'s lots were read at position {}, and changed at {known_since}; read them again",
                    open.known_at_position
                ),
                changed_at: known_since,
            });
        }
        let mut picks: Vec<LotPick> = Vec::with_capacity(c.lots.len());
        for pick in &c.lots {
            let quantity = money::to_units(pick.quantity.get(), instrument_scale)
                .map(|units| money::to_decimal(units, instrument_scale))
                .map_err(|_| {
                    Rejection::validation(format!(
                        "lot {} quantity {} is not at the instrument's scale",
                        pick.lot_id, pick.quantity
                    ))
                })?;
            let open_quantity = open
                .lots
                .iter()
                .find(|(id, _)| *id == pick.lot_id)
                .map(|(_, q)| *q)
                .ok_or_else(|| {
                    Rejection::validation(format!("{seller} has no open lot {}", pick.lot_id))
                })?;
            if picks.iter().any(|p| p.lot_id == pick.lot_id) || quantity > open_quantity {
                return Err(Rejection::validation(format!(
                    "lot {} has {open_quantity} open; it is named once, for at most that",
                    pick.lot_id
                )));
            }
            picks.push(LotPick {
                lot_id: pick.lot_id.clone(),
                quantity,
            });
        }
        let named: rust_decimal::Decimal = picks.iter().map(|p| p.quantity).sum();
        if named != c.quantity.get() {
            return Err(Rejection::validation(format!(
                "the named lots add up to {named}; the sale is of {}",
                c.quantity
            )));
        }
        Ok(picks)
    }

    /// Keeps the specific-lot accounts and when each last changed, after `event` at `position`.
    pub(super) fn note_specific(&mut self, event: &Event, position: i64) {
        let method = match event {
            Event::AccountOpened(e) => Some((&e.code, e.booking_method.unwrap_or_default())),
            Event::BookingMethodSet(e) => Some((&e.account, e.booking_method)),
            _ => None,
        };
        if let Some((account, method)) = method {
            let before = match method {
                BookingMethod::Specific => self.specific.accounts.insert(account.clone(), position),
                _ => self.specific.accounts.remove(account),
            };
            self.record(Undo::Specific(account.clone(), before));
        }
        if self.specific.accounts.is_empty() {
            return;
        }
        for account in event.accounts_touched() {
            if let Some(last) = self.specific.accounts.get_mut(account) {
                let before = std::mem::replace(last, position);
                self.record(Undo::Specific(account.clone(), Some(before)));
            }
        }
    }

    /// Restores an account that books by specific lots. What touched it before the restore is
    /// not known here (`restore_head` says up to where), so lots read before it race.
    pub fn restore_specific(&mut self, account: AccountCode) {
        self.specific.accounts.insert(account, 0);
    }
}
