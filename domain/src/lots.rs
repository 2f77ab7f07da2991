//! Lots, cost basis and realized P&L: how an account's acquisitions and disposals of an
//! instrument follow from the log. A pure function of the events, so that the projection, a
//! replay and an outside verifier compute the same figures (`docs/events.md`, "Lots").
//!
//! - **A book** is kept per account, instrument and cost currency. Its lots all have one sign:
//!   long (bought) or short (sold beyond the long lots).
//! - **A movement** is one acquisition (`quantity` > 0, `amount` is what it cost) or disposal
//!   (`quantity` < 0, `amount` is what it brought): the instrument leg of a trade, or a posting
//!   of a transaction that states a cost (`movements_of`).
//! - **Fees** paid by the buyer in the trade currency are part of the buyer's cost; fees paid by
//!   the seller in the trade currency are taken off the seller's proceeds. Other fees (in another
//!   asset, or paid by a third account) are not in the lots.
//! - **Closing.** A movement against the book's sign closes lots, by the book's method at that
//!   moment; what is left of it opens a lot of its own sign (a short sale beyond the long lots, or
//!   a buy beyond the short lots).
//! - **Amounts split by quantity.** When a movement or a lot is split, each part's amount is the
//!   whole amount × the part's quantity ÷ the whole quantity, rounded half to even at the
//!   currency's scale, and the last part takes what is left: amounts always add up exactly.
//! - **A trade that does not settle in full** (voided, failed or expired while pending) keeps
//!   only what its partial settlements posted before (`revise`); a reversed transaction or trade
//!   keeps nothing. Either way its books are computed again from their movements, in log order,
//!   as if the rest had never happened.

use std::cmp::Ordering;

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::event::{Event, LotPick, Posting, TradeExecuted};
use crate::values::{AccountCode, AssetCode, BookingMethod, Scale, TransactionId};

/// One acquisition or disposal in a book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The lot it opens, if it opens one: `<transaction id>/<posting index>`.
    pub lot_id: String,
    pub transaction_id: TransactionId,
    /// The position of the event that made it.
    pub position: i64,
    /// Its trade date: the date (UTC) of the event's effective time.
    pub date: NaiveDate,
    /// Positive for an acquisition, negative for a disposal, in units of the instrument.
    pub quantity: Decimal,
    /// What an acquisition cost, or what a disposal brought, in the currency (≥ 0 for an
    /// acquisition; a disposal's fees may take it below zero).
    pub amount: Decimal,
    /// The lots a sale names (under `specific`), in the order named.
    pub picks: Vec<LotPick>,
}

/// Where a movement belongs: the account, the instrument and the cost currency.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookKey {
    pub account: AccountCode,
    pub instrument: AssetCode,
    pub currency: AssetCode,
}

/// An open lot. `quantity` is negative for a short lot, whose `amount` is what its sale brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lot {
    pub lot_id: String,
    pub transaction_id: TransactionId,
    pub position: i64,
    pub date: NaiveDate,
    pub quantity: Decimal,
    pub amount: Decimal,
}

/// One lot (or part of one) closed by a movement: the realized P&L is `proceeds − cost`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub lot_id: String,
    /// The lot's trade date, and the closing movement's.
    pub opened: NaiveDate,
    pub closed: NaiveDate,
    /// The units closed (positive, long or short).
    pub quantity: Decimal,
    /// What the units cost: the lot's share for a long lot, the buy's share for a short one.
    pub cost: Decimal,
    /// What the units brought: the sale's share for a long lot, the short lot's for a short one.
    pub proceeds: Decimal,
    /// The transaction that closed it, at this position.
    pub transaction_id: TransactionId,
    pub position: i64,
}

impl Closed {
    pub fn realized(&self) -> Decimal {
        self.proceeds - self.cost
    }

    /// Days from the lot's trade date to the closing one.
    pub fn holding_days(&self) -> i64 {
        (self.closed - self.opened).num_days()
    }
}

