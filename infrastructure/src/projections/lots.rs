//! Lots, cost basis and realized P&L: per book (account, instrument, cost currency) every
//! movement (`domain::lots::movements_of`), the open lots, the closed parts with their realized
//! P&L, and the book's totals; per account the booking method from each position on. The rules
//! are `domain::lots`'s; this module keeps their results in tables, and serves them
//! (`lots/reads.rs`).
//!
//! Asynchronous and remembering (`Memory`): a movement is applied to its book's open lots with
//! `Book::apply`, which needs them, so the memory holds the books a page touches, loaded from
//! `lots` and `lot_books` (the projector's) or held from the start of the log (a rebuild's).
//! Nothing of it is on the writer's path.
//!
//! A reversed transaction or trade, and a pending trade voided, failed or expired before it
//! settled in full, leave the lots as if the rest had never happened: its movements are dropped,
//! or revised to what its partial settlements posted (`domain::lots::revise`), and every book
//! they were in is computed again from its stored movements in the order movements apply (trade
//! date, then position), the booking method switching at each change, and rewritten whole. So is
//! a book a backdated movement comes into. Nothing is patched.

mod load;
pub mod reads;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use domain::event::Posting;
use domain::lots::{movements_of, revise, Book, BookKey, Closed, Lot, Movement};
use domain::{AccountCode, AssetCode, BookingMethod, Event, Scale, TransactionId};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use sqlx::PgConnection;

use super::{Applied, Memory, Mode, Projection};
use crate::columns::{col, Column, OnConflict, SqlType, Table, TableRows};
use crate::{Error, Result};

/// The key of a book's rows.
const BOOK: [Column; 3] = [
    col("account", SqlType::Text),
    col("instrument", SqlType::Text),
    col("currency", SqlType::Text),
];

/// Every movement of a book: what a book is computed again from (in trade date, position order).
pub static MOVEMENTS: Table = Table {
    name: "lot_movements",
    columns: &[
        BOOK[0],
        BOOK[1],
        BOOK[2],
        col("position", SqlType::Int8),
        // Its place among the movements of its event (`movements_of`'s order).
        col("leg", SqlType::Int2),
        col("lot_id", SqlType::Text),
        col("transaction_id", SqlType::Uuid),
        col("trade_date", SqlType::Date),
        col("quantity", SqlType::Numeric),
        col("amount", SqlType::Numeric),
        // The lots a sale named (`specific`), as JSON; NULL when it named none.
        col("picks", SqlType::Text),
    ],
    on_conflict: OnConflict::Refuse,
};

/// The open lots: a lot's row changes when a closing takes part of it (or, under `average`,
/// restates it) and goes when it is closed.
pub static LOTS: Table = Table {
    name: "lots",
    columns: &[
        BOOK[0],
        BOOK[1],
        BOOK[2],
        col("lot_id", SqlType::Text),
        col("leg", SqlType::Int2),
        col("transaction_id", SqlType::Uuid),
        col("position", SqlType::Int8),
        col("trade_date", SqlType::Date),
        col("quantity", SqlType::Numeric),
        col("cost", SqlType::Numeric),
    ],
    on_conflict: OnConflict::Update { key_columns: 4 },
};

/// Every lot, or part of one, a movement closed: `part` numbers them within the position.
pub static CLOSINGS: Table = Table {
    name: "lot_closings",
    columns: &[
        BOOK[0],
        BOOK[1],
        BOOK[2],
        col("position", SqlType::Int8),
        col("part", SqlType::Int2),
        col("lot_id", SqlType::Text),
        col("transaction_id", SqlType::Uuid),
        col("opened", SqlType::Date),
        col("closed", SqlType::Date),
        col("quantity", SqlType::Numeric),
        col("cost", SqlType::Numeric),
        col("proceeds", SqlType::Numeric),
    ],
    on_conflict: OnConflict::Refuse,
};

