//! The rows the inline projections get from a run of events, gathered as columns: what the
//! writer adds to each batch, and what a replay or an import rebuilds from the log. Every table
//! but `balances` is insert-only; balances are upserted once per (account, asset) per batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{AccountId, AssetCode, Event, LedgerState, Leg};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

#[derive(Default)]
pub struct ProjectionRows {
    assets: AssetColumns,
    accounts: AccountColumns,
    postings: PostingColumns,
    transactions: TransactionColumns,
    status_changes: StatusChangeColumns,
    limits: LimitColumns,
    holds: HoldColumns,
    settlements: SettlementColumns,
    reversals: ReversalColumns,
    /// Final figures per (account, asset) touched, and the position of the last event that
    /// touched them: written once per batch, not once per leg.
    pub(crate) balances: HashMap<(AccountId, AssetCode), BalanceRow>,
}

/// A balance row: posted, pending debits, pending credits, and the position of its last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BalanceRow {
    pub posted: Decimal,
    pub pending_debits: Decimal,
    pub pending_credits: Decimal,
    pub position: i64,
}

#[derive(Default)]
struct AssetColumns {
    code: Vec<String>,
    scale: Vec<i16>,
    position: Vec<i64>,
}

#[derive(Default)]
struct AccountColumns {
    id: Vec<Uuid>,
    code: Vec<String>,
    allow_negative: Vec<bool>,
    metadata: Vec<String>,
    position: Vec<i64>,
    opened_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct PostingColumns {
    account_id: Vec<Uuid>,
    position: Vec<i64>,
    leg: Vec<i16>,
    asset: Vec<String>,
    amount: Vec<Decimal>,
    balance_after: Vec<Decimal>,
    transaction_id: Vec<Uuid>,
    counterparty_id: Vec<Uuid>,
    recorded_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct StatusChangeColumns {
    account_id: Vec<Uuid>,
    position: Vec<i64>,
    status: Vec<&'static str>,
    metadata: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct LimitColumns {
    account_id: Vec<Uuid>,
    asset: Vec<String>,
    position: Vec<i64>,
    min_balance: Vec<Option<Decimal>>,
    max_balance: Vec<Option<Decimal>>,
    recorded_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct TransactionColumns {
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    position: Vec<i64>,
}

#[derive(Default)]
struct HoldColumns {
    transaction_id: Vec<Uuid>,
    position: Vec<i64>,
    expires_at: Vec<Option<DateTime<Utc>>>,
}

#[derive(Default)]
struct ReversalColumns {
    transaction_id: Vec<Uuid>,
    reverses: Vec<Uuid>,
    position: Vec<i64>,
}

#[derive(Default)]
struct SettlementColumns {
    transaction_id: Vec<Uuid>,
    outcome: Vec<&'static str>,
    position: Vec<i64>,
    recorded_at: Vec<DateTime<Utc>>,
}

/// The kind of a transaction as the `transactions` projection records it; settlements are filed
/// under the pending transaction they settle.
fn transaction_kind(event: &Event) -> Option<&'static str> {
    match event {
        Event::TransactionPosted(e) => Some(e.kind.as_str()),
        Event::TradeExecuted(_) => Some("trade"),
        _ => None,
    }
}

fn settlement_outcome(event: &Event) -> Option<&'static str> {
    match event {
        Event::PendingPosted(_) => Some("posted"),
        Event::PendingVoided(_) => Some("voided"),
        Event::PendingExpired(_) => Some("expired"),
        _ => None,
    }
}

impl ProjectionRows {
    /// Adds the rows of an event at `position`, applied to `state` (which resolves account codes
    /// and holds the figures after it), with the legs `apply` returned for it.
    pub fn push(
        &mut self,
        position: i64,
        event: &Event,
        legs: &[Leg],
        recorded_at: DateTime<Utc>,
        state: &LedgerState,
    ) {
        let changed_account = event
            .account_changed()
            .and_then(|code| state.account_by_code(code))
            .map(|account| account.id.0);
        match (event, changed_account) {
            (Event::AssetDefined(a), _) => {
                self.assets.code.push(a.asset.to_string());
                self.assets.scale.push(a.scale.get() as i16);
                self.assets.position.push(position);
            }
            (Event::AccountOpened(a), _) => {
                let c = &mut self.accounts;
                c.id.push(a.account_id.0);
                c.code.push(a.code.to_string());
                c.allow_negative.push(a.allow_negative);
                c.metadata
                    .push(serde_json::Value::Object(a.metadata.as_map().clone()).to_string());
                c.position.push(position);
                c.opened_at.push(recorded_at);
            }
            (Event::AccountStatusChanged(e), Some(id)) => {
                let s = &mut self.status_changes;
                s.account_id.push(id);
                s.position.push(position);
                s.status.push(e.status.as_str());
                s.metadata
                    .push(serde_json::Value::Object(e.metadata.as_map().clone()).to_string());
                s.recorded_at.push(recorded_at);
            }
            (Event::AccountLimitsSet(e), Some(id)) => {
                let l = &mut self.limits;
                l.account_id.push(id);
                l.asset.push(e.asset.to_string());
                l.position.push(position);
                l.min_balance.push(e.min_balance);
                l.max_balance.push(e.max_balance);
                l.recorded_at.push(recorded_at);
            }
            _ => {}
        }
        let Some(id) = event.transaction_id() else {
            return;
        };
        if let Some(kind) = transaction_kind(event) {
            self.transactions.id.push(id.0);
            self.transactions.kind.push(kind);
            self.transactions.position.push(position);
        }
        if let Event::TransactionPosted(e) = event {
            if let Some(original) = e.reverses {
                self.reversals.transaction_id.push(id.0);
                self.reversals.reverses.push(original.0);
                self.reversals.position.push(position);
            }
        }
        if event.is_pending() {
            let expires_at = match event {
                Event::TransactionPosted(e) => e.expires_at,
                Event::TradeExecuted(e) => e.expires_at,
                _ => None,
            };
            self.holds.transaction_id.push(id.0);
            self.holds.position.push(position);
            self.holds.expires_at.push(expires_at);
        }
        if let Some(outcome) = settlement_outcome(event) {
            let s = &mut self.settlements;
            s.transaction_id.push(id.0);
            s.outcome.push(outcome);
            s.position.push(position);
            s.recorded_at.push(recorded_at);
        }
        for (leg_index, leg) in legs.iter().enumerate() {
            let p = &mut self.postings;
            p.account_id.push(leg.account_id.0);
            p.position.push(position);
            // At most 2 × 80 legs per event (64 postings, or 2 + 16 fees): fits i16.
            p.leg.push(leg_index as i16);
            p.asset.push(leg.asset.to_string());
            p.amount
                .push(domain::money::to_decimal(leg.units, leg.scale));
            p.balance_after
                .push(domain::money::to_decimal(leg.balance_after, leg.scale));
            p.transaction_id.push(id.0);
            p.counterparty_id.push(leg.counterparty_id.0);
            p.recorded_at.push(recorded_at);
        }
        // The figures after the event of every (account, asset) it touched, reservations
        // included. Read from the state: when later events of the same batch touch them again,
        // their rows replace these.
        for posting in event.postings().iter().chain(event.released()) {
            let Some(scale) = state.asset_scale(&posting.asset) else {
                continue;
            };
            for code in [&posting.source, &posting.destination] {
                let Some(account) = state.account_by_code(code) else {
                    continue;
                };
                let figures = account.figures(&posting.asset);
                let decimal = |units| domain::money::to_decimal(units, scale);
                self.balances.insert(
                    (account.id, posting.asset.clone()),
                    BalanceRow {
                        posted: decimal(figures.posted),
                        pending_debits: decimal(figures.pending_debits),
                        pending_credits: decimal(figures.pending_credits),
                        position,
                    },
                );
            }
        }
    }

    /// Binds every column but the balances, in the order `projection_ctes` numbers them:
    /// assets 1–3, accounts 4–9, transactions 10–12, postings 13–21, status changes 22–26,
    /// limits 27–32, holds 33–35, settlements 36–39, reversals 40–42 (plus its offset).
    pub(crate) fn bind_rows<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        let (a, c, t, p) = (
            &self.assets,
            &self.accounts,
            &self.transactions,
            &self.postings,
        );
        let (s, l, h, x) = (
            &self.status_changes,
            &self.limits,
            &self.holds,
            &self.settlements,
        );
        query
            .bind(&a.code)
            .bind(&a.scale)
            .bind(&a.position)
            .bind(&c.id)
            .bind(&c.code)
            .bind(&c.allow_negative)
            .bind(&c.metadata)
            .bind(&c.position)
            .bind(&c.opened_at)
            .bind(&t.id)
            .bind(&t.kind)
            .bind(&t.position)
            .bind(&p.account_id)
            .bind(&p.position)
            .bind(&p.leg)
            .bind(&p.asset)
            .bind(&p.amount)
            .bind(&p.balance_after)
            .bind(&p.transaction_id)
            .bind(&p.counterparty_id)
            .bind(&p.recorded_at)
            .bind(&s.account_id)
            .bind(&s.position)
            .bind(&s.status)
            .bind(&s.metadata)
            .bind(&s.recorded_at)
            .bind(&l.account_id)
            .bind(&l.asset)
            .bind(&l.position)
            .bind(&l.min_balance)
            .bind(&l.max_balance)
            .bind(&l.recorded_at)
            .bind(&h.transaction_id)
            .bind(&h.position)
            .bind(&h.expires_at)
            .bind(&x.transaction_id)
            .bind(&x.outcome)
            .bind(&x.position)
            .bind(&x.recorded_at)
            .bind(&self.reversals.transaction_id)
            .bind(&self.reversals.reverses)
            .bind(&self.reversals.position)
    }

    /// Inserts the rows, balances excepted (a rebuild writes those once, at the end), into the
    /// tables of `schema`: `ledger_replay` for a replay, `public` for an import.
    pub async fn insert_into(&self, conn: &mut PgConnection, schema: &str) -> Result<()> {
        let statement = format!("WITH {} SELECT 1", projection_ctes(schema, 0));
        self.bind_rows(sqlx::query(&statement))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Moves the balance rows out, for a rebuild that writes them once at the end.
    pub(crate) fn take_balances(&mut self) -> HashMap<(AccountId, AssetCode), BalanceRow> {
        std::mem::take(&mut self.balances)
    }
}

/// Balance rows written per statement by a rebuild.
const BALANCE_ROWS_PER_STATEMENT: usize = 50_000;

/// Inserts balance rows into `schema`.balances (a rebuild's, written once at the end).
pub(crate) async fn insert_balances(
    conn: &mut PgConnection,
    schema: &str,
    rows: &HashMap<(AccountId, AssetCode), BalanceRow>,
) -> Result<()> {
    let statement = format!(
        "INSERT INTO {schema}.balances (account_id, asset, balance, position, pending_debits, pending_credits)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::numeric[], $4::int8[], $5::numeric[], $6::numeric[])"
    );
    let rows: Vec<_> = rows.iter().collect();
    for chunk in rows.chunks(BALANCE_ROWS_PER_STATEMENT) {
        let columns = BalanceColumns::new(chunk.iter().copied());
        columns
            .bind(sqlx::query(&statement))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Balance rows as columns.
pub(crate) struct BalanceColumns<'a> {
    account_id: Vec<Uuid>,
    asset: Vec<&'a str>,
    posted: Vec<Decimal>,
    position: Vec<i64>,
    pending_debits: Vec<Decimal>,
    pending_credits: Vec<Decimal>,
}

impl<'a> BalanceColumns<'a> {
    pub(crate) fn new(
        rows: impl ExactSizeIterator<Item = (&'a (AccountId, AssetCode), &'a BalanceRow)>,
    ) -> Self {
        let n = rows.len();
        let mut columns = BalanceColumns {
            account_id: Vec::with_capacity(n),
            asset: Vec::with_capacity(n),
            posted: Vec::with_capacity(n),
            position: Vec::with_capacity(n),
            pending_debits: Vec::with_capacity(n),
            pending_credits: Vec::with_capacity(n),
        };
        for ((id, asset), row) in rows {
            columns.account_id.push(id.0);
            columns.asset.push(asset.as_str());
            columns.posted.push(row.posted);
            columns.position.push(row.position);
            columns.pending_debits.push(row.pending_debits);
            columns.pending_credits.push(row.pending_credits);
        }
        columns
    }
}

impl BalanceColumns<'_> {
    /// Binds account, asset, balance, position, pending debits, pending credits: 6 parameters.
    pub(crate) fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.account_id)
            .bind(&self.asset)
            .bind(&self.posted)
            .bind(&self.position)
            .bind(&self.pending_debits)
            .bind(&self.pending_credits)
    }
}