/// A book: its method and open lots, in the order they were opened (trade date, then position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    pub method: BookingMethod,
    pub lots: Vec<Lot>,
    /// The currency's scale: amounts split at it.
    pub scale: Scale,
}

impl Book {
    pub fn new(method: BookingMethod, scale: Scale) -> Self {
        Self {
            method,
            lots: Vec::new(),
            scale,
        }
    }

    /// Open units: positive when long, negative when short.
    pub fn quantity(&self) -> Decimal {
        self.lots.iter().map(|l| l.quantity).sum()
    }

    /// What the open lots cost (long), or brought (short).
    pub fn amount(&self) -> Decimal {
        self.lots.iter().map(|l| l.amount).sum()
    }

    /// Applies one movement: the lots it closes, in the order closed. What is left of it opens
    /// a lot.
    pub fn apply(&mut self, m: &Movement) -> Vec<Closed> {
        let against = self
            .lots
            .first()
            .is_some_and(|l| l.quantity.is_sign_positive() != m.quantity.is_sign_positive());
        let quantity = m.quantity.abs();
        let picks = if against {
            self.picks(quantity, &m.picks)
        } else {
            Vec::new()
        };
        let taken: Decimal = picks.iter().map(|(_, take)| take).sum();
        let lot_amounts = self.lot_amounts(&picks, taken);
        // The movement's amount splits over the closed parts and what it opens.
        let mut parts: Vec<Decimal> = picks.iter().map(|(_, take)| *take).collect();
        let left = quantity - taken;
        if !left.is_zero() {
            parts.push(left);
        }
        let movement_amounts = split(m.amount, parts.into_iter(), quantity, self.scale);
        let mut closed = Vec::with_capacity(picks.len());
        for ((&(index, take), lot_amount), part_amount) in
            picks.iter().zip(&lot_amounts).zip(&movement_amounts)
        {
            let lot = &mut self.lots[index];
            let (cost, proceeds) = if lot.quantity.is_sign_positive() {
                (*lot_amount, *part_amount)
            } else {
                (*part_amount, *lot_amount)
            };
            closed.push(Closed {
                lot_id: lot.lot_id.clone(),
                opened: lot.date,
                closed: m.date,
                quantity: take,
                cost,
                proceeds,
                transaction_id: m.transaction_id,
                position: m.position,
            });
            lot.quantity -= take * sign(lot.quantity);
            lot.amount -= lot_amount;
        }
        if self.method == BookingMethod::Average && !picks.is_empty() {
            self.restate_at_average();
        }
        self.lots.retain(|l| !l.quantity.is_zero());
        if !left.is_zero() {
            let amount = movement_amounts.last().copied().unwrap_or(m.amount);
            self.open(m, left * sign(m.quantity), amount);
        }
        closed
    }

    /// What each pick takes from its lot's amount: its share of the lot, or under `average` its
    /// share of the whole book's amount × taken ÷ open quantity.
    fn lot_amounts(&self, picks: &[(usize, Decimal)], taken: Decimal) -> Vec<Decimal> {
        if self.method == BookingMethod::Average {
            let open = self.quantity().abs();
            let total = share(self.amount(), taken, open, self.scale);
            return split(
                total,
                picks.iter().map(|(_, take)| *take),
                taken,
                self.scale,
            );
        }
        picks
            .iter()
            .map(|&(index, take)| {
                let lot = &self.lots[index];
                share(lot.amount, take, lot.quantity.abs(), self.scale)
            })
            .collect()
    }

    /// Under `average`, after a closing: the open lots share what is left of the book's amount
    /// by quantity, so every lot carries the average unit amount.
    fn restate_at_average(&mut self) {
        let open: Vec<Decimal> = self.lots.iter().map(|l| l.quantity.abs()).collect();
        let total_open: Decimal = open.iter().sum();
        let restated = split(self.amount(), open.into_iter(), total_open, self.scale);
        for (lot, amount) in self.lots.iter_mut().zip(restated) {
            lot.amount = amount;
        }
    }