/// Per book: the sum of its movements' quantities, of their amounts (acquisitions added,
/// disposals taken off) and of its realized P&L. Read back against the open lots: their
/// quantities add up to `quantity`, and their amounts (short lots' taken off) less `realized`
/// to `amount`.
pub static BOOKS: Table = Table {
    name: "lot_books",
    columns: &[
        BOOK[0],
        BOOK[1],
        BOOK[2],
        col("quantity", SqlType::Numeric),
        col("amount", SqlType::Numeric),
        col("realized", SqlType::Numeric),
        // The latest (trade date, position) applied: a movement before it is backdated, and the
        // book is computed again with it in its place.
        col("last_trade_date", SqlType::Date),
        col("last_position", SqlType::Int8),
    ],
    on_conflict: OnConflict::Update { key_columns: 3 },
};

/// The keys of a book's rows in each table, deleted when the book is rewritten whole.
static BOOK_MOVEMENTS: Table = Table {
    name: "lot_movements",
    columns: &BOOK,
    on_conflict: OnConflict::Refuse,
};
static BOOK_LOTS: Table = Table {
    name: "lots",
    columns: &BOOK,
    on_conflict: OnConflict::Refuse,
};
static BOOK_CLOSINGS: Table = Table {
    name: "lot_closings",
    columns: &BOOK,
    on_conflict: OnConflict::Refuse,
};
/// The key of one lot, deleted when it is closed.
static LOT: Table = Table {
    name: "lots",
    columns: &[BOOK[0], BOOK[1], BOOK[2], col("lot_id", SqlType::Text)],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "lots",
    tables: &[&MOVEMENTS, &LOTS, &CLOSINGS, &BOOKS],
    deletes: &[&BOOK_MOVEMENTS, &BOOK_LOTS, &BOOK_CLOSINGS, &LOT],
    mode: Mode::Remembering(memory),
    legs: false,
};

fn memory(whole: bool) -> Box<dyn Memory> {
    Box::new(Lots::new(whole))
}

/// Books the projector's memory keeps between pages at most; past it, it forgets them and
/// loads them again as pages need them.
const CACHED_BOOKS_MAX: usize = 1 << 16;

/// A book's totals (`BOOKS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub quantity: Decimal,
    pub amount: Decimal,
    pub realized: Decimal,
    /// The latest (trade date, position) of a movement applied.
    pub last: Option<(NaiveDate, i64)>,
}

/// One book as the memory holds it.
pub(crate) struct BookState {
    pub book: Book,
    /// The instrument's scale, at which quantities are written (amounts at the currency's, the
    /// book's own).
    pub units: Scale,
    /// The leg of the movement that opened each open lot: lots of one position are in its order.
    pub legs: HashMap<String, i16>,
    /// The open lots as the table holds them (as of the last flush), by id.
    stored: HashMap<String, Lot>,
    pub totals: Totals,
    /// Every movement with its leg: always held in a whole memory; loaded for a
    /// book about to be computed again.
    pub movements: Option<Vec<(i16, Movement)>>,
    /// What was projected since the last flush.
    new_movements: Vec<(i16, Movement)>,
    new_closed: Vec<(i16, Closed)>,
    /// The position closings were last numbered at, and the next number there.
    numbering: (i64, i16),
    /// Computed again since the last flush: its rows are rewritten whole.
    replaced: bool,
}

impl BookState {
    pub(crate) fn new(currency: Scale, units: Scale, with_movements: bool) -> Self {
        Self {
            book: Book::new(BookingMethod::default(), currency),
            units,
            legs: HashMap::new(),
            stored: HashMap::new(),
            totals: Totals::default(),
            movements: with_movements.then(Vec::new),
            new_movements: Vec::new(),
            new_closed: Vec::new(),
            numbering: (0, 0),
            replaced: false,
        }
    }

