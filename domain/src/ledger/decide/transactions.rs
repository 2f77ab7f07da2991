//! Moving money: transactions and transfers (postings as the client listed them) and trades
//! (delivery versus payment, with fees), posted at once or held as pending.

use super::{amount_units, Resolved};
use crate::command::{ExecuteTrade, PostTransaction, FEES_MAX, POSTINGS_MAX};
use crate::error::Rejection;
use crate::event::{Event, Fee, Posting, TradeExecuted, TransactionPosted};
use crate::ledger::{AccountView, LedgerState};
use crate::money::{self, UnitsError};
use crate::values::{AssetCode, Scale, TransactionKind};
use chrono::{DateTime, Utc};

/// The most decimal places a trade price may have.
pub const PRICE_SCALE_MAX: u32 = 18;
/// How many days after its trade date a trade may settle at most.
pub const SETTLEMENT_DAYS_MAX: i64 = 366;

impl LedgerState {
    pub(super) fn decide_post_transaction(&self, c: &PostTransaction) -> Result<Event, Rejection> {
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
        self.check_effective(c.effective_at)?;
        self.check_guards(&c.guards)?;
        self.check_costs(c)?;
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
            effective_at: c.effective_at,
        });
        self.check_event(&event)?;
        Ok(event)
    }

    pub(super) fn decide_trade(&self, c: &ExecuteTrade) -> Result<Event, Rejection> {
        let traded_at = self.check_effective(c.effective_at)?;
        let settles_at = self.settles_at(c, traded_at)?;
        let (buyer, seller) = self.trade_parties(c)?;
        let (instrument, instrument_scale) = self.resolve_asset(&c.instrument)?;
        let (currency, currency_scale) = self.resolve_asset(&c.currency)?;
        let quantity_units = amount_units(c.quantity, instrument, instrument_scale)?;
        let price = c.price.get();
        if price.normalize().scale() > PRICE_SCALE_MAX {
            return Err(Rejection::validation(format!(
                "price {price} has more than {PRICE_SCALE_MAX} decimal places"
            )));
        }
        let notional_units = notional_units(
            c,
            quantity_units,
            instrument_scale,
            currency,
            currency_scale,
        )?;
        let mut resolved = vec![
            Resolved {
                source: seller,
                destination: buyer,
                asset: instrument,
                scale: instrument_scale,
                units: quantity_units,
                cost: None,
            },
            Resolved {
                source: buyer,
                destination: seller,
                asset: currency,
                scale: currency_scale,
                units: notional_units,
                cost: None,
            },
        ];
        self.resolve_fees(c, &mut resolved)?;
        let lots = self.check_lot_picks(c, &seller.code, instrument_scale)?;
        let postings: Vec<Posting> = resolved.iter().map(Resolved::to_posting).collect();
        let fees = fees_of(&postings[2..]);
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
            pending: c.pending.is_some() || settles_at.is_some(),
            expires_at: c.pending.and_then(|terms| terms.expires_at),
            effective_at: c.effective_at,
            settlement_date: c.settlement_date,
            settles_at,
            lots,
        });
        self.check_event(&event)?;
        Ok(event)
    }

    /// A cost is stated on postings that move at once, never out of an account that books by
    /// specific lots (its disposals are sales that name them).
    fn check_costs(&self, c: &PostTransaction) -> Result<(), Rejection> {
        for p in c.postings.iter().filter(|p| p.cost.is_some()) {
            if c.pending.is_some() {
                return Err(Rejection::validation(
                    "a cost is stated on postings that move at once, not on pending ones",
                ));
            }
            let source = self.resolve_account(&p.source)?;
            if self.books_specific_lots(&source.code) {
                return Err(Rejection::validation(format!(
                    "{} books by specific lots: it disposes by sales that name them, not by a posting with a cost",
                    source.code
                )));
            }
        }
        Ok(())
    }

    /// When the ledger is to settle a trade by itself: its settlement date at the settlement
    /// time, when that date is after the trade date and the time is still ahead. Otherwise
    /// (no date, the trade date, or a backdated trade whose settlement has passed) the trade
    /// settles at once.
    fn settles_at(
        &self,
        c: &ExecuteTrade,
        traded_at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Rejection> {
        let Some(date) = c.settlement_date else {
            return Ok(None);
        };
        let trade_date = traded_at.date_naive();
        if date < trade_date {
            return Err(Rejection::validation(format!(
                "settlement_date {date} is before the trade date {trade_date}"
            )));
        }
        if (date - trade_date).num_days() > SETTLEMENT_DAYS_MAX {
            return Err(Rejection::validation(format!(
                "settlement_date {date} is more than {SETTLEMENT_DAYS_MAX} days after the trade date {trade_date}"
            )));
        }
        if c.pending.is_some() {
            return Err(Rejection::validation(
                "a trade with a settlement date settles by itself: pending is for two-phase trades",
            ));
        }
        let at = date.and_time(self.timing.settlement_time).and_utc();
        Ok((date > trade_date && at > self.timing.recording_at).then_some(at))
    }

    /// What a trade must satisfy before its amounts are looked at: at most `FEES_MAX` fees, its
    /// guards, and two different accounts exchanging two different assets. Returns the buyer and
    /// the seller.
    fn trade_parties(
        &self,
        c: &ExecuteTrade,
    ) -> Result<(AccountView<'_>, AccountView<'_>), Rejection> {
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
        Ok((buyer, seller))
    }

    /// Appends the postings of a trade's fees, each in its own asset or else the trade's currency.
    fn resolve_fees<'a>(
        &'a self,
        c: &ExecuteTrade,
        resolved: &mut Vec<Resolved<'a>>,
    ) -> Result<(), Rejection> {
        for fee in &c.fees {
            let fee_asset = fee.asset.as_ref().unwrap_or(&c.currency);
            let fee =
                self.resolve_posting_parts(&fee.payer, &fee.account, fee_asset, fee.amount)?;
            // The instrument the seller delivers to the buyer is the trade's first posting; a
            // fee that moved the same way would be indistinguishable from it when the trade
            // settles in part, and the lots count what was delivered.
            let trade_leg = &resolved[0];
            if fee.asset == trade_leg.asset
                && fee.source.id == trade_leg.source.id
                && fee.destination.id == trade_leg.destination.id
            {
                return Err(Rejection::validation(
                    "a fee in the instrument from the seller to the buyer is part of the quantity: trade more instead",
                ));
            }
            resolved.push(fee);
        }
        Ok(())
    }
}

/// `quantity × price` in smallest units of the currency: exact, or refused; never rounded.
fn notional_units(
    c: &ExecuteTrade,
    quantity_units: i128,
    instrument_scale: Scale,
    currency: &AssetCode,
    currency_scale: Scale,
) -> Result<i128, Rejection> {
    let price = c.price.get();
    money::exact_product(quantity_units, instrument_scale, price, currency_scale).map_err(|e| {
        match e {
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
        }
    })
}

/// The fees as the trade event records them, from their postings.
fn fees_of(postings: &[Posting]) -> Vec<Fee> {
    postings
        .iter()
        .map(|p| Fee {
            payer: p.source.clone(),
            account: p.destination.clone(),
            asset: p.asset.clone(),
            amount: p.amount,
        })
        .collect()
}
