//! Lots in the Beancount export: which postings move units at cost, and how Beancount is to book
//! each of them (the module documentation of `beancount` says what the lines mean).
//!
//! Beancount books lots itself, entry by entry in date order (then file order), and refuses a
//! reduction it cannot match. So the export decides the form of every posting at cost by
//! replaying the books as Beancount will see them: `domain::lots::Book`s fed the movements in
//! Beancount's order (by day, then position), at the days Beancount dates them (a settlement
//! on its post's day, not the trade date), with what a reversal puts back, and beside them the
//! units each account holds without a cost (transfers that state none), which Beancount keeps
//! as a position of their own that makes any posting at cost the other way a reduction. Where
//! that order is the log's (no backdated entry, no trade that settles later, no reversal of a
//! transaction whose lots were taken since), the books replayed here are the ledger's own.
//!
//! The survey collects what moves at cost (`Bookings::record`), then, when anything does, the
//! units of those instruments moved without a cost (`Bookings::flow`, a reading of its own);
//! `Bookings::plan` replays them. Memory is one step per posting at cost and per posting without
//! a cost of a traded instrument, plus the open lots.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use domain::event::{LotPick, PendingPosted, TradeExecuted, TransactionPosted};
use domain::lots::{self, Book, BookKey, Lot, Movement};
use domain::{AccountCode, AssetCode, BookingMethod, Event, Scale, TransactionId};
use rust_decimal::Decimal;

use crate::event_store::StoredEvent;
use crate::{Error, Result};

/// One line of a leg: how Beancount is to book part of a posting's units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    /// Reduces the lots held at cost in the currency, picked by Beancount's booking method:
    /// `{CUR}`.
    Reduce { units: Decimal },
    /// Reduces one lot, named by its label (`{"label"}`), where Beancount's method would pick
    /// other lots than the ledger's.
    ReduceLot { units: Decimal, label: String },
    /// Units held at a stated total cost: `{{total CUR[, date][, "label"]}}`. A lot opened (or
    /// put back by a reversal, with its date), or a reduction on an `average` account.
    AtCost {
        units: Decimal,
        total: Decimal,
        date: Option<NaiveDate>,
        label: Option<String>,
    },
    /// Units that Beancount cannot hold at cost (the account holds the instrument the other
    /// way without a cost, or in another currency): no lot, weighed at `@@ total CUR`.
    AtTotalPrice { units: Decimal, total: Decimal },
}

impl Part {
    /// The weight Beancount gives the part, when the export states it (not for reductions,
    /// whose cost Beancount takes from its lots).
    fn stated_weight(&self) -> Option<Decimal> {
        match self {
            Part::Reduce { .. } | Part::ReduceLot { .. } => None,
            Part::AtCost { units, total, .. } | Part::AtTotalPrice { units, total } => {
                Some(if units.is_sign_negative() {
                    -*total
                } else {
                    *total
                })
            }
        }
    }
}

/// The realized P&L posting of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Income {
    /// Without an amount: Beancount computes it from the lots it reduced.
    Computed,
    /// Stated: every weight of the leg is stated, so the export knows it exactly.
    Stated(Decimal),
}

/// One side (source or destination) of a posting that moves units at cost.
#[derive(Debug, Clone)]
pub(super) struct Leg {
    /// The posting's index in the event, and which side.
    pub index: usize,
    pub destination: bool,
    pub account: AccountCode,
    pub instrument: AssetCode,
    pub currency: AssetCode,
    /// A trade's price, for `@ price`.
    pub price: Option<Decimal>,
    pub parts: Vec<Part>,
    /// What the leg's weight and its income add up to: what an acquisition cost (positive) or
    /// what a disposal brought (negative), in the currency.
    pub target: Decimal,
    pub income: Option<Income>,
    /// Written in a transaction of its own (Beancount computes one missing amount per currency
    /// and transaction).
    pub split: bool,
}

