//! Reads of the lots: an account's books now (open lots, realized, the latest mark) or as of a
//! date (computed again from the movements with a trade date by then), its closed parts over a
//! range of dates, and the books of every account under a code prefix summed per instrument and
//! currency. Each in one snapshot, which reflects at least the floor, and checked as read: a
//! book's open lots add up to its movements less what they closed.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use domain::lots::Lot;
use domain::{AccountCode, AssetCode, BookingMethod, Scale, TransactionId};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{method_at, signed, BookState, Totals};
use crate::projections::balances::{balances_of, BalanceRecord};
use crate::projections::effective::as_of_laterals;
use crate::projections::postings::{past_balances, READ_NEEDS as POSTINGS_NEEDS};
use crate::projections::prices::latest_mark_sql;
use crate::projections::rollups::{count_under, under};
use crate::reads::{at_scale, AtPosition, ReadStore};
use crate::{Error, Result};

/// The asynchronous projections a read of positions needs.
const READ_NEEDS: &[&str] = &[
    super::PROJECTION.name,
    crate::projections::prices::PROJECTION.name,
];

/// A mark a position is valued at.
#[derive(Debug, Clone)]
pub struct MarkAt {
    pub price: Decimal,
    pub as_of: DateTime<Utc>,
    pub position: i64,
}

/// One book of an account as read.
#[derive(Debug, Clone)]
pub struct BookRead {
    pub instrument: String,
    pub currency: String,
    /// The instrument's and the currency's scales.
    pub units: i16,
    pub scale: i16,
    /// Open lots in the order they were opened; a short lot's quantity is negative and its
    /// `amount` is what its sale brought.
    pub lots: Vec<Lot>,
    pub realized: Decimal,
    /// The latest mark of the pair at or before the time read (none when there is none).
    pub mark: Option<MarkAt>,
}

/// An account's positions as read.
#[derive(Debug, Clone)]
pub struct PositionsRead {
    /// Its booking method now.
    pub booking_method: BookingMethod,
    pub books: Vec<BookRead>,
    /// Its balances (as of the date, when read as of one: posted only).
    pub balances: Vec<BalanceRecord>,
}

/// Positions as of a date, or why they were not computed.
#[derive(Debug, Clone)]
pub enum PositionsAsOf {
    Read(PositionsRead),
    /// More than `movements_max` movements by that date.
    TooManyMovements {
        movements_max: i64,
    },
}

/// One closed part as read.
#[derive(Debug, Clone)]
pub struct ClosingRead {
    pub instrument: String,
    pub currency: String,
    pub units: i16,
    pub scale: i16,
    pub position: i64,
    pub part: i16,
    pub lot_id: String,
    pub transaction_id: Uuid,
    pub opened: NaiveDate,
    pub closed: NaiveDate,
    pub quantity: Decimal,
    pub cost: Decimal,
    pub proceeds: Decimal,
}

/// The books of the accounts under a prefix, per instrument and currency.
#[derive(Debug, Clone)]
pub struct PositionRollup {
    pub instrument: String,
    pub currency: String,
    pub units: i16,
    pub scale: i16,
    /// The accounts' quantities in the instrument (posted, pending credits in, pending debits
    /// out), of every account with a book in the pair.
    pub quantity: Decimal,
    pub lots_quantity: Decimal,
    /// Open lots' amounts, short lots' taken off.
    pub cost_basis: Decimal,
    pub realized: Decimal,
    pub mark: Option<MarkAt>,
}

/// A roll-up, or why it was not summed.
#[derive(Debug, Clone)]
pub enum PositionRollupRead {
    Summed {
        accounts: i64,
        rows: Vec<PositionRollup>,
    },
    TooManyAccounts {
        accounts_max: i64,
    },
}

type BookRow = (String, String, i16, i16, Decimal, Decimal, Decimal);
type LotRow = (
    String,
    String,
    String,
    Uuid,
    i64,
    NaiveDate,
    Decimal,
    Decimal,
);

