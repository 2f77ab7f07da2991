//! Marks: the price of an instrument in a currency as of a time. They move no money; they are
//! decided like any command so that a mark names defined assets and is never in the future.

use super::PRICE_SCALE_MAX;
use crate::command::MarkPrice;
use crate::error::Rejection;
use crate::event::{Event, PriceMarked};
use crate::ledger::{rfc3339, LedgerState};

impl LedgerState {
    pub(super) fn decide_mark(&self, c: &MarkPrice) -> Result<Event, Rejection> {
        let (instrument, _) = self.resolve_asset(&c.instrument)?;
        let (currency, _) = self.resolve_asset(&c.currency)?;
        if instrument == currency {
            return Err(Rejection::validation(
                "instrument and currency must be different assets",
            ));
        }
        let price = c.price.get().normalize();
        if price.scale() > PRICE_SCALE_MAX {
            return Err(Rejection::validation(format!(
                "price {price} has more than {PRICE_SCALE_MAX} decimal places"
            )));
        }
        // A mark says what a price was, never what it will be.
        let latest = self.timing.recording_at;
        if c.as_of > latest {
            return Err(Rejection::validation(format!(
                "as_of {} is later than now, {}",
                rfc3339(c.as_of),
                rfc3339(latest)
            )));
        }
        Ok(Event::PriceMarked(PriceMarked {
            instrument: instrument.clone(),
            currency: currency.clone(),
            price,
            as_of: c.as_of,
            metadata: c.metadata.clone(),
        }))
    }
}