/// What the export writes of lots: the legs of each entry by position, the income accounts and
/// the accounts that hold lots.
#[derive(Debug, Default)]
pub(super) struct Plans {
    pub legs: HashMap<i64, Vec<Leg>>,
    /// Per (account, instrument): the first day it realizes and the currencies.
    pub income: BTreeMap<(AccountCode, AssetCode), (NaiveDate, BTreeSet<AssetCode>)>,
    /// Accounts whose `open` names a booking method: those with legs, or that stated one.
    pub methods: HashMap<AccountCode, BookingMethod>,
    /// The first day of a leg: the export's own accounts are opened then.
    pub first_date: Option<NaiveDate>,
}

/// Beancount's name of a booking method: it has no working `AVERAGE`, so an `average` account
/// is `NONE` (it never reduces, and the export states each reduction's cost).
pub(super) fn beancount_method(method: BookingMethod) -> &'static str {
    match method {
        BookingMethod::Fifo => "FIFO",
        BookingMethod::Lifo => "LIFO",
        BookingMethod::Hifo => "HIFO",
        BookingMethod::Average => "NONE",
        // Every reduction names its lots by label, which STRICT requires to be unambiguous.
        BookingMethod::Specific => "STRICT",
    }
}

/// One side of a posting at cost, as the survey found it.
#[derive(Debug, Clone)]
struct Side {
    index: usize,
    destination: bool,
    key: BookKey,
    /// Positive for an acquisition, negative for a disposal.
    quantity: Decimal,
    /// What it cost or brought.
    amount: Decimal,
    /// The lot it opens, if it opens one (unique in its book).
    label: String,
    price: Option<Decimal>,
    /// The lots a seller that books by specific lots named.
    picks: Vec<LotPick>,
}

#[derive(Debug)]
enum Kind {
    Method(AccountCode, BookingMethod),
    Sides(TransactionId, Vec<Side>),
    /// A reversal, at the postings (by index, with their units) that its original moved at
    /// cost.
    Reversal(TransactionId, Vec<(usize, Decimal)>),
    /// Units of an instrument moved without a cost.
    Flow(AccountCode, AssetCode, Decimal),
}

#[derive(Debug)]
struct Step {
    date: NaiveDate,
    position: i64,
    kind: Kind,
}

/// A trade that settles later: what is left of it to settle.
#[derive(Debug)]
struct Unsettled {
    trade: TradeExecuted,
    index: usize,
    quantity: Decimal,
    bought: Decimal,
    sold: Decimal,
}

/// What the survey collects.
#[derive(Debug, Default)]
pub(super) struct Bookings {
    steps: Vec<Step>,
    /// Each account's method at its opening: Beancount's, for good.
    opened: HashMap<AccountCode, BookingMethod>,
    stated: HashSet<AccountCode>,
    unsettled: HashMap<TransactionId, Unsettled>,
    /// Per position, the postings it moves at cost (by index).
    at_cost: HashMap<i64, Vec<usize>>,
    /// Per transaction, the postings it moved at cost, for its reversal.
    originals: HashMap<TransactionId, BTreeSet<usize>>,
    instruments: HashSet<AssetCode>,
}

impl Bookings {
    /// Whether anything moves at cost (and so the units moved without one matter).
    pub(super) fn any(&self) -> bool {
        !self.at_cost.is_empty()
    }