impl ReadStore {
    /// An account's open long lots in one book, (lot id, quantity) in the order they were
    /// opened, as known at the position the lots projection reflects: what a sale that names
    /// lots is checked against (`domain::command::OpenLots`).
    pub async fn open_lots(
        &self,
        account: &AccountCode,
        instrument: &AssetCode,
        currency: &AssetCode,
    ) -> Result<AtPosition<Vec<(String, Decimal)>>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let lots: Vec<(String, Decimal)> = sqlx::query_as(
            "SELECT lot_id, quantity FROM lots
             WHERE account = $1 AND instrument = $2 AND currency = $3 AND quantity > 0
             ORDER BY trade_date, position, leg",
        )
        .bind(account.as_str())
        .bind(instrument.as_str())
        .bind(currency.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AtPosition {
            value: lots,
            position,
        })
    }

    /// The books of `account` now: open lots, realized P&L and the latest mark of each, its
    /// balances and its booking method.
    pub async fn positions(
        &self,
        account: &AccountCode,
        account_id: Uuid,
    ) -> Result<AtPosition<PositionsRead>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let books: Vec<BookRow> = sqlx::query_as(
            "SELECT b.instrument, b.currency, i.scale, c.scale, b.quantity, b.amount, b.realized
             FROM lot_books b JOIN assets i ON i.code = b.instrument
             JOIN assets c ON c.code = b.currency
             WHERE b.account = $1 ORDER BY b.instrument, b.currency",
        )
        .bind(account.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let lots: Vec<LotRow> = sqlx::query_as(
            "SELECT instrument, currency, lot_id, transaction_id, position, trade_date, quantity, cost
             FROM lots WHERE account = $1
             ORDER BY instrument, currency, trade_date, position, leg",
        )
        .bind(account.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut open = group_lots(lots);
        let mut read = Vec::with_capacity(books.len());
        for (instrument, currency, units, scale, quantity, amount, realized) in books {
            let lots = open
                .remove(&(instrument.clone(), currency.clone()))
                .unwrap_or_default();
            let totals = Totals {
                quantity,
                amount,
                realized,
                last: None,
            };
            check_book(account, &instrument, &currency, &lots, totals)?;
            read.push(book_read(
                instrument, currency, units, scale, lots, realized,
            ));
        }
        marks_of(&mut tx, &mut read, None).await?;
        let balances = balances_of(&mut tx, account_id).await?;
        let history = methods_of(&mut tx, account).await?;
        tx.commit().await?;
        let booking_method = history.last().map_or_else(BookingMethod::default, |h| h.1);
        Ok(AtPosition {
            value: PositionsRead {
                booking_method,
                books: read,
                balances,
            },
            position,
        })
    }

    /// The books of `account` as of `as_of`: computed again from its movements with a trade date
    /// on or before its date (UTC), in trade date then position order, by the booking method in force at each, as
    /// known now; balances as of `as_of` (posted only), marks at or before it. Refused past
    /// `movements_max` movements.
    pub async fn positions_as_of(
        &self,
        account: &AccountCode,
        account_id: Uuid,
        as_of: DateTime<Utc>,
        movements_max: i64,
    ) -> Result<AtPosition<PositionsAsOf>> {
        let needs: Vec<&str> = READ_NEEDS.iter().chain(POSTINGS_NEEDS).copied().collect();
        let (mut tx, position) = self.snapshot_of(&needs).await?;
        let date = as_of.date_naive();
        let counted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM lot_movements
             WHERE account = $1 AND trade_date <= $2 LIMIT $3) m",
        )
        .bind(account.as_str())
        .bind(date)
        .bind(movements_max + 1)
        .fetch_one(&mut *tx)
        .await?;
        if counted > movements_max {
            tx.commit().await?;
            let value = PositionsAsOf::TooManyMovements { movements_max };
            return Ok(AtPosition { value, position });
        }
        let history = methods_of(&mut tx, account).await?;
        let mut books = books_as_of(&mut tx, account, date, &history).await?;
        marks_of(&mut tx, &mut books, Some(as_of)).await?;
        let balances = balances_as_of(&mut tx, account_id, as_of, position).await?;
        tx.commit().await?;
        let booking_method = history.last().map_or_else(BookingMethod::default, |h| h.1);
        let read = PositionsRead {
            booking_method,
            books,
            balances,
        };
        Ok(AtPosition {
            value: PositionsAsOf::Read(read),
            position,
        })
    }

    /// The parts of lots `account` closed with a trade date from `from` to `to` (both
    /// included; from the first, to the last, when absent), in one instrument when given, in
    /// order of date and position; `None` when there are more than `parts_max`.
    pub async fn realized(
        &self,
        account: &AccountCode,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        instrument: Option<&str>,
        parts_max: i64,
    ) -> Result<AtPosition<Option<Vec<ClosingRead>>>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let range = (from, to, instrument);
        let parts = closings_of(&mut tx, account, range, parts_max + 1).await?;
        if parts.len() as i64 > parts_max {
            tx.commit().await?;
            return Ok(AtPosition {
                value: None,
                position,
            });
        }
        if from.is_none() && to.is_none() {
            check_realized(&mut tx, account, instrument, &parts).await?;
        }
        tx.commit().await?;
        Ok(AtPosition {
            value: Some(parts),
            position,
        })
    }

    /// The books of every account under `prefix` (whole segments; `` for all), summed per
    /// instrument and currency, with the latest mark of each; refused past `accounts_max`
    /// accounts, as the sums read each account's books.
    pub async fn position_rollup(
        &self,
        prefix: &str,
        accounts_max: i64,
    ) -> Result<AtPosition<PositionRollupRead>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let Some(accounts) = count_under(&mut tx, prefix, position, accounts_max).await? else {
            tx.commit().await?;
            let value = PositionRollupRead::TooManyAccounts { accounts_max };
            return Ok(AtPosition { value, position });
        };
        let rows = rollup_rows(&mut tx, prefix, position).await?;
        tx.commit().await?;
        Ok(AtPosition {
            value: PositionRollupRead::Summed { accounts, rows },
            position,
        })
    }
}