/// The data-modifying CTEs that insert the projection rows into `schema`, with parameter numbers
/// shifted by `offset`.
pub(crate) fn projection_ctes(schema: &str, offset: usize) -> String {
    let n = |i: usize| format!("${}", i + offset);
    format!(
        "new_assets AS (
    INSERT INTO {schema}.assets (code, scale, position)
    SELECT * FROM UNNEST({}::text[], {}::int2[], {}::int8[])
), new_accounts AS (
    INSERT INTO {schema}.accounts (id, code, allow_negative, metadata, position, opened_at)
    SELECT i, c, n, m::jsonb, p, o
    FROM UNNEST({}::uuid[], {}::text[], {}::bool[], {}::text[], {}::int8[], {}::timestamptz[])
      AS u(i, c, n, m, p, o)
), new_transactions AS (
    INSERT INTO {schema}.transactions (id, kind, position)
    SELECT * FROM UNNEST({}::uuid[], {}::text[], {}::int8[])
), new_postings AS (
    INSERT INTO {schema}.postings (account_id, position, leg, asset, amount, balance_after, transaction_id, counterparty_id, recorded_at)
    SELECT * FROM UNNEST({}::uuid[], {}::int8[], {}::int2[], {}::text[], {}::numeric[], {}::numeric[], {}::uuid[], {}::uuid[], {}::timestamptz[])
), new_status_changes AS (
    INSERT INTO {schema}.account_status_changes (account_id, position, status, metadata, recorded_at)
    SELECT a, p, s, m::jsonb, r
    FROM UNNEST({}::uuid[], {}::int8[], {}::text[], {}::text[], {}::timestamptz[])
      AS u(a, p, s, m, r)
), new_limits AS (
    INSERT INTO {schema}.account_limits (account_id, asset, position, min_balance, max_balance, recorded_at)
    SELECT * FROM UNNEST({}::uuid[], {}::text[], {}::int8[], {}::numeric[], {}::numeric[], {}::timestamptz[])
), new_holds AS (
    INSERT INTO {schema}.holds (transaction_id, position, expires_at)
    SELECT * FROM UNNEST({}::uuid[], {}::int8[], {}::timestamptz[])
), new_settlements AS (
    INSERT INTO {schema}.hold_settlements (transaction_id, outcome, position, recorded_at)
    SELECT * FROM UNNEST({}::uuid[], {}::text[], {}::int8[], {}::timestamptz[])
), new_reversals AS (
    INSERT INTO {schema}.reversals (transaction_id, reverses, position)
    SELECT * FROM UNNEST({}::uuid[], {}::uuid[], {}::int8[])
)",
        n(1), n(2), n(3),
        n(4), n(5), n(6), n(7), n(8), n(9),
        n(10), n(11), n(12),
        n(13), n(14), n(15), n(16), n(17), n(18), n(19), n(20), n(21),
        n(22), n(23), n(24), n(25), n(26),
        n(27), n(28), n(29), n(30), n(31), n(32),
        n(33), n(34), n(35),
        n(36), n(37), n(38), n(39),
        n(40), n(41), n(42),
    )
}

/// Parameters `bind_rows` binds.
pub(crate) const PROJECTION_PARAMETERS: usize = 42;
