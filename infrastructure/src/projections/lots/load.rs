//! What the projector's lots memory loads before a page: the books its movements touch (open
//! lots and totals), the accounts' booking methods, the assets' scales, and for each transaction
//! the page reverses or settles short, the books it was in with every movement of theirs and
//! the trade's partial settlements. Tables in `schema`: the projection's own, at its checkpoint
//! (the start of the page), and the inline ones (`assets`, `events`, `hold_parts`), at the head.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use domain::lots::{movements_of, BookKey, Lot, Movement};
use domain::{AccountCode, AssetCode, BookingMethod, Event, Scale, TransactionId};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{BookState, Lots, Totals};
use crate::event_store::{StoredEvent, EVENT_COLUMNS};
use crate::projections::Applied;
use crate::{Error, Result};

/// What a page needs loaded.
#[derive(Default)]
struct Needs {
    /// Books its movements touch.
    touched: BTreeSet<BookKey>,
    /// Transactions it reverses, voids or expires.
    triggers: BTreeSet<TransactionId>,
    /// Of those, the ones voided or expired: their partial settlements.
    settled_short: BTreeSet<TransactionId>,
    /// The books of the page's own movements, by transaction.
    own: HashMap<TransactionId, BTreeSet<BookKey>>,
    /// Accounts whose booking method it changes, and accounts it opens.
    method_changes: BTreeSet<AccountCode>,
    opened: BTreeSet<AccountCode>,
}

impl Needs {
    fn of(page: &[Applied<'_>]) -> Self {
        let mut needs = Self::default();
        for applied in page {
            // Only the books matter here, not the dates.
            for (key, m) in movements_of(applied.event, applied.position, NaiveDate::MIN) {
                needs
                    .own
                    .entry(m.transaction_id)
                    .or_default()
                    .insert(key.clone());
                needs.touched.insert(key);
            }
            match applied.event {
                Event::TransactionPosted(e) => needs.triggers.extend(e.reverses),
                Event::PendingVoided(e) => {
                    needs.triggers.insert(e.pending_id);
                    needs.settled_short.insert(e.pending_id);
                }
                Event::PendingExpired(e) => {
                    needs.triggers.insert(e.pending_id);
                    needs.settled_short.insert(e.pending_id);
                }
                Event::BookingMethodSet(e) => {
                    needs.method_changes.insert(e.account.clone());
                }
                Event::AccountOpened(e) => {
                    needs.opened.insert(e.code.clone());
                }
                _ => {}
            }
        }
        needs
    }
}

/// `schema.table`, or the session's book's `table` for the empty schema.
fn table(schema: &str, name: &str) -> String {
    match schema {
        "" => name.to_owned(),
        schema => format!("{schema}.{name}"),
    }
}

pub(super) async fn prepare(
    lots: &mut Lots,
    conn: &mut PgConnection,
    schema: &str,
    page: &[Applied<'_>],
) -> Result<()> {
    let needs = Needs::of(page);
    if needs.touched.is_empty() && needs.triggers.is_empty() && needs.method_changes.is_empty() {
        return Ok(());
    }
    // The books of what the page reverses or settles short are computed again: every movement
    // of theirs is needed, from the tables and from the page itself.
    let mut recomputed = BTreeSet::new();
    for (x, key) in trigger_books(conn, schema, &needs.triggers).await? {
        lots.books_of.entry(x).or_default().insert(key.clone());
        recomputed.insert(key);
    }
    for x in &needs.triggers {
        for key in needs.own.get(x).into_iter().flatten() {
            lots.books_of.entry(*x).or_default().insert(key.clone());
            recomputed.insert(key.clone());
        }
    }
    load_parts(lots, conn, schema, &needs.settled_short).await?;
    let books: BTreeSet<BookKey> = needs.touched.union(&recomputed).cloned().collect();
    let assets: BTreeSet<&AssetCode> = books
        .iter()
        .flat_map(|k| [&k.instrument, &k.currency])
        .filter(|a| !lots.scales.contains_key(*a))
        .collect();
    load_scales(lots, conn, schema, &assets).await?;
    for account in &needs.opened {
        lots.methods.entry(account.clone()).or_default();
    }
    let accounts: BTreeSet<AccountCode> = books
        .iter()
        .map(|k| k.account.clone())
        .chain(needs.method_changes.iter().cloned())
        .filter(|a| !lots.methods.contains_key(a))
        .collect();
    load_methods(lots, conn, schema, &accounts).await?;
    let missing: Vec<&BookKey> = books
        .iter()
        .filter(|k| !lots.books.contains_key(*k))
        .collect();
    load_books(lots, conn, schema, &missing).await?;
    recomputed.extend(backdated_books(lots, page));
    let unlisted: Vec<&BookKey> = recomputed
        .iter()
        .filter(|k| lots.books.get(*k).is_some_and(|b| b.movements.is_none()))
        .collect();
    load_movements(lots, conn, schema, &unlisted).await
}

/// The books in which a movement of the page comes before one applied already (by the book's
/// latest, or an earlier movement of the page): computed again, so every movement is needed.
fn backdated_books(lots: &Lots, page: &[Applied<'_>]) -> BTreeSet<BookKey> {
    let mut latest: HashMap<BookKey, (NaiveDate, i64)> = HashMap::new();
    let mut backdated = BTreeSet::new();
    for applied in page {
        let date = applied.event.effective_or(applied.recorded_at).date_naive();
        for (key, m) in movements_of(applied.event, applied.position, date) {
            let stored = lots.books.get(&key).and_then(|b| b.totals.last);
            let last = latest.get(&key).copied().max(stored);
            if last.is_some_and(|last| (m.date, m.position) < last) {
                backdated.insert(key.clone());
            }
            let entry = latest.entry(key).or_insert((m.date, m.position));
            *entry = (*entry).max((m.date, m.position));
        }
    }
    backdated
}

/// The books the movements of each of `triggers` are in, as the tables hold them.
async fn trigger_books(
    conn: &mut PgConnection,
    schema: &str,
    triggers: &BTreeSet<TransactionId>,
) -> Result<Vec<(TransactionId, BookKey)>> {
    if triggers.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = triggers.iter().map(|t| t.0).collect();
    let rows: Vec<(Uuid, String, String, String)> = sqlx::query_as(&format!(
        "SELECT DISTINCT transaction_id, account, instrument, currency FROM {}
         WHERE transaction_id = ANY($1)",
        table(schema, "lot_movements")
    ))
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, account, instrument, currency)| {
            Ok((TransactionId(id), book_key(account, instrument, currency)?))
        })
        .collect()
}

pub(crate) fn book_key(account: String, instrument: String, currency: String) -> Result<BookKey> {
    let corrupt = |e: domain::ValueError| Error::Corrupt(format!("a lots row: {e}"));
    Ok(BookKey {
        account: AccountCode::try_from(account).map_err(corrupt)?,
        instrument: AssetCode::try_from(instrument).map_err(corrupt)?,
        currency: AssetCode::try_from(currency).map_err(corrupt)?,
    })
}

/// The partial settlements of the trades `ids`, from the log (`hold_parts` lists them).
async fn load_parts(
    lots: &mut Lots,
    conn: &mut PgConnection,
    schema: &str,
    ids: &BTreeSet<TransactionId>,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = ids.iter().map(|t| t.0).collect();
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM {} p JOIN {} e ON e.position = p.position
         WHERE p.transaction_id = ANY($1) ORDER BY p.position",
        table(schema, "hold_parts"),
        table(schema, "events")
    ))
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    for row in &rows {
        let stored = StoredEvent::from_row(row)?;
        let Event::PendingPosted(part) = stored.decode()? else {
            return Err(Error::Corrupt(format!(
                "the hold part at position {} is not a partial settlement",
                stored.position
            )));
        };
        let parts = lots.parts.entry(part.pending_id).or_default();
        parts.insert(stored.position, part.postings);
    }
    Ok(())
}