    /// A book loaded from its rows: its open lots (in order) with their legs, and its totals.
    pub(crate) fn loaded(
        currency: Scale,
        units: Scale,
        lots: Vec<(i16, Lot)>,
        totals: Totals,
    ) -> Self {
        let mut state = Self::new(currency, units, false);
        for (leg, lot) in lots {
            state.legs.insert(lot.lot_id.clone(), leg);
            state.stored.insert(lot.lot_id.clone(), lot.clone());
            state.book.lots.push(lot);
        }
        state.totals = totals;
        state
    }

    /// Applies one movement by `method`; the parts it closed, numbered within its position.
    pub(crate) fn apply(
        &mut self,
        leg: i16,
        m: Movement,
        method: BookingMethod,
    ) -> Vec<(i16, Closed)> {
        self.book.method = method;
        let closed = self.book.apply(&m);
        let closed_units: Decimal = closed.iter().map(|c| c.quantity).sum();
        if closed_units < m.quantity.abs() {
            self.legs.insert(m.lot_id.clone(), leg);
        }
        self.totals.quantity += m.quantity;
        self.totals.amount += signed(m.quantity, m.amount);
        self.totals.last = self.totals.last.max(Some((m.date, m.position)));
        if self.numbering.0 != m.position {
            self.numbering = (m.position, 0);
        }
        let mut numbered = Vec::with_capacity(closed.len());
        for c in closed {
            self.totals.realized += c.realized();
            numbered.push((self.numbering.1, c));
            self.numbering.1 += 1;
        }
        self.new_closed.extend(numbered.iter().cloned());
        if let Some(list) = &mut self.movements {
            list.push((leg, m.clone()));
        }
        self.new_movements.push((leg, m));
        numbered
    }

    /// Whether `m` comes before a movement applied already, in the order movements apply
    /// (trade date, then position): a backdated movement, after which the book is computed again.
    pub(crate) fn is_backdated(&self, m: &Movement) -> bool {
        self.totals
            .last
            .is_some_and(|last| (m.date, m.position) < last)
    }

    /// The book computed again from `movements`, in the order movements apply (trade date,
    /// position, leg), by the method in force at each, to be rewritten whole.
    fn recomputed(
        &self,
        mut movements: Vec<(i16, Movement)>,
        history: &[(i64, BookingMethod)],
    ) -> Self {
        movements.sort_by_key(|(leg, m)| (m.date, m.position, *leg));
        let mut fresh = Self::new(self.book.scale, self.units, true);
        for (leg, m) in movements {
            let method = method_at(history, m.position);
            fresh.apply(leg, m, method);
        }
        fresh.replaced = true;
        fresh
    }

    /// Writes what changed since the last flush: the book whole when it was computed again,
    /// else its new movements and closings, its changed and closed lots, and its totals.
    fn flush(&mut self, key: &BookKey, out: &mut Buffers<'_>) {
        let book_key = || -> [crate::columns::Value; 3] {
            [
                key.account.as_str().into(),
                key.instrument.as_str().into(),
                key.currency.as_str().into(),
            ]
        };
        let current: HashMap<&str, &Lot> = self
            .book
            .lots
            .iter()
            .map(|l| (l.lot_id.as_str(), l))
            .collect();
        if self.replaced {
            out.book_movements.push(book_key());
            out.book_lots.push(book_key());
            out.book_closings.push(book_key());
        } else {
            for id in self
                .stored
                .keys()
                .filter(|id| !current.contains_key(id.as_str()))
            {
                let [a, i, c] = book_key();
                out.lot_keys.push([a, i, c, id.as_str().into()]);
            }
        }
        for lot in &self.book.lots {
            if self.replaced || self.stored.get(&lot.lot_id) != Some(lot) {
                let leg = self.legs.get(&lot.lot_id).copied().unwrap_or(0);
                out.lots.push(self.lot_row(key, leg, lot));
            }
        }
        for (leg, m) in self.new_movements.drain(..) {
            out.movements
                .push(movement_row(key, leg, &m, self.units, self.book.scale));
        }
        for (part, c) in self.new_closed.drain(..) {
            out.closings
                .push(closing_row(key, part, &c, self.units, self.book.scale));
        }
        let scale = self.book.scale;
        let [a, i, c] = book_key();
        out.books.push([
            a,
            i,
            c,
            at(self.totals.quantity, self.units).into(),
            at(self.totals.amount, scale).into(),
            at(self.totals.realized, scale).into(),
            self.totals.last.map(|(date, _)| date).into(),
            self.totals.last.map(|(_, position)| position).into(),
        ]);
        self.stored = current
            .into_iter()
            .map(|(id, lot)| (id.to_owned(), lot.clone()))
            .collect();
        self.legs.retain(|id, _| self.stored.contains_key(id));
        self.replaced = false;
    }