    /// First reading: what moves at cost, in log order.
    pub(super) fn record(
        &mut self,
        stored: &StoredEvent,
        event: &Event,
        date: NaiveDate,
        scales: &HashMap<AssetCode, u32>,
    ) -> Result<()> {
        let position = stored.position;
        match event {
            Event::AccountOpened(e) => {
                self.opened
                    .insert(e.code.clone(), e.booking_method.unwrap_or_default());
                if e.booking_method.is_some() {
                    self.stated.insert(e.code.clone());
                }
            }
            Event::BookingMethodSet(e) => {
                let kind = Kind::Method(e.account.clone(), e.booking_method);
                self.steps.push(Step {
                    date,
                    position,
                    kind,
                });
            }
            Event::TradeExecuted(t) if t.pending => {
                if let Some(index) = instrument_index(t, &t.postings) {
                    let [bought, sold] = trade_amounts(t);
                    let unsettled = Unsettled {
                        trade: t.clone(),
                        index,
                        quantity: t.quantity,
                        bought,
                        sold,
                    };
                    self.unsettled.insert(t.trade_id, unsettled);
                }
            }
            Event::TradeExecuted(t) => {
                if let Some(index) = instrument_index(t, &t.postings) {
                    let [bought, sold] = trade_amounts(t);
                    let label = format!("{}/{index}", t.trade_id);
                    let sides = trade_sides(t, index, t.quantity, [bought, sold], &label);
                    self.push(t.trade_id, position, date, index, sides);
                }
            }
            Event::PendingPosted(e) => self.settle(e, position, date, scales)?,
            Event::PendingVoided(e) => drop(self.unsettled.remove(&e.pending_id)),
            Event::PendingExpired(e) => drop(self.unsettled.remove(&e.pending_id)),
            Event::TransactionPosted(e) if !e.pending => self.transaction(e, position, date),
            _ => {}
        }
        Ok(())
    }

    fn push(
        &mut self,
        transaction: TransactionId,
        position: i64,
        date: NaiveDate,
        index: usize,
        sides: Vec<Side>,
    ) {
        for side in &sides {
            self.instruments.insert(side.key.instrument.clone());
        }
        self.at_cost.entry(position).or_default().push(index);
        self.originals.entry(transaction).or_default().insert(index);
        let kind = Kind::Sides(transaction, sides);
        self.steps.push(Step {
            date,
            position,
            kind,
        });
    }

    /// A post of a trade that settles later moves its instrument at cost: the units posted
    /// carry their share of what is left to settle (`domain::lots::share` of the amount left by
    /// the units posted over the units left, so that the parts add up to the whole exactly).
    fn settle(
        &mut self,
        e: &PendingPosted,
        position: i64,
        date: NaiveDate,
        scales: &HashMap<AssetCode, u32>,
    ) -> Result<()> {
        let Some(left) = self.unsettled.get_mut(&e.pending_id) else {
            return Ok(());
        };
        let posted = instrument_index(&left.trade, &e.postings).map(|j| (j, e.postings[j].amount));
        if let Some((index, units)) = posted {
            let scale = scale_of(scales, &left.trade.currency)?;
            let bought = lots::share(left.bought, units, left.quantity, scale);
            let sold = lots::share(left.sold, units, left.quantity, scale);
            left.quantity -= units;
            left.bought -= bought;
            left.sold -= sold;
            let label = format!("{}/{}/{position}", e.pending_id, left.index);
            let sides = trade_sides(&left.trade, index, units, [bought, sold], &label);
            self.push(e.pending_id, position, date, index, sides);
        }
        if e.remaining.is_empty() {
            self.unsettled.remove(&e.pending_id);
        }
        Ok(())
    }

    /// A transaction's postings that state a cost, and a reversal of postings moved at cost.
    fn transaction(&mut self, e: &TransactionPosted, position: i64, date: NaiveDate) {
        if let Some(original) = e.reverses {
            let Some(indices) = self.originals.get(&original) else {
                return;
            };
            let postings: Vec<(usize, Decimal)> = indices
                .iter()
                .filter_map(|&i| Some((i, e.postings.get(i)?.amount)))
                .collect();
            let indices = postings.iter().map(|(i, _)| *i).collect();
            self.at_cost.insert(position, indices);
            let kind = Kind::Reversal(original, postings);
            self.steps.push(Step {
                date,
                position,
                kind,
            });
            return;
        }
        for (index, p) in e.postings.iter().enumerate() {
            let Some(cost) = &p.cost else { continue };
            let key = |account: &AccountCode| BookKey {
                account: account.clone(),
                instrument: p.asset.clone(),
                currency: cost.currency.clone(),
            };
            let label = format!("{}/{index}", e.transaction_id);
            let side = |destination: bool, account, quantity| Side {
                picks: Vec::new(),
                index,
                destination,
                key: key(account),
                quantity,
                amount: cost.amount,
                label: label.clone(),
                price: None,
            };
            let sides = vec![
                side(false, &p.source, -p.amount),
                side(true, &p.destination, p.amount),
            ];
            self.push(e.transaction_id, position, date, index, sides);
        }
    }