type RollupRow = (
    String,
    String,
    i16,
    i16,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Option<Decimal>,
    Option<DateTime<Utc>>,
    Option<i64>,
);

async fn rollup_rows(
    conn: &mut PgConnection,
    prefix: &str,
    head: i64,
) -> Result<Vec<PositionRollup>> {
    let rows: Vec<RollupRow> = sqlx::query_as(&format!(
        "WITH a AS (SELECT a.id, a.code FROM accounts a WHERE {}),
         k AS (SELECT b.account, b.instrument, b.currency, b.realized
               FROM lot_books b JOIN a ON a.code = b.account),
         held AS (SELECT k.instrument, k.currency,
                         sum(x.balance + x.pending_credits - x.pending_debits) AS quantity
                  FROM k JOIN a ON a.code = k.account
                  JOIN balances x ON x.account_id = a.id AND x.asset = k.instrument
                  GROUP BY 1, 2),
         open AS (SELECT l.instrument, l.currency, sum(l.quantity) AS quantity,
                         sum(CASE WHEN l.quantity < 0 THEN -l.cost ELSE l.cost END) AS cost
                  FROM lots l JOIN a ON a.code = l.account GROUP BY 1, 2),
         pairs AS (SELECT instrument, currency, sum(realized) AS realized FROM k GROUP BY 1, 2)
         SELECT p.instrument, p.currency, i.scale, c.scale, COALESCE(h.quantity, 0),
                COALESCE(o.quantity, 0), COALESCE(o.cost, 0), p.realized, m.price, m.as_of,
                m.position
         FROM pairs p JOIN assets i ON i.code = p.instrument JOIN assets c ON c.code = p.currency
         LEFT JOIN held h USING (instrument, currency)
         LEFT JOIN open o USING (instrument, currency)
         LEFT JOIN LATERAL ({}) m ON true
         ORDER BY p.instrument, p.currency",
        under(prefix, "$2"),
        latest_mark_sql("p.instrument", "p.currency", "'infinity'::timestamptz"),
    ))
    .bind(prefix)
    .bind(head)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PositionRollup {
            quantity: at_scale(r.4, r.2),
            lots_quantity: at_scale(r.5, r.2),
            cost_basis: at_scale(r.6, r.3),
            realized: at_scale(r.7, r.3),
            mark: match (r.8, r.9, r.10) {
                (Some(price), Some(as_of), Some(position)) => Some(MarkAt {
                    price,
                    as_of,
                    position,
                }),
                _ => None,
            },
            instrument: r.0,
            currency: r.1,
            units: r.2,
            scale: r.3,
        })
        .collect())
}