    fn lot_row(&self, key: &BookKey, leg: i16, lot: &Lot) -> [crate::columns::Value; 10] {
        [
            key.account.as_str().into(),
            key.instrument.as_str().into(),
            key.currency.as_str().into(),
            lot.lot_id.as_str().into(),
            leg.into(),
            lot.transaction_id.0.into(),
            lot.position.into(),
            lot.date.into(),
            at(lot.quantity, self.units).into(),
            at(lot.amount, self.book.scale).into(),
        ]
    }
}

fn movement_row(
    key: &BookKey,
    leg: i16,
    m: &Movement,
    units: Scale,
    scale: Scale,
) -> [crate::columns::Value; 11] {
    let picks = (!m.picks.is_empty()).then(|| picks_text(&m.picks));
    [
        key.account.as_str().into(),
        key.instrument.as_str().into(),
        key.currency.as_str().into(),
        m.position.into(),
        leg.into(),
        m.lot_id.as_str().into(),
        m.transaction_id.0.into(),
        m.date.into(),
        at(m.quantity, units).into(),
        at(m.amount, scale).into(),
        picks.into(),
    ]
}

/// A sale's named lots as stored: `[{"lot_id":…,"quantity":…}]`.
fn picks_text(picks: &[domain::event::LotPick]) -> String {
    serde_json::to_string(picks).unwrap_or_default()
}

/// A movement as `lot_movements` stores it, read back (the columns after the book and leg).
pub(crate) fn stored_movement(
    lot_id: String,
    transaction_id: uuid::Uuid,
    position: i64,
    date: NaiveDate,
    quantity: Decimal,
    amount: Decimal,
    picks: Option<String>,
) -> Result<Movement> {
    Ok(Movement {
        picks: picks_of(picks)?,
        lot_id,
        transaction_id: TransactionId(transaction_id),
        position,
        date,
        quantity,
        amount,
    })
}

/// A sale's named lots read back.
pub(crate) fn picks_of(text: Option<String>) -> Result<Vec<domain::event::LotPick>> {
    text.map_or(Ok(Vec::new()), |text| {
        serde_json::from_str(&text).map_err(|e| Error::Corrupt(format!("named lots {text:?}: {e}")))
    })
}

fn closing_row(
    key: &BookKey,
    part: i16,
    c: &Closed,
    units: Scale,
    scale: Scale,
) -> [crate::columns::Value; 12] {
    [
        key.account.as_str().into(),
        key.instrument.as_str().into(),
        key.currency.as_str().into(),
        c.position.into(),
        part.into(),
        c.lot_id.as_str().into(),
        c.transaction_id.0.into(),
        c.opened.into(),
        c.closed.into(),
        at(c.quantity, units).into(),
        at(c.cost, scale).into(),
        at(c.proceeds, scale).into(),
    ]
}

/// The row buffers of the projection, by table, for a flush.
struct Buffers<'a> {
    movements: &'a mut TableRows,
    lots: &'a mut TableRows,
    closings: &'a mut TableRows,
    books: &'a mut TableRows,
    book_movements: &'a mut TableRows,
    book_lots: &'a mut TableRows,
    book_closings: &'a mut TableRows,
    lot_keys: &'a mut TableRows,
}

/// A figure at its asset's scale: every figure the rules make has at most that many places, so
/// this only writes trailing zeros, and live and rebuilt rows read the same.
pub(crate) fn at(mut value: Decimal, scale: Scale) -> Decimal {
    value.rescale(scale.get());
    value
}