    /// Second reading (only when something moves at cost): the units of traded instruments
    /// that move without a cost.
    pub(super) fn flow(&mut self, stored: &StoredEvent, event: &Event, date: NaiveDate) {
        let at_cost = self.at_cost.get(&stored.position);
        for (index, p) in event.moved().iter().enumerate() {
            if at_cost.is_some_and(|i| i.contains(&index)) || !self.instruments.contains(&p.asset) {
                continue;
            }
            for (account, delta) in [(&p.source, -p.amount), (&p.destination, p.amount)] {
                let kind = Kind::Flow(account.clone(), p.asset.clone(), delta);
                self.steps.push(Step {
                    date,
                    position: stored.position,
                    kind,
                });
            }
        }
    }

    /// Replays the books in Beancount's order and says how each posting at cost is written.
    pub(super) fn plan(self, scales: &HashMap<AssetCode, u32>) -> Result<Plans> {
        let mut steps = self.steps;
        // Beancount books by day, then in file order; within an entry its postings without a
        // cost never count against those at cost, so they come last.
        steps.sort_by_key(|s| (s.date, s.position, matches!(s.kind, Kind::Flow(..))));
        let mut replay = Replay::new(scales, self.opened);
        for step in &steps {
            replay.step(step)?;
        }
        let mut plans = replay.plans;
        for account in self.stated {
            let method = replay.opened.get(&account).copied().unwrap_or_default();
            plans.methods.insert(account, method);
        }
        Ok(plans)
    }
}

fn scale_of(scales: &HashMap<AssetCode, u32>, asset: &AssetCode) -> Result<Scale> {
    let scale = scales
        .get(asset)
        .ok_or_else(|| Error::Corrupt(format!("asset {asset} is not defined")))?;
    Scale::try_from(*scale).map_err(|e| Error::Corrupt(format!("asset {asset}: {e}")))
}

/// The index of a trade's instrument posting (from the seller to the buyer) in `postings`.
fn instrument_index(t: &TradeExecuted, postings: &[domain::Posting]) -> Option<usize> {
    postings
        .iter()
        .position(|p| p.asset == t.instrument && p.source == t.seller && p.destination == t.buyer)
}

/// What the buyer's acquisition cost and what the seller's disposal brought
/// (`domain::lots::trade_movements`: the fees in the currency in them).
fn trade_amounts(t: &TradeExecuted) -> [Decimal; 2] {
    let movements = lots::trade_movements(t, 0, NaiveDate::MIN);
    let amount_of = |account: &AccountCode| {
        movements
            .iter()
            .find(|(key, _)| &key.account == account)
            .map_or(Decimal::ZERO, |(_, m)| m.amount)
    };
    [amount_of(&t.buyer), amount_of(&t.seller)]
}

/// A trade's (or a settlement's) two sides: the seller's disposal, then the buyer's
/// acquisition, as Beancount reads a posting (source first).
fn trade_sides(
    t: &TradeExecuted,
    index: usize,
    units: Decimal,
    [bought, sold]: [Decimal; 2],
    label: &str,
) -> Vec<Side> {
    let side = |destination: bool, account: &AccountCode, quantity, amount| Side {
        index,
        destination,
        key: BookKey {
            account: account.clone(),
            instrument: t.instrument.clone(),
            currency: t.currency.clone(),
        },
        quantity,
        amount,
        label: label.to_owned(),
        price: Some(t.price),
        picks: if destination {
            Vec::new()
        } else {
            t.lots.clone()
        },
    };
    vec![
        side(false, &t.seller, -units, sold),
        side(true, &t.buyer, units, bought),
    ]
}