/// A closed part as read: book and scales, position and part, lot, transaction, dates, figures.
type ClosingRow = (
    String,
    String,
    i16,
    i16,
    i64,
    i16,
    String,
    Uuid,
    NaiveDate,
    NaiveDate,
    Decimal,
    Decimal,
    Decimal,
);

/// The parts `account` closed in a range of trade dates (and an instrument), at most `limit`.
async fn closings_of(
    conn: &mut PgConnection,
    account: &AccountCode,
    (from, to, instrument): (Option<NaiveDate>, Option<NaiveDate>, Option<&str>),
    limit: i64,
) -> Result<Vec<ClosingRead>> {
    let rows: Vec<ClosingRow> = sqlx::query_as(
        "SELECT c.instrument, c.currency, i.scale, s.scale, c.position, c.part, c.lot_id,
                c.transaction_id, c.opened, c.closed, c.quantity, c.cost, c.proceeds
         FROM lot_closings c JOIN assets i ON i.code = c.instrument
         JOIN assets s ON s.code = c.currency
         WHERE c.account = $1 AND ($2::date IS NULL OR c.closed >= $2)
           AND ($3::date IS NULL OR c.closed <= $3)
           AND ($4::text IS NULL OR c.instrument = $4)
         ORDER BY c.closed, c.position, c.instrument, c.currency, c.part LIMIT $5",
    )
    .bind(account.as_str())
    .bind(from)
    .bind(to)
    .bind(instrument)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ClosingRead {
            instrument: r.0,
            currency: r.1,
            units: r.2,
            scale: r.3,
            position: r.4,
            part: r.5,
            lot_id: r.6,
            transaction_id: r.7,
            opened: r.8,
            closed: r.9,
            quantity: at_scale(r.10, r.2),
            cost: at_scale(r.11, r.3),
            proceeds: at_scale(r.12, r.3),
        })
        .collect())
}

/// The check on every closed part of an account's books (in an instrument): per book, their
/// realized P&L adds up to the book's. Anything else is a damaged projection, never served.
async fn check_realized(
    conn: &mut PgConnection,
    account: &AccountCode,
    instrument: Option<&str>,
    parts: &[ClosingRead],
) -> Result<()> {
    let books: Vec<(String, String, Decimal)> = sqlx::query_as(
        "SELECT instrument, currency, realized FROM lot_books
         WHERE account = $1 AND ($2::text IS NULL OR instrument = $2)",
    )
    .bind(account.as_str())
    .bind(instrument)
    .fetch_all(conn)
    .await?;
    let mut sums: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for part in parts {
        let key = (part.instrument.clone(), part.currency.clone());
        *sums.entry(key).or_default() += part.proceeds - part.cost;
    }
    for (instrument, currency, realized) in books {
        let sum = sums.remove(&(instrument.clone(), currency.clone()));
        if sum.unwrap_or_default() != realized {
            return Err(Error::Corrupt(format!(
                "the closed parts of {account} in {instrument}/{currency} realized {}, the book {realized}",
                sum.unwrap_or_default()
            )));
        }
    }
    match sums.into_keys().next() {
        Some((instrument, currency)) => Err(Error::Corrupt(format!(
            "{account} closed parts in {instrument}/{currency}, which has no book"
        ))),
        None => Ok(()),
    }
}