async fn load_scales(
    lots: &mut Lots,
    conn: &mut PgConnection,
    schema: &str,
    assets: &BTreeSet<&AssetCode>,
) -> Result<()> {
    if assets.is_empty() {
        return Ok(());
    }
    let codes: Vec<&str> = assets.iter().map(|a| a.as_str()).collect();
    let rows: Vec<(String, i16)> = sqlx::query_as(&format!(
        "SELECT code, scale FROM {} WHERE code = ANY($1)",
        table(schema, "assets")
    ))
    .bind(&codes)
    .fetch_all(conn)
    .await?;
    for (code, scale) in rows {
        let asset = AssetCode::try_from(code).map_err(crate::projections::assets::corrupt)?;
        let scale = Scale::try_from(u32::try_from(scale).unwrap_or(u32::MAX))
            .map_err(crate::projections::assets::corrupt)?;
        lots.scales.insert(asset, scale);
    }
    Ok(())
}

/// The whole history of booking methods of `accounts`.
async fn load_methods(
    lots: &mut Lots,
    conn: &mut PgConnection,
    schema: &str,
    accounts: &BTreeSet<AccountCode>,
) -> Result<()> {
    if accounts.is_empty() {
        return Ok(());
    }
    let codes: Vec<&str> = accounts.iter().map(AccountCode::as_str).collect();
    let rows: Vec<(String, i64, String)> = sqlx::query_as(&format!(
        "SELECT account, position, booking_method FROM {} WHERE account = ANY($1)
         ORDER BY account, position",
        table(schema, "booking_methods")
    ))
    .bind(&codes)
    .fetch_all(conn)
    .await?;
    for account in accounts {
        lots.methods.entry(account.clone()).or_default();
    }
    for (account, position, method) in rows {
        let account =
            AccountCode::try_from(account).map_err(crate::projections::assets::corrupt)?;
        let method: BookingMethod = method
            .parse()
            .map_err(crate::projections::assets::corrupt)?;
        lots.methods
            .entry(account)
            .or_default()
            .push((position, method));
    }
    Ok(())
}