/// What a leg did to the books, for its reversal to undo.
#[derive(Debug, Clone)]
struct Booked {
    side: Side,
    /// The lots it closed as they were, with the units taken and their amount.
    closed: Vec<(Lot, Decimal, Decimal)>,
    /// The lot it opened.
    opened: Option<Lot>,
    /// Units it moved without a lot, and their amount.
    loose: Option<(Decimal, Decimal)>,
}

/// What a side's weight and income add up to: what an acquisition cost, or minus what a
/// disposal brought.
fn target(side: &Side) -> Decimal {
    if side.quantity.is_sign_negative() {
        -side.amount
    } else {
        side.amount
    }
}

fn sign_of(quantity: Decimal) -> Decimal {
    if quantity.is_sign_negative() {
        Decimal::NEGATIVE_ONE
    } else {
        Decimal::ONE
    }
}

/// The books as Beancount sees them, replayed.
struct Replay<'a> {
    scales: &'a HashMap<AssetCode, u32>,
    books: BTreeMap<BookKey, Book>,
    /// Beancount's method (the one at the opening, for good) and the ledger's (now).
    opened: HashMap<AccountCode, BookingMethod>,
    methods: HashMap<AccountCode, BookingMethod>,
    /// Units held without a cost, per account and instrument.
    loose: HashMap<(AccountCode, AssetCode), Decimal>,
    /// Beancount's inventory order of the lots held at cost (it breaks ties by it).
    order: HashMap<String, u64>,
    next: u64,
    booked: HashMap<TransactionId, Vec<Booked>>,
    plans: Plans,
}

impl<'a> Replay<'a> {
    fn new(
        scales: &'a HashMap<AssetCode, u32>,
        opened: HashMap<AccountCode, BookingMethod>,
    ) -> Self {
        Self {
            scales,
            books: BTreeMap::new(),
            methods: opened.clone(),
            opened,
            loose: HashMap::new(),
            order: HashMap::new(),
            next: 0,
            booked: HashMap::new(),
            plans: Plans::default(),
        }
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match &step.kind {
            Kind::Method(account, method) => {
                self.methods.insert(account.clone(), *method);
                for (key, book) in &mut self.books {
                    if &key.account == account {
                        book.method = *method;
                    }
                }
            }
            Kind::Flow(account, asset, delta) => {
                *self
                    .loose
                    .entry((account.clone(), asset.clone()))
                    .or_default() += delta;
            }
            Kind::Sides(transaction, sides) => {
                let mut legs = Vec::with_capacity(sides.len());
                for side in sides {
                    let (parts, booked) = self.book(side, *transaction, step)?;
                    legs.push(self.leg(side, side.destination, parts, target(side), step.date));
                    self.booked.entry(*transaction).or_default().push(booked);
                }
                self.finish(step, legs);
            }
            Kind::Reversal(original, postings) => {
                let booked = self.booked.remove(original).unwrap_or_default();
                let mut legs = Vec::new();
                // The reversal's source is the original's destination: undone first, as the
                // lines are written.
                for b in reversed(&booked, postings) {
                    let parts = self.unbook(b, step)?;
                    let destination = !b.side.destination;
                    legs.push(self.leg(&b.side, destination, parts, -target(&b.side), step.date));
                }
                self.finish(step, legs);
            }
        }
        Ok(())
    }

    fn beancount_method(&self, account: &AccountCode) -> BookingMethod {
        self.opened.get(account).copied().unwrap_or_default()
    }