/// The open lots read, by (instrument, currency), in their order.
fn group_lots(rows: Vec<LotRow>) -> BTreeMap<(String, String), Vec<Lot>> {
    let mut by_book: BTreeMap<(String, String), Vec<Lot>> = BTreeMap::new();
    for (instrument, currency, lot_id, id, position, date, quantity, cost) in rows {
        by_book
            .entry((instrument, currency))
            .or_default()
            .push(Lot {
                lot_id,
                transaction_id: TransactionId(id),
                position,
                date,
                quantity,
                amount: cost,
            });
    }
    by_book
}

fn book_read(
    instrument: String,
    currency: String,
    units: i16,
    scale: i16,
    lots: Vec<Lot>,
    realized: Decimal,
) -> BookRead {
    let lots = lots
        .into_iter()
        .map(|lot| Lot {
            quantity: at_scale(lot.quantity, units),
            amount: at_scale(lot.amount, scale),
            ..lot
        })
        .collect();
    BookRead {
        instrument,
        currency,
        units,
        scale,
        lots,
        realized: at_scale(realized, scale),
        mark: None,
    }
}

/// The checks on a book as read: its open lots' quantities add up to its movements', and their
/// amounts (a short lot's taken off) less its realized P&L to its movements' (disposals taken
/// off). Anything else is a damaged projection, never served.
fn check_book(
    account: &AccountCode,
    instrument: &str,
    currency: &str,
    lots: &[Lot],
    totals: Totals,
) -> Result<()> {
    let quantity: Decimal = lots.iter().map(|l| l.quantity).sum();
    let amount: Decimal = lots.iter().map(|l| signed(l.quantity, l.amount)).sum();
    if quantity != totals.quantity || amount - totals.realized != totals.amount {
        return Err(Error::Corrupt(format!(
            "the lots of {account} in {instrument}/{currency} do not add up: open {quantity} \
             costing {amount} with {} realized, against movements of {} for {}",
            totals.realized, totals.quantity, totals.amount
        )));
    }
    Ok(())
}

/// Fills in the latest mark at or before `as_of` (the latest of all when `None`) of each book.
async fn marks_of(
    conn: &mut PgConnection,
    books: &mut [BookRead],
    as_of: Option<DateTime<Utc>>,
) -> Result<()> {
    if books.is_empty() {
        return Ok(());
    }
    let instruments: Vec<&str> = books.iter().map(|b| b.instrument.as_str()).collect();
    let currencies: Vec<&str> = books.iter().map(|b| b.currency.as_str()).collect();
    let rows: Vec<(String, String, Decimal, DateTime<Utc>, i64)> = sqlx::query_as(&format!(
        "SELECT u.instrument, u.currency, m.price, m.as_of, m.position
         FROM UNNEST($1::text[], $2::text[]) AS u(instrument, currency)
         CROSS JOIN LATERAL ({}) m",
        latest_mark_sql(
            "u.instrument",
            "u.currency",
            "COALESCE($3, 'infinity'::timestamptz)"
        )
    ))
    .bind(&instruments)
    .bind(&currencies)
    .bind(as_of)
    .fetch_all(conn)
    .await?;
    for (instrument, currency, price, as_of, position) in rows {
        let found = books
            .iter_mut()
            .find(|b| b.instrument == instrument && b.currency == currency);
        if let Some(book) = found {
            book.mark = Some(MarkAt {
                price,
                as_of,
                position,
            });
        }
    }
    Ok(())
}