/// An amount with the side of its movement: added for an acquisition, taken off for a disposal.
pub(crate) fn signed(quantity: Decimal, amount: Decimal) -> Decimal {
    if quantity.is_sign_negative() {
        -amount
    } else {
        amount
    }
}

/// The booking method in force for a movement at `position`: the last one set before it (an
/// account's opening comes before every movement of it); `fifo` when none was.
pub(crate) fn method_at(history: &[(i64, BookingMethod)], position: i64) -> BookingMethod {
    history
        .iter()
        .take_while(|(from, _)| *from < position)
        .last()
        .map_or_else(BookingMethod::default, |(_, method)| *method)
}

/// The memory of the lots projection.
pub(crate) struct Lots {
    /// Whether it holds everything from the start of the log (a rebuild); otherwise it loads
    /// what each page needs from the tables (`load`).
    whole: bool,
    scales: HashMap<AssetCode, Scale>,
    /// Each account's booking methods in log order: the whole history of the accounts held.
    methods: HashMap<AccountCode, Vec<(i64, BookingMethod)>>,
    books: HashMap<BookKey, BookState>,
    /// The books each transaction's movements are in: of every transaction in a whole memory,
    /// of those a page reverses or settles (and its own) otherwise.
    books_of: HashMap<TransactionId, BTreeSet<BookKey>>,
    /// What each pending trade's partial settlements posted, by position.
    parts: HashMap<TransactionId, BTreeMap<i64, Vec<Posting>>>,
    /// Books changed since the last flush.
    dirty: BTreeSet<BookKey>,
}