    /// Books one side by the ledger's method: the lots it closes and what it opens, and the
    /// parts Beancount is to book them by.
    fn book(
        &mut self,
        side: &Side,
        transaction: TransactionId,
        step: &Step,
    ) -> Result<(Vec<Part>, Booked)> {
        let beancount = self.beancount_method(&side.key.account);
        let average = beancount == BookingMethod::Average;
        let book = book_in(&mut self.books, &self.methods, self.scales, &side.key)?;
        let before = book.lots.clone();
        let movement = Movement {
            lot_id: side.label.clone(),
            transaction_id: transaction,
            position: step.position,
            date: step.date,
            quantity: side.quantity,
            amount: side.amount,
            picks: side.picks.clone(),
        };
        let closed = book.apply(&movement);
        let opened = book.lots.iter().find(|l| l.lot_id == side.label).cloned();
        let closed: Vec<(Lot, Decimal, Decimal)> = closed
            .iter()
            .filter_map(|c| {
                let lot = before.iter().find(|l| l.lot_id == c.lot_id)?.clone();
                let amount = if lot.quantity.is_sign_positive() {
                    c.cost
                } else {
                    c.proceeds
                };
                Some((lot, c.quantity, amount))
            })
            .collect();
        let sign = sign_of(side.quantity);
        let mut parts = reductions(&closed, sign, average, |taken| {
            beancount_picks(&before, &self.order, beancount, taken)
        });
        let mut booked = Booked {
            side: side.clone(),
            closed,
            opened: None,
            loose: None,
        };
        if let Some(lot) = opened {
            let part = self.place(&side.key, &lot, false, average)?;
            match part {
                Part::AtTotalPrice { units, total } => booked.loose = Some((units, total)),
                _ => booked.opened = Some(lot),
            }
            parts.push(part);
        }
        Ok((parts, booked))
    }

    /// A lot opened (already in its book) or put back (not yet): held at cost, unless Beancount
    /// would read it as a reduction because the account holds the instrument the other way
    /// without a cost or in another currency; then it is no lot, weighed at its amount.
    fn place(&mut self, key: &BookKey, lot: &Lot, back: bool, average: bool) -> Result<Part> {
        let account_asset = (key.account.clone(), key.instrument.clone());
        if !average && self.held_against(key, sign_of(lot.quantity)) {
            let book = book_in(&mut self.books, &self.methods, self.scales, key)?;
            book.lots.retain(|l| l.lot_id != lot.lot_id);
            *self.loose.entry(account_asset).or_default() += lot.quantity;
            return Ok(Part::AtTotalPrice {
                units: lot.quantity,
                total: lot.amount,
            });
        }
        if back {
            let book = book_in(&mut self.books, &self.methods, self.scales, key)?;
            let at = book
                .lots
                .partition_point(|l| (l.date, l.position) <= (lot.date, lot.position));
            book.lots.insert(at, lot.clone());
        }
        self.order.insert(lot.lot_id.clone(), self.next);
        self.next += 1;
        Ok(Part::AtCost {
            units: lot.quantity,
            total: lot.amount,
            date: back.then_some(lot.date),
            label: Some(lot.lot_id.clone()),
        })
    }

    /// Whether the account holds the instrument with the sign opposite to `sign`: without a
    /// cost, or at cost in any currency.
    fn held_against(&self, key: &BookKey, sign: Decimal) -> bool {
        let loose = self
            .loose
            .get(&(key.account.clone(), key.instrument.clone()))
            .copied()
            .unwrap_or_default();
        if !loose.is_zero() && sign_of(loose) != sign {
            return true;
        }
        self.books.iter().any(|(k, book)| {
            k.account == key.account
                && k.instrument == key.instrument
                && book.lots.iter().any(|l| sign_of(l.quantity) != sign)
        })
    }