/// An account's booking methods in log order.
async fn methods_of(
    conn: &mut PgConnection,
    account: &AccountCode,
) -> Result<Vec<(i64, BookingMethod)>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, booking_method FROM booking_methods WHERE account = $1 ORDER BY position",
    )
    .bind(account.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(position, method)| {
            let method = method
                .parse()
                .map_err(crate::projections::assets::corrupt)?;
            Ok((position, method))
        })
        .collect()
}

type MovementRow = (
    String,
    String,
    i16,
    i16,
    String,
    i16,
    Uuid,
    i64,
    NaiveDate,
    Decimal,
    Decimal,
    Option<String>,
);

/// An account's books computed again from its movements with a trade date on or before `date`.
async fn books_as_of(
    conn: &mut PgConnection,
    account: &AccountCode,
    date: NaiveDate,
    history: &[(i64, BookingMethod)],
) -> Result<Vec<BookRead>> {
    let rows: Vec<MovementRow> = sqlx::query_as(
        "SELECT m.instrument, m.currency, i.scale, c.scale, m.lot_id, m.leg, m.transaction_id,
                m.position, m.trade_date, m.quantity, m.amount, m.picks
         FROM lot_movements m JOIN assets i ON i.code = m.instrument
         JOIN assets c ON c.code = m.currency
         WHERE m.account = $1 AND m.trade_date <= $2
         ORDER BY m.instrument, m.currency, m.trade_date, m.position, m.leg",
    )
    .bind(account.as_str())
    .bind(date)
    .fetch_all(conn)
    .await?;
    let mut books: BTreeMap<(String, String), (i16, i16, BookState)> = BTreeMap::new();
    for (
        instrument,
        currency,
        units,
        scale,
        lot_id,
        leg,
        id,
        position,
        date,
        quantity,
        amount,
        picks,
    ) in rows
    {
        let pair = (instrument, currency);
        if !books.contains_key(&pair) {
            let state = BookState::new(scale_of(scale)?, scale_of(units)?, false);
            books.insert(pair.clone(), (units, scale, state));
        }
        let Some((_, _, state)) = books.get_mut(&pair) else {
            continue;
        };
        let movement = super::stored_movement(lot_id, id, position, date, quantity, amount, picks)?;
        state.apply(leg, movement, method_at(history, position));
    }
    let mut read = Vec::with_capacity(books.len());
    for ((instrument, currency), (units, scale, state)) in books {
        check_book(
            account,
            &instrument,
            &currency,
            &state.book.lots,
            state.totals,
        )?;
        let realized = state.totals.realized;
        read.push(book_read(
            instrument,
            currency,
            units,
            scale,
            state.book.lots,
            realized,
        ));
    }
    Ok(read)
}

/// A scale a row names.
fn scale_of(scale: i16) -> Result<Scale> {
    Scale::try_from(u32::try_from(scale).unwrap_or(u32::MAX))
        .map_err(crate::projections::assets::corrupt)
}

/// An account's posted balances as of `as_of`, as known at `known_at`.
async fn balances_as_of(
    conn: &mut PgConnection,
    account_id: Uuid,
    as_of: DateTime<Utc>,
    known_at: i64,
) -> Result<Vec<BalanceRecord>> {
    let rows: Vec<(String, i16, i64, Decimal)> = sqlx::query_as(&format!(
        "SELECT a.asset, a.scale, c.position, l.balance_after - x.later
         FROM (SELECT b.asset, s.scale FROM balances b JOIN assets s ON s.code = b.asset
               WHERE b.account_id = $1) a
         {}
         ORDER BY a.asset",
        as_of_laterals("$1", "a.asset")
    ))
    .bind(account_id)
    .bind(as_of)
    .bind(known_at)
    .fetch_all(conn)
    .await?;
    Ok(past_balances(rows))
}