    fn open(&mut self, m: &Movement, quantity: Decimal, amount: Decimal) {
        let lot = Lot {
            lot_id: m.lot_id.clone(),
            transaction_id: m.transaction_id,
            position: m.position,
            date: m.date,
            quantity,
            amount,
        };
        let at = self
            .lots
            .partition_point(|l| (l.date, l.position) <= (lot.date, lot.position));
        self.lots.insert(at, lot);
    }

    /// Which lots a closing of `quantity` units takes, and how much of each, by the method.
    /// Under `specific`, the lots the sale names, each up to what is open of it; whatever they
    /// do not cover (only when a reversed or failed trade took a named lot away after the sale)
    /// closes first in, first out.
    fn picks(&self, quantity: Decimal, named: &[LotPick]) -> Vec<(usize, Decimal)> {
        let mut order: Vec<usize> = (0..self.lots.len()).collect();
        match self.method {
            BookingMethod::Fifo | BookingMethod::Average | BookingMethod::Specific => {}
            BookingMethod::Lifo => order.reverse(),
            // Highest cost first for long lots; in mirror, lowest proceeds first for short ones:
            // either way the closing realizes the least.
            BookingMethod::Hifo if self.quantity().is_sign_negative() => {
                order.sort_by(|&a, &b| self.by_unit_amount(a, b).then(a.cmp(&b)))
            }
            BookingMethod::Hifo => {
                order.sort_by(|&a, &b| self.by_unit_amount(b, a).then(a.cmp(&b)))
            }
        }
        let mut open: Vec<Decimal> = self.lots.iter().map(|l| l.quantity.abs()).collect();
        let mut left = quantity;
        let mut picks = Vec::new();
        let mut take_from = |index: usize, most: Decimal, left: &mut Decimal| {
            let take = open[index].min(most).min(*left);
            if !take.is_zero() {
                picks.push((index, take));
                open[index] -= take;
                *left -= take;
            }
        };
        if self.method == BookingMethod::Specific {
            for pick in named {
                if let Some(index) = self.lots.iter().position(|l| l.lot_id == pick.lot_id) {
                    take_from(index, pick.quantity, &mut left);
                }
            }
        }
        for index in order {
            take_from(index, Decimal::MAX, &mut left);
        }
        merge_picks(picks)
    }

    /// Lots by unit amount (cost per unit for long lots, proceeds per unit for short ones).
    /// Compared without dividing: a/b against
    /// c/d as a·d against c·b (at most 28 significant digits each way; beyond, by division).
    fn by_unit_amount(&self, a: usize, b: usize) -> Ordering {
        let (a_lot, b_lot) = (&self.lots[a], &self.lots[b]);
        let products = a_lot
            .amount
            .checked_mul(b_lot.quantity.abs())
            .zip(b_lot.amount.checked_mul(a_lot.quantity.abs()));
        let unit = |lot: &Lot| {
            lot.amount
                .checked_div(lot.quantity.abs())
                .unwrap_or_default()
        };
        match products {
            Some((left, right)) => left.cmp(&right),
            None => unit(a_lot).cmp(&unit(b_lot)),
        }
    }
}

/// Picks of one lot taken twice (a named lot, then first in first out) as one.
fn merge_picks(picks: Vec<(usize, Decimal)>) -> Vec<(usize, Decimal)> {
    let mut merged: Vec<(usize, Decimal)> = Vec::with_capacity(picks.len());
    for (index, take) in picks {
        match merged.iter_mut().find(|(i, _)| *i == index) {
            Some((_, total)) => *total += take,
            None => merged.push((index, take)),
        }
    }
    merged
}

/// 1 or −1: the side of a quantity.
fn sign(quantity: Decimal) -> Decimal {
    if quantity.is_sign_negative() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}