    /// A reversal of one side: takes back the lot it opened (by its label, whole, when it still
    /// is; else as a movement of its own at what it cost), the units it moved without a lot,
    /// and puts back the lots it closed, at their cost and date.
    fn unbook(&mut self, b: &Booked, step: &Step) -> Result<Vec<Part>> {
        let key = &b.side.key;
        let average = self.beancount_method(&key.account) == BookingMethod::Average;
        let mut parts = Vec::new();
        if let Some(lot) = &b.opened {
            let book = book_in(&mut self.books, &self.methods, self.scales, key)?;
            match book.lots.iter().position(|l| l.lot_id == lot.lot_id) {
                Some(i) if book.lots[i].quantity == lot.quantity => {
                    let now = book.lots.remove(i);
                    parts.push(match average {
                        true => Part::AtCost {
                            units: -now.quantity,
                            total: now.amount,
                            date: None,
                            label: None,
                        },
                        false => Part::ReduceLot {
                            units: -now.quantity,
                            label: now.lot_id,
                        },
                    });
                }
                _ => {
                    let side = Side {
                        quantity: -lot.quantity,
                        amount: lot.amount,
                        label: format!("{}/{}", lot.lot_id, step.position),
                        ..b.side.clone()
                    };
                    parts.extend(self.book(&side, lot.transaction_id, step)?.0);
                }
            }
        }
        if let Some((units, total)) = b.loose {
            let account_asset = (key.account.clone(), key.instrument.clone());
            *self.loose.entry(account_asset).or_default() -= units;
            parts.push(Part::AtTotalPrice {
                units: -units,
                total,
            });
        }
        for (lot, units, amount) in &b.closed {
            let back = Lot {
                lot_id: format!("{}/{}", lot.lot_id, step.position),
                quantity: sign_of(lot.quantity) * units,
                amount: *amount,
                ..lot.clone()
            };
            parts.push(self.place(key, &back, true, average)?);
        }
        Ok(parts)
    }

    /// The leg of a side: its income posting follows from its parts (none when every weight is
    /// stated and adds up to the target).
    fn leg(
        &mut self,
        side: &Side,
        destination: bool,
        parts: Vec<Part>,
        target: Decimal,
        date: NaiveDate,
    ) -> Leg {
        let stated: Option<Decimal> = parts.iter().map(Part::stated_weight).sum();
        let income = match stated {
            None => Some(Income::Computed),
            Some(weight) if weight == target => None,
            Some(weight) => Some(Income::Stated(target - weight)),
        };
        let key = &side.key;
        if income.is_some() {
            let account_instrument = (key.account.clone(), key.instrument.clone());
            let (first, currencies) = self
                .plans
                .income
                .entry(account_instrument)
                .or_insert((date, BTreeSet::new()));
            *first = (*first).min(date);
            currencies.insert(key.currency.clone());
        }
        let method = self.beancount_method(&key.account);
        self.plans.methods.insert(key.account.clone(), method);
        Leg {
            index: side.index,
            destination,
            account: key.account.clone(),
            instrument: key.instrument.clone(),
            currency: key.currency.clone(),
            price: side.price,
            parts,
            target,
            income,
            split: false,
        }
    }

    /// An entry's legs: beyond the first whose income Beancount computes, per currency, each
    /// such leg is written in a transaction of its own.
    fn finish(&mut self, step: &Step, mut legs: Vec<Leg>) {
        let mut computed: HashSet<AssetCode> = HashSet::new();
        for leg in &mut legs {
            if leg.income == Some(Income::Computed) && !computed.insert(leg.currency.clone()) {
                leg.split = true;
            }
        }
        let first = self.plans.first_date.get_or_insert(step.date);
        *first = (*first).min(step.date);
        self.plans
            .legs
            .entry(step.position)
            .or_default()
            .extend(legs);
    }
}