/// The parameters that name a list of books: account, instrument and currency arrays.
fn book_arrays<'k>(keys: &[&'k BookKey]) -> (Vec<&'k str>, Vec<&'k str>, Vec<&'k str>) {
    let mut arrays = (Vec::new(), Vec::new(), Vec::new());
    for key in keys {
        arrays.0.push(key.account.as_str());
        arrays.1.push(key.instrument.as_str());
        arrays.2.push(key.currency.as_str());
    }
    arrays
}

/// A row of `lots` as read: the book, the leg, and the lot.
type LotRow = (
    String,
    String,
    String,
    String,
    i16,
    Uuid,
    i64,
    NaiveDate,
    Decimal,
    Decimal,
);

/// A movement as `lot_movements` holds it.
type MovementRow = (
    String,
    String,
    String,
    String,
    i16,
    Uuid,
    i64,
    NaiveDate,
    Decimal,
    Decimal,
    Option<String>,
);

/// The open lots and totals of `keys` (a book with no rows yet is empty).
async fn load_books(
    lots: &mut Lots,
    conn: &mut PgConnection,
    schema: &str,
    keys: &[&BookKey],
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (accounts, instruments, currencies) = book_arrays(keys);
    type TotalsRow = (
        String,
        String,
        String,
        Decimal,
        Decimal,
        Decimal,
        Option<NaiveDate>,
        Option<i64>,
    );
    let totals: Vec<TotalsRow> = sqlx::query_as(&format!(
        "SELECT b.account, b.instrument, b.currency, b.quantity, b.amount, b.realized,
                    b.last_trade_date, b.last_position
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(account, instrument, currency)
             JOIN {} b USING (account, instrument, currency)",
        table(schema, "lot_books")
    ))
    .bind(&accounts)
    .bind(&instruments)
    .bind(&currencies)
    .fetch_all(&mut *conn)
    .await?;
    let rows: Vec<LotRow> = sqlx::query_as(&format!(
        "SELECT l.account, l.instrument, l.currency, l.lot_id, l.leg, l.transaction_id,
                l.position, l.trade_date, l.quantity, l.cost
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(account, instrument, currency)
         JOIN {} l USING (account, instrument, currency)
         ORDER BY 1, 2, 3, l.trade_date, l.position, l.leg",
        table(schema, "lots")
    ))
    .bind(&accounts)
    .bind(&instruments)
    .bind(&currencies)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_book: HashMap<BookKey, (Totals, Vec<(i16, Lot)>)> = HashMap::new();
    for (account, instrument, currency, quantity, amount, realized, date, position) in totals {
        let totals = Totals {
            quantity,
            amount,
            realized,
            last: date.zip(position),
        };
        by_book.insert(
            book_key(account, instrument, currency)?,
            (totals, Vec::new()),
        );
    }
    for (account, instrument, currency, lot_id, leg, id, position, date, quantity, cost) in rows {
        let key = book_key(account, instrument, currency)?;
        let lot = Lot {
            lot_id,
            transaction_id: TransactionId(id),
            position,
            date,
            quantity,
            amount: cost,
        };
        by_book.entry(key).or_default().1.push((leg, lot));
    }
    for key in keys {
        let (totals, open) = by_book.remove(*key).unwrap_or_default();
        let state = BookState::loaded(
            lots.scale(&key.currency)?,
            lots.scale(&key.instrument)?,
            open,
            totals,
        );
        lots.books.insert((*key).clone(), state);
    }
    Ok(())
}

/// Every movement of `keys`, in the order movements apply, into their (loaded) books.
async fn load_movements(
    lots: &mut Lots,
    conn: &mut PgConnection,
    schema: &str,
    keys: &[&BookKey],
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (accounts, instruments, currencies) = book_arrays(keys);
    let rows: Vec<MovementRow> = sqlx::query_as(&format!(
        "SELECT m.account, m.instrument, m.currency, m.lot_id, m.leg, m.transaction_id,
                m.position, m.trade_date, m.quantity, m.amount, m.picks
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(account, instrument, currency)
         JOIN {} m USING (account, instrument, currency)
         ORDER BY 1, 2, 3, m.trade_date, m.position, m.leg",
        table(schema, "lot_movements")
    ))
    .bind(&accounts)
    .bind(&instruments)
    .bind(&currencies)
    .fetch_all(conn)
    .await?;
    let mut by_book: HashMap<BookKey, Vec<(i16, Movement)>> = HashMap::new();
    for (account, instrument, currency, lot_id, leg, id, position, date, quantity, amount, picks) in
        rows
    {
        let movement = super::stored_movement(lot_id, id, position, date, quantity, amount, picks)?;
        let key = book_key(account, instrument, currency)?;
        by_book.entry(key).or_default().push((leg, movement));
    }
    for key in keys {
        if let Some(state) = lots.books.get_mut(*key) {
            state.movements = Some(by_book.remove(*key).unwrap_or_default());
        }
    }
    Ok(())
}