/// `whole × part ÷ of`, rounded half to even at `scale`. The product is exact up to 28
/// significant digits; beyond that (amounts far past any real book) it is taken as
/// `whole ÷ of × part`, which never overflows since `part ≤ of`.
pub fn share(whole: Decimal, part: Decimal, of: Decimal, scale: Scale) -> Decimal {
    if part == of || of.is_zero() {
        return whole;
    }
    let exact = whole.checked_mul(part).and_then(|p| p.checked_div(of));
    let value = exact.unwrap_or_else(|| whole / of * part);
    value.round_dp_with_strategy(scale.get(), RoundingStrategy::MidpointNearestEven)
}

/// `whole` split by `parts` (which add up to `of`): each part's `share`, the last taking what
/// is left, so the amounts add up to `whole` exactly.
pub fn split(
    whole: Decimal,
    parts: impl Iterator<Item = Decimal>,
    of: Decimal,
    scale: Scale,
) -> Vec<Decimal> {
    let parts: Vec<Decimal> = parts.collect();
    let mut left = whole;
    let mut amounts = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let amount = if index + 1 == parts.len() {
            left
        } else {
            share(whole, *part, of, scale)
        };
        left -= amount;
        amounts.push(amount);
    }
    amounts
}

/// The movements an event makes, with the book each belongs to: the instrument leg of a trade
/// (whether it settles now or later: lots follow the trade date), and each posting of a
/// transaction that states a cost. Reversals, settlements and everything else make none.
pub fn movements_of(event: &Event, position: i64, date: NaiveDate) -> Vec<(BookKey, Movement)> {
    match event {
        Event::TradeExecuted(trade) => trade_movements(trade, position, date),
        Event::TransactionPosted(e) if e.reverses.is_none() && !e.pending => e
            .postings
            .iter()
            .enumerate()
            .filter_map(|(index, p)| {
                let cost = p.cost.as_ref()?;
                let movement = |account: &AccountCode, sign: Decimal| {
                    let key = BookKey {
                        account: account.clone(),
                        instrument: p.asset.clone(),
                        currency: cost.currency.clone(),
                    };
                    let movement = Movement {
                        lot_id: format!("{}/{index}", e.transaction_id),
                        transaction_id: e.transaction_id,
                        position,
                        date,
                        quantity: p.amount * sign,
                        amount: cost.amount,
                        picks: Vec::new(),
                    };
                    (key, movement)
                };
                Some([
                    movement(&p.source, Decimal::NEGATIVE_ONE),
                    movement(&p.destination, Decimal::ONE),
                ])
            })
            .flatten()
            .collect(),
        _ => Vec::new(),
    }
}

/// A trade's two movements: the buyer's acquisition at the notional plus the buyer's fees in the
/// currency, the seller's disposal at the notional less the seller's fees in the currency.
pub fn trade_movements(
    trade: &TradeExecuted,
    position: i64,
    date: NaiveDate,
) -> Vec<(BookKey, Movement)> {
    let fees_of = |payer: &AccountCode| -> Decimal {
        trade
            .fees
            .iter()
            .filter(|f| &f.payer == payer && f.asset == trade.currency)
            .map(|f| f.amount)
            .sum()
    };
    let movement = |account: &AccountCode, quantity: Decimal, amount: Decimal, picks| {
        let key = BookKey {
            account: account.clone(),
            instrument: trade.instrument.clone(),
            currency: trade.currency.clone(),
        };
        let movement = Movement {
            lot_id: format!("{}/0", trade.trade_id),
            transaction_id: trade.trade_id,
            position,
            date,
            quantity,
            amount,
            picks,
        };
        (key, movement)
    };
    vec![
        movement(
            &trade.buyer,
            trade.quantity,
            trade.notional + fees_of(&trade.buyer),
            Vec::new(),
        ),
        movement(
            &trade.seller,
            -trade.quantity,
            trade.notional - fees_of(&trade.seller),
            trade.lots.clone(),
        ),
    ]
}