/// The parts that reduce the lots a side closed: one reduction Beancount's method picks when it
/// picks the ledger's lots (`picks` says which it would), else one per lot by label; on an
/// `average` account, one at the cost the ledger computed.
fn reductions(
    closed: &[(Lot, Decimal, Decimal)],
    sign: Decimal,
    average: bool,
    picks: impl FnOnce(Decimal) -> Vec<(String, Decimal)>,
) -> Vec<Part> {
    let taken: Decimal = closed.iter().map(|(_, units, _)| units).sum();
    if taken.is_zero() {
        return Vec::new();
    }
    if average {
        let total = closed.iter().map(|(_, _, amount)| amount).sum();
        return vec![Part::AtCost {
            units: sign * taken,
            total,
            date: None,
            label: None,
        }];
    }
    let picked: Vec<(String, Decimal)> = closed
        .iter()
        .map(|(l, units, _)| (l.lot_id.clone(), *units))
        .collect();
    if picks(taken) == picked {
        return vec![Part::Reduce {
            units: sign * taken,
        }];
    }
    // Beancount's method would take other lots (lots of one day under LIFO, or a method set
    // since the opening): the ledger's, by label.
    picked
        .into_iter()
        .map(|(label, units)| Part::ReduceLot {
            units: sign * units,
            label,
        })
        .collect()
}

/// The book of `key`, made (with the account's method now) when it is its first movement.
fn book_in<'b>(
    books: &'b mut BTreeMap<BookKey, Book>,
    methods: &HashMap<AccountCode, BookingMethod>,
    scales: &HashMap<AssetCode, u32>,
    key: &BookKey,
) -> Result<&'b mut Book> {
    if !books.contains_key(key) {
        let method = methods.get(&key.account).copied().unwrap_or_default();
        books.insert(
            key.clone(),
            Book::new(method, scale_of(scales, &key.currency)?),
        );
    }
    books
        .get_mut(key)
        .ok_or_else(|| Error::Corrupt(format!("no book for {}", key.account)))
}

/// The sides a reversal undoes, in the order its lines are written (per posting, its source,
/// which was the original's destination, first): for each posting reversed, the latest
/// settlements of the original that add up to the units it moves back.
fn reversed<'b>(booked: &'b [Booked], postings: &[(usize, Decimal)]) -> Vec<&'b Booked> {
    let mut undone: Vec<&Booked> = Vec::new();
    for &(index, units) in postings {
        for destination in [true, false] {
            let mut left = units;
            let mut sides: Vec<&Booked> = booked
                .iter()
                .rev()
                .filter(|b| b.side.index == index && b.side.destination == destination)
                .take_while(|b| {
                    let take = b.side.quantity.abs() <= left;
                    left -= b.side.quantity.abs().min(left);
                    take
                })
                .collect();
            sides.reverse();
            undone.extend(sides);
        }
    }
    undone
}

/// The lots Beancount's method takes for a reduction of `quantity` units from `lots`: sorted by
/// date (FIFO, LIFO reversed) or unit cost (HIFO, highest first), ties in inventory order.
fn beancount_picks(
    lots: &[Lot],
    order: &HashMap<String, u64>,
    method: BookingMethod,
    quantity: Decimal,
) -> Vec<(String, Decimal)> {
    if method == BookingMethod::Specific {
        // STRICT picks nothing by itself: the reductions name the ledger's lots.
        return Vec::new();
    }
    let rank = |l: &Lot| order.get(&l.lot_id).copied().unwrap_or(u64::MAX);
    let mut sorted: Vec<&Lot> = lots.iter().collect();
    sorted.sort_by(|a, b| {
        let by_method = match method {
            BookingMethod::Lifo => b.date.cmp(&a.date),
            BookingMethod::Hifo => {
                (b.amount * a.quantity.abs()).cmp(&(a.amount * b.quantity.abs()))
            }
            BookingMethod::Fifo | BookingMethod::Average | BookingMethod::Specific => {
                a.date.cmp(&b.date)
            }
        };
        by_method.then(rank(a).cmp(&rank(b)))
    });
    let mut left = quantity;
    let mut picks = Vec::new();
    for lot in sorted {
        if left.is_zero() {
            break;
        }
        let take = lot.quantity.abs().min(left);
        picks.push((lot.lot_id.clone(), take));
        left -= take;
    }
    picks
}