impl Lots {
    fn new(whole: bool) -> Self {
        Self {
            whole,
            scales: HashMap::new(),
            methods: HashMap::new(),
            books: HashMap::new(),
            books_of: HashMap::new(),
            parts: HashMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    fn set_method(&mut self, account: &AccountCode, position: i64, method: BookingMethod) {
        let history = self.methods.entry(account.clone()).or_default();
        // Kept in memory only: the inline `booking_methods` projection has written it already.
        history.push((position, method));
    }

    fn current_method(&self, account: &AccountCode) -> BookingMethod {
        self.methods
            .get(account)
            .and_then(|h| h.last())
            .map_or_else(BookingMethod::default, |(_, method)| *method)
    }

    fn scale(&self, asset: &AssetCode) -> Result<Scale> {
        self.scales
            .get(asset)
            .copied()
            .ok_or_else(|| Error::Corrupt(format!("lots in {asset}, which is not defined")))
    }

    /// The book of `key`: held, or (in a whole memory) new; a book a page needs and did not
    /// load is a fault of `prepare`, never taken as empty.
    fn book_mut(&mut self, key: &BookKey) -> Result<&mut BookState> {
        if !self.books.contains_key(key) {
            if !self.whole {
                return Err(Error::Corrupt(format!("the book {key:?} was not loaded")));
            }
            let state = BookState::new(
                self.scale(&key.currency)?,
                self.scale(&key.instrument)?,
                true,
            );
            self.books.insert(key.clone(), state);
        }
        self.books
            .get_mut(key)
            .ok_or_else(|| Error::Corrupt(format!("the book {key:?} was not loaded")))
    }

    /// Applies the movements of an event to their books.
    fn apply_movements(&mut self, applied: &Applied<'_>) -> Result<()> {
        let date: NaiveDate = applied.event.effective_or(applied.recorded_at).date_naive();
        for (leg, (key, m)) in movements_of(applied.event, applied.position, date)
            .into_iter()
            .enumerate()
        {
            // At most two movements per posting of at most 64: fits i16.
            let leg = i16::try_from(leg).unwrap_or(i16::MAX);
            let method = self.current_method(&key.account);
            let transaction = m.transaction_id;
            let history = self.methods.get(&key.account).cloned().unwrap_or_default();
            let state = self.book_mut(&key)?;
            if state.is_backdated(&m) {
                // Lots follow the trade date: the book is computed again with it in its place.
                let mut list = state.movements.take().ok_or_else(|| {
                    Error::Corrupt(format!("the movements of {key:?} were not loaded"))
                })?;
                list.push((leg, m));
                *state = state.recomputed(list, &history);
            } else {
                state.apply(leg, m, method);
            }
            self.books_of
                .entry(transaction)
                .or_default()
                .insert(key.clone());
            self.dirty.insert(key);
        }
        Ok(())
    }

    /// Computes the books of transaction `x` again, its movements in each replaced by what
    /// `change` makes of them (given the book, the leg and the movement).
    fn recompute_without(
        &mut self,
        x: TransactionId,
        mut change: impl FnMut(&BookKey, i16, &Movement) -> Option<Movement>,
    ) -> Result<()> {
        let keys = self.books_of.get(&x).cloned().unwrap_or_default();
        for key in keys {
            let history = self.methods.get(&key.account).cloned().unwrap_or_default();
            let state = self.book_mut(&key)?;
            let list = state.movements.take().ok_or_else(|| {
                Error::Corrupt(format!("the movements of {key:?} were not loaded"))
            })?;
            let list = list
                .into_iter()
                .filter_map(|(leg, m)| match m.transaction_id == x {
                    true => change(&key, leg, &m).map(|m| (leg, m)),
                    false => Some((leg, m)),
                })
                .collect();
            *state = state.recomputed(list, &history);
            self.dirty.insert(key);
        }
        Ok(())
    }

    /// A reversal of `x`: its movements go.
    fn reversed(&mut self, x: TransactionId) -> Result<()> {
        self.recompute_without(x, |_, _, _| None)?;
        self.books_of.remove(&x);
        Ok(())
    }

    /// A pending `x` voided, failed or expired: a trade's movements keep what its partial
    /// settlements posted (`revise`), or go.
    fn settled_short(&mut self, x: TransactionId) -> Result<()> {
        let parts: Vec<Posting> = self
            .parts
            .remove(&x)
            .map(|by_position| by_position.into_values().flatten().collect())
            .unwrap_or_default();
        let Some(keys) = self.books_of.get(&x).cloned() else {
            return Ok(());
        };
        let mut originals = Vec::new();
        for key in &keys {
            let list = self.book_mut(key)?.movements.as_ref();
            let list = list.ok_or_else(|| {
                Error::Corrupt(format!("the movements of {key:?} were not loaded"))
            })?;
            for (leg, m) in list.iter().filter(|(_, m)| m.transaction_id == x) {
                originals.push((key.clone(), *leg, m.clone()));
            }
        }
        let Some(first) = originals.first() else {
            return Ok(());
        };
        let scale = self.scale(&first.0.currency)?;
        let pairs: Vec<(BookKey, Movement)> = originals
            .iter()
            .map(|(k, _, m)| (k.clone(), m.clone()))
            .collect();
        let revised = revise(&pairs, &parts, scale);
        self.recompute_without(x, |key, leg, _| {
            let at = originals
                .iter()
                .position(|(k, l, _)| k == key && *l == leg)?;
            revised.get(at).map(|(_, m)| m.clone())
        })?;
        if revised.is_empty() {
            self.books_of.remove(&x);
        }
        Ok(())
    }

    /// After a flush, a loaded memory keeps the books' open lots and totals and the accounts'
    /// methods (within `CACHED_BOOKS_MAX`), and drops what only a page needed.
    fn trim(&mut self) {
        if self.whole {
            return;
        }
        for state in self.books.values_mut() {
            state.movements = None;
        }
        self.books_of.clear();
        self.parts.clear();
        if self.books.len() > CACHED_BOOKS_MAX || self.methods.len() > CACHED_BOOKS_MAX {
            self.books.clear();
            self.methods.clear();
        }
    }
}

impl Memory for Lots {
    fn prepare<'a>(
        &'a mut self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        page: &'a [Applied<'a>],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.whole {
                return Ok(());
            }
            load::prepare(self, conn, schema, page).await
        })
    }

    fn project(&mut self, applied: &Applied<'_>) -> Result<()> {
        let position = applied.position;
        match applied.event {
            Event::AssetDefined(e) => {
                self.scales.insert(e.asset.clone(), e.scale);
            }
            Event::AccountOpened(e) => {
                self.set_method(&e.code, position, e.booking_method.unwrap_or_default())
            }
            Event::BookingMethodSet(e) => self.set_method(&e.account, position, e.booking_method),
            Event::TransactionPosted(e) => {
                if let Some(x) = e.reverses {
                    self.reversed(x)?;
                }
            }
            Event::PendingPosted(e) if !e.remaining.is_empty() => {
                let parts = self.parts.entry(e.pending_id).or_default();
                parts.insert(position, e.postings.clone());
            }
            Event::PendingPosted(e) => {
                self.parts.remove(&e.pending_id);
            }
            Event::PendingVoided(e) => self.settled_short(e.pending_id)?,
            Event::PendingExpired(e) => self.settled_short(e.pending_id)?,
            _ => {}
        }
        self.apply_movements(applied)
    }

    fn flush(&mut self, out: &mut [TableRows], deletes: &mut [TableRows]) {
        let (
            [movements, lots, closings, books],
            [book_movements, book_lots, book_closings, lot_keys],
        ) = (out, deletes)
        else {
            debug_assert!(false, "the lots projection's buffers");
            return;
        };
        let mut buffers = Buffers {
            movements,
            lots,
            closings,
            books,
            book_movements,
            book_lots,
            book_closings,
            lot_keys,
        };
        for key in std::mem::take(&mut self.dirty) {
            if let Some(state) = self.books.get_mut(&key) {
                state.flush(&key, &mut buffers);
            }
        }
        self.trim();
    }

    fn forget(&mut self) {
        *self = Self::new(self.whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use domain::event::{
        AccountOpened, AssetDefined, PendingPosted, PendingVoided, TradeExecuted, TransactionPosted,
    };
    use domain::values::TransactionKind;
    use domain::{AccountId, Metadata};
    use uuid::Uuid;

    fn d(text: &str) -> Decimal {
        text.parse().expect("a decimal")
    }

    fn posting(source: &str, destination: &str, asset: &str, amount: &str) -> Posting {
        Posting {
            source: source.parse().expect("a code"),
            destination: destination.parse().expect("a code"),
            asset: asset.parse().expect("an asset"),
            amount: d(amount),
            cost: None,
        }
    }

    /// Projects `events` (from position `first` on) into a whole memory and flushes it.
    fn project(lots: &mut Lots, first: i64, events: &[Event]) {
        let recorded_at = DateTime::<Utc>::from_timestamp(1_796_000_000, 0).expect("a time");
        for (i, event) in events.iter().enumerate() {
            let applied = Applied {
                position: first + i as i64,
                event,
                recorded_at,
                legs: &[],
            };
            lots.project(&applied).expect("projected");
        }
        let mut out: Vec<TableRows> = PROJECTION
            .tables
            .iter()
            .map(|t| TableRows::new(t))
            .collect();
        let mut deletes: Vec<TableRows> = PROJECTION
            .deletes
            .iter()
            .map(|t| TableRows::new(t))
            .collect();
        lots.flush(&mut out, &mut deletes);
    }

    fn opening(events: &mut Vec<Event>) {
        for (asset, scale) in [("USD", 2), ("AAPL", 0)] {
            events.push(Event::AssetDefined(AssetDefined {
                asset: asset.parse().expect("an asset"),
                scale: Scale::try_from(scale).expect("a scale"),
            }));
        }
        for code in ["a", "b", "w"] {
            events.push(Event::AccountOpened(AccountOpened {
                account_id: AccountId(Uuid::new_v4()),
                code: code.parse().expect("a code"),
                allow_negative: code == "w",
                metadata: Metadata::default(),
                booking_method: None,
            }));
        }
        // b holds 10 AAPL that cost 1000.00.
        let mut gift = posting("w", "b", "AAPL", "10");
        gift.cost = Some(domain::event::Cost {
            amount: d("1000.00"),
            currency: "USD".parse().expect("an asset"),
        });
        events.push(Event::TransactionPosted(TransactionPosted {
            transaction_id: TransactionId(Uuid::new_v4()),
            kind: TransactionKind::Transfer,
            postings: vec![gift],
            metadata: Metadata::default(),
            pending: false,
            expires_at: None,
            reverses: None,
            forced: false,
            effective_at: None,
        }));
    }

    #[test]
    fn a_trade_that_fails_after_settling_in_part_keeps_the_part_in_its_lots() {
        let mut events = Vec::new();
        opening(&mut events);
        // a buys 10 from b at 150.00, to settle later; 4 settle, then the rest fails.
        let id = TransactionId(Uuid::new_v4());
        let reserved = vec![
            posting("b", "a", "AAPL", "10"),
            posting("a", "b", "USD", "1500.00"),
        ];
        events.push(Event::TradeExecuted(TradeExecuted {
            lots: Vec::new(),
            trade_id: id,
            buyer: "a".parse().expect("a code"),
            seller: "b".parse().expect("a code"),
            instrument: "AAPL".parse().expect("an asset"),
            quantity: d("10"),
            price: d("150"),
            currency: "USD".parse().expect("an asset"),
            notional: d("1500.00"),
            fees: Vec::new(),
            postings: reserved,
            metadata: Metadata::default(),
            pending: true,
            expires_at: None,
            effective_at: None,
            settlement_date: None,
            settles_at: None,
        }));
        let part = vec![
            posting("b", "a", "AAPL", "4"),
            posting("a", "b", "USD", "600.00"),
        ];
        let rest = vec![
            posting("b", "a", "AAPL", "6"),
            posting("a", "b", "USD", "900.00"),
        ];
        events.push(Event::PendingPosted(PendingPosted {
            pending_id: id,
            postings: part.clone(),
            released: part,
            remaining: rest.clone(),
            metadata: Metadata::default(),
            effective_at: None,
        }));
        let mut lots = Lots::new(true);
        project(&mut lots, 1, &events);
        let key = |account: &str| BookKey {
            account: account.parse().expect("a code"),
            instrument: "AAPL".parse().expect("an asset"),
            currency: "USD".parse().expect("an asset"),
        };
        // Lots follow the trade date: the whole trade counts until it fails.
        assert_eq!(lots.books[&key("a")].book.quantity(), d("10"));
        project(
            &mut lots,
            events.len() as i64 + 1,
            &[Event::PendingVoided(PendingVoided {
                pending_id: id,
                released: rest,
                metadata: Metadata::default(),
                reason: Some("counterparty failed to deliver".to_owned()),
                effective_at: None,
            })],
        );
        let buyer = &lots.books[&key("a")];
        assert_eq!(buyer.book.quantity(), d("4"));
        assert_eq!(buyer.book.amount(), d("600.00"));
        let seller = &lots.books[&key("b")];
        assert_eq!(seller.book.quantity(), d("6"));
        assert_eq!(seller.book.amount(), d("600.00"));
        // 4 of the 10 that cost 1000.00 went for 600.00.
        assert_eq!(seller.totals.realized, d("200.00"));
        assert_eq!(seller.totals.quantity, d("6"));
    }

    #[test]
    fn a_booking_method_applies_to_the_movements_after_it() {
        let history = [(3, BookingMethod::Lifo), (9, BookingMethod::Average)];
        assert_eq!(method_at(&history, 2), BookingMethod::Fifo);
        assert_eq!(method_at(&history, 4), BookingMethod::Lifo);
        assert_eq!(method_at(&history, 9), BookingMethod::Lifo);
        assert_eq!(method_at(&history, 10), BookingMethod::Average);
    }
}