/// What a pending trade's movements become when its settlement ends before all of it settled
/// (voided, failed or expired): `posted` units of the instrument went from the seller to the
/// buyer in its partial settlements before (`parts`: their postings), of the `reserved` units of
/// the buyer's acquisition. Each movement keeps that many units (with its sign) and that share
/// of its amount (`share`, at `scale`, the currency's); none is kept when nothing was posted.
/// `movements` are the trade's own two (`trade_movements`), in any order.
pub fn revise(
    movements: &[(BookKey, Movement)],
    parts: &[Posting],
    scale: Scale,
) -> Vec<(BookKey, Movement)> {
    let side = |acquires: bool| {
        movements
            .iter()
            .find(|(_, m)| m.quantity.is_sign_positive() == acquires)
    };
    let (Some((buyer, bought)), Some((seller, _))) = (side(true), side(false)) else {
        return Vec::new();
    };
    let posted: Decimal = parts
        .iter()
        .filter(|p| {
            p.asset == buyer.instrument
                && p.source == seller.account
                && p.destination == buyer.account
        })
        .map(|p| p.amount)
        .sum();
    if posted.is_zero() {
        return Vec::new();
    }
    let reserved = bought.quantity;
    movements
        .iter()
        .map(|(key, m)| {
            let revised = Movement {
                quantity: posted * sign(m.quantity),
                amount: share(m.amount, posted, reserved, scale),
                ..m.clone()
            };
            (key.clone(), revised)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use std::str::FromStr;
    use uuid::Uuid;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap_or_default()
    }

    fn movement(n: u128, day: u32, quantity: &str, amount: &str) -> Movement {
        let id = TransactionId(Uuid::from_u128(n));
        Movement {
            lot_id: format!("{id}/0"),
            transaction_id: id,
            position: i64::try_from(n).unwrap_or_default(),
            date: NaiveDate::from_ymd_opt(2026, 1, day).unwrap_or_default(),
            quantity: d(quantity),
            amount: d(amount),
            picks: Vec::new(),
        }
    }

    fn book(method: BookingMethod) -> Book {
        Book::new(
            method,
            Scale::try_from(2).unwrap_or_else(|_| unreachable!()),
        )
    }

    #[test]
    fn fifo_closes_the_oldest_lot_first_and_splits_amounts_exactly() {
        let mut b = book(BookingMethod::Fifo);
        assert!(b.apply(&movement(1, 1, "3", "10.00")).is_empty());
        assert!(b.apply(&movement(2, 2, "1", "5.00")).is_empty());
        let closed = b.apply(&movement(3, 5, "-2", "9.00"));
        assert_eq!(closed.len(), 1);
        // 10.00 × 2 ÷ 3 = 6.666… → 6.67; the lot keeps 3.33.
        assert_eq!((closed[0].cost, closed[0].proceeds), (d("6.67"), d("9.00")));
        assert_eq!(closed[0].holding_days(), 4);
        assert_eq!(b.amount(), d("8.33"));
        assert_eq!(b.quantity(), d("2"));
    }

    #[test]
    fn hifo_and_lifo_pick_their_lots() {
        let mut hifo = book(BookingMethod::Hifo);
        let mut lifo = book(BookingMethod::Lifo);
        for b in [&mut hifo, &mut lifo] {
            b.apply(&movement(1, 1, "1", "30.00"));
            b.apply(&movement(2, 2, "1", "10.00"));
            b.apply(&movement(3, 3, "1", "20.00"));
        }
        assert_eq!(
            hifo.apply(&movement(4, 4, "-1", "25.00"))[0].cost,
            d("30.00")
        );
        assert_eq!(
            lifo.apply(&movement(4, 4, "-1", "25.00"))[0].cost,
            d("20.00")
        );
    }

    #[test]
    fn a_sale_beyond_the_long_lots_opens_a_short_lot_that_a_buy_covers() {
        let mut b = book(BookingMethod::Fifo);
        b.apply(&movement(1, 1, "1", "10.00"));
        let closed = b.apply(&movement(2, 2, "-3", "36.00"));
        assert_eq!(
            (closed[0].cost, closed[0].proceeds),
            (d("10.00"), d("12.00"))
        );
        assert_eq!((b.quantity(), b.amount()), (d("-2"), d("24.00")));
        let covered = b.apply(&movement(3, 3, "2", "20.00"));
        assert_eq!(
            (covered[0].cost, covered[0].proceeds),
            (d("20.00"), d("24.00"))
        );
        assert!(b.lots.is_empty());
    }

    #[test]
    fn average_closes_at_the_average_and_restates_the_rest() {
        let mut b = book(BookingMethod::Average);
        b.apply(&movement(1, 1, "1", "10.00"));
        b.apply(&movement(2, 2, "2", "40.00"));
        let closed = b.apply(&movement(3, 3, "-1", "20.00"));
        // 50.00 × 1 ÷ 3 = 16.67, taken in quantity from the first lot; the lot left carries
        // the rest, 33.33, whatever it cost itself.
        assert_eq!(closed[0].cost, d("16.67"));
        assert_eq!(b.amount(), d("33.33"));
        b.apply(&movement(4, 4, "1", "20.00"));
        // Restated on the next closing: 53.33 over 3 units.
        let closed = b.apply(&movement(5, 5, "-2", "50.00"));
        let cost: Decimal = closed.iter().map(|c| c.cost).sum();
        assert_eq!(cost, d("35.55"));
        assert_eq!(b.amount(), d("17.78"));
    }

    #[test]
    fn specific_closes_the_named_lots() {
        let mut b = book(BookingMethod::Specific);
        b.apply(&movement(1, 1, "2", "20.00"));
        b.apply(&movement(2, 2, "2", "40.00"));
        let mut sale = movement(3, 3, "-3", "90.00");
        sale.picks = vec![
            LotPick {
                lot_id: b.lots[1].lot_id.clone(),
                quantity: d("2"),
            },
            LotPick {
                lot_id: b.lots[0].lot_id.clone(),
                quantity: d("1"),
            },
        ];
        let closed = b.apply(&sale);
        let costs: Vec<Decimal> = closed.iter().map(|c| c.cost).collect();
        assert_eq!(costs, vec![d("40.00"), d("10.00")]);
        assert_eq!((b.quantity(), b.amount()), (d("1"), d("10.00")));
    }

    #[test]
    fn hifo_covers_the_short_lot_with_the_lowest_proceeds_first_ties_in_order() {
        let mut b = book(BookingMethod::Hifo);
        b.apply(&movement(1, 1, "-1", "30.00"));
        b.apply(&movement(2, 2, "-1", "10.00"));
        b.apply(&movement(3, 3, "-1", "10.00"));
        let covered = b.apply(&movement(4, 4, "2", "40.00"));
        let proceeds: Vec<(Decimal, i64)> = covered
            .iter()
            .map(|c| (c.proceeds, i64::from(c.opened.day())))
            .collect();
        assert_eq!(proceeds, vec![(d("10.00"), 2), (d("10.00"), 3)]);
    }
}

/// `revise`, and shares and orders near the bound of `Decimal`.
#[cfg(test)]
mod revise_tests {
    use super::*;
    use uuid::Uuid;

    fn d(text: &str) -> Decimal {
        text.parse().expect("a decimal")
    }

    fn key(account: &str) -> BookKey {
        BookKey {
            account: account.parse().expect("a code"),
            instrument: "AAPL".parse().expect("an asset"),
            currency: "USD".parse().expect("an asset"),
        }
    }

    fn movement(quantity: &str, amount: &str) -> Movement {
        Movement {
            lot_id: "t/0".to_owned(),
            transaction_id: TransactionId(Uuid::nil()),
            position: 7,
            date: NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date"),
            quantity: d(quantity),
            amount: d(amount),
            picks: Vec::new(),
        }
    }

    fn usd() -> Scale {
        Scale::try_from(2).expect("a scale")
    }

    fn part(source: &str, destination: &str, asset: &str, amount: &str) -> Posting {
        Posting {
            source: source.parse().expect("a code"),
            destination: destination.parse().expect("a code"),
            asset: asset.parse().expect("an asset"),
            amount: d(amount),
            cost: None,
        }
    }

    fn trade() -> Vec<(BookKey, Movement)> {
        vec![
            (key("alice"), movement("10", "1000.01")),
            (key("bob"), movement("-10", "999.99")),
        ]
    }

    #[test]
    fn a_failed_trade_keeps_what_its_parts_posted_at_that_share_of_its_amounts() {
        // 3 of 10 units went from bob to alice before the rest failed; the cash and a fee in the
        // instrument (alice to a broker) do not count.
        let parts = [
            part("bob", "alice", "AAPL", "1"),
            part("alice", "bob", "USD", "300.00"),
            part("bob", "alice", "AAPL", "2"),
            part("alice", "broker", "AAPL", "1"),
        ];
        let revised = revise(&trade(), &parts, usd());
        assert_eq!(revised.len(), 2);
        assert_eq!(revised[0].1.quantity, d("3"));
        // 1000.01 × 3 ÷ 10 = 300.003 → 300.00; 999.99 × 3 ÷ 10 = 299.997 → 300.00.
        assert_eq!(revised[0].1.amount.to_string(), "300.00");
        assert_eq!(revised[1].1.quantity, d("-3"));
        assert_eq!(revised[1].1.amount.to_string(), "300.00");
        assert_eq!(revised[0].1.lot_id, "t/0");
        assert_eq!(revised[1].0, key("bob"));
    }

    #[test]
    fn a_trade_that_failed_before_any_part_posted_keeps_no_movement() {
        assert!(revise(&trade(), &[], usd()).is_empty());
        let cash_only = [part("alice", "bob", "USD", "10.00")];
        assert!(revise(&trade(), &cash_only, usd()).is_empty());
    }

    #[test]
    fn shares_of_amounts_near_the_bound_of_decimal_do_not_overflow() {
        let huge = Decimal::MAX;
        let two_thirds = share(huge, d("2"), d("3"), usd());
        assert!(two_thirds > Decimal::ZERO && two_thirds < huge);
        let parts = split(huge, [d("1"), d("2")].into_iter(), d("3"), usd());
        assert_eq!(parts.iter().sum::<Decimal>(), huge);
    }

    #[test]
    fn highest_cost_first_orders_lots_near_the_bound_of_decimal() {
        let mut book = Book::new(BookingMethod::Hifo, usd());
        let lot = |id: &str, quantity: &str, amount: Decimal| Movement {
            lot_id: id.to_owned(),
            quantity: d(quantity),
            amount,
            ..movement("1", "0")
        };
        book.apply(&lot("cheap", "1000000000000", Decimal::MAX / d("4")));
        book.apply(&lot("dear", "1000000000", Decimal::MAX / d("2")));
        let closed = book.apply(&lot("sale", "-1", d("1.00")));
        assert_eq!(closed[0].lot_id, "dear");
    }

    #[test]
    fn a_sale_beyond_the_long_lots_closes_them_by_fifo_and_opens_a_short_lot() {
        let mut book = Book::new(BookingMethod::Fifo, usd());
        book.apply(&Movement {
            lot_id: "a/0".to_owned(),
            ..movement("4", "40.00")
        });
        book.apply(&Movement {
            lot_id: "b/0".to_owned(),
            position: 8,
            ..movement("6", "90.00")
        });
        let closed = book.apply(&Movement {
            lot_id: "c/0".to_owned(),
            position: 9,
            ..movement("-12", "240.00")
        });
        let seen: Vec<(&str, String, String, String)> = closed
            .iter()
            .map(|c| {
                let figures = (
                    c.quantity.to_string(),
                    c.cost.to_string(),
                    c.proceeds.to_string(),
                );
                (c.lot_id.as_str(), figures.0, figures.1, figures.2)
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a/0", "4".into(), "40.00".into(), "80.00".into()),
                ("b/0", "6".into(), "90.00".into(), "120.00".into())
            ]
        );
        assert_eq!(book.lots.len(), 1);
        assert_eq!(book.lots[0].quantity, d("-2"));
        assert_eq!(book.lots[0].amount, d("40.00"));
    }
}
