//! One batch of the writer: the events it appends, the inline projection rows they produce, and the
//! idempotency records, gathered as columns and written with one array insert per table, all in one
//! PostgreSQL transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::chain::{canonical_json, ChainedEvent, Hash};
use domain::{AccountId, AssetCode, Event, Leg, Rejection};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// The metadata stored beside an event: who asked and with which key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EventMetadata {
    pub idempotency_key: String,
    /// SHA-256 of the request the key was first used with (hex), so that an import of the log
    /// restores the idempotency records and a retry is still recognised.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

#[derive(Default)]
pub struct Batch {
    events: EventColumns,
    projections: ProjectionRows,
    idempotency: IdempotencyColumns,
    last_position: Option<i64>,
}

/// The rows the inline projections get from a run of events: what the writer adds to each batch,
/// and what a replay rebuilds from the log.
#[derive(Default)]
pub struct ProjectionRows {
    pub(crate) assets: AssetColumns,
    pub(crate) accounts: AccountColumns,
    pub(crate) postings: PostingColumns,
    pub(crate) transactions: TransactionColumns,
    pub(crate) status_changes: StatusChangeColumns,
    pub(crate) limits: LimitColumns,
    /// Final balance per (account, asset) touched: written once, not once per leg.
    pub(crate) balances: HashMap<(AccountId, AssetCode), (Decimal, i64)>,
}

#[derive(Default)]
struct EventColumns {
    position: Vec<i64>,
    event_id: Vec<Uuid>,
    event_type: Vec<&'static str>,
    schema_version: Vec<i16>,
    payload: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
    hash: Vec<Vec<u8>>,
}

#[derive(Default)]
pub(crate) struct AssetColumns {
    pub(crate) code: Vec<String>,
    pub(crate) scale: Vec<i16>,
    pub(crate) position: Vec<i64>,
}

#[derive(Default)]
pub(crate) struct AccountColumns {
    pub(crate) id: Vec<Uuid>,
    pub(crate) code: Vec<String>,
    pub(crate) allow_negative: Vec<bool>,
    pub(crate) metadata: Vec<String>,
    pub(crate) position: Vec<i64>,
    pub(crate) opened_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(crate) struct PostingColumns {
    pub(crate) account_id: Vec<Uuid>,
    pub(crate) position: Vec<i64>,
    pub(crate) leg: Vec<i16>,
    pub(crate) asset: Vec<String>,
    pub(crate) amount: Vec<Decimal>,
    pub(crate) balance_after: Vec<Decimal>,
    pub(crate) transaction_id: Vec<Uuid>,
    pub(crate) counterparty_id: Vec<Uuid>,
    pub(crate) recorded_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(crate) struct StatusChangeColumns {
    pub(crate) account_id: Vec<Uuid>,
    pub(crate) position: Vec<i64>,
    pub(crate) status: Vec<&'static str>,
    pub(crate) metadata: Vec<String>,
    pub(crate) recorded_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(crate) struct LimitColumns {
    pub(crate) account_id: Vec<Uuid>,
    pub(crate) asset: Vec<String>,
    pub(crate) position: Vec<i64>,
    pub(crate) min_balance: Vec<Option<Decimal>>,
    pub(crate) max_balance: Vec<Option<Decimal>>,
    pub(crate) recorded_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(crate) struct TransactionColumns {
    pub(crate) id: Vec<Uuid>,
    pub(crate) kind: Vec<&'static str>,
    pub(crate) position: Vec<i64>,
}

#[derive(Default)]
struct IdempotencyColumns {
    key: Vec<String>,
    fingerprint: Vec<Vec<u8>>,
    position: Vec<Option<i64>>,
    rejection: Vec<Option<String>>,
    recorded_at: Vec<DateTime<Utc>>,
}

/// The kind of a transaction as the `transactions` projection records it.
fn transaction_kind(event: &Event) -> Option<&'static str> {
    match event {
        Event::TransactionPosted(e) => Some(e.kind.as_str()),
        Event::TradeExecuted(_) => Some("trade"),
        Event::AssetDefined(_)
        | Event::AccountOpened(_)
        | Event::AccountStatusChanged(_)
        | Event::AccountLimitsSet(_) => None,
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl ProjectionRows {
    /// Binds the asset, account, transaction and posting columns, in that order: 21 parameters.
    fn bind_rows<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        let (a, c, t, p) = (
            &self.assets,
            &self.accounts,
            &self.transactions,
            &self.postings,
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
    }

    /// Binds the status change and limit columns: 11 parameters, after all the others.
    fn bind_account_changes<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        let (s, l) = (&self.status_changes, &self.limits);
        query
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
    }

    /// Inserts the rows (not the balances: a rebuild derives them at the end) into the tables of
    /// `schema`: `ledger_replay` for a replay, `public` for an import.
    pub async fn insert_into(&self, conn: &mut PgConnection, schema: &str) -> Result<()> {
        let statement = INSERT_PROJECTIONS.replace("{schema}", schema);
        self.bind_account_changes(self.bind_rows(sqlx::query(&statement)))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Adds the projection rows of an event at `position`, with the legs `apply` computed for it.
    /// `account_id` resolves the code an account-level event names (known once it is applied).
    pub fn push(
        &mut self,
        position: i64,
        event: &Event,
        legs: &[Leg],
        recorded_at: DateTime<Utc>,
        account_id: Option<AccountId>,
    ) {
        match (event, account_id) {
            (Event::AccountStatusChanged(e), Some(id)) => {
                let s = &mut self.status_changes;
                s.account_id.push(id.0);
                s.position.push(position);
                s.status.push(e.status.as_str());
                s.metadata
                    .push(serde_json::Value::Object(e.metadata.as_map().clone()).to_string());
                s.recorded_at.push(recorded_at);
            }
            (Event::AccountLimitsSet(e), Some(id)) => {
                let l = &mut self.limits;
                l.account_id.push(id.0);
                l.asset.push(e.asset.to_string());
                l.position.push(position);
                l.min_balance.push(e.min_balance);
                l.max_balance.push(e.max_balance);
                l.recorded_at.push(recorded_at);
            }
            _ => {}
        }
        match event {
            Event::AssetDefined(a) => {
                self.assets.code.push(a.asset.to_string());
                self.assets.scale.push(a.scale.get() as i16);
                self.assets.position.push(position);
            }
            Event::AccountOpened(a) => {
                let c = &mut self.accounts;
                c.id.push(a.account_id.0);
                c.code.push(a.code.to_string());
                c.allow_negative.push(a.allow_negative);
                c.metadata
                    .push(serde_json::Value::Object(a.metadata.as_map().clone()).to_string());
                c.position.push(position);
                c.opened_at.push(recorded_at);
            }
            Event::TransactionPosted(_)
            | Event::TradeExecuted(_)
            | Event::AccountStatusChanged(_)
            | Event::AccountLimitsSet(_) => {}
        }
        if let (Some(id), Some(kind)) = (event.transaction_id(), transaction_kind(event)) {
            self.transactions.id.push(id.0);
            self.transactions.kind.push(kind);
            self.transactions.position.push(position);
            for (leg_index, leg) in legs.iter().enumerate() {
                let p = &mut self.postings;
                p.account_id.push(leg.account_id.0);
                p.position.push(position);
                // At most 2 × 80 legs per event (64 postings, or 2 + 16 fees): fits i16.
                p.leg.push(leg_index as i16);
                p.asset.push(leg.asset.to_string());
                p.amount
                    .push(domain::money::to_decimal(leg.units, leg.scale));
                let balance_after = domain::money::to_decimal(leg.balance_after, leg.scale);
                p.balance_after.push(balance_after);
                p.transaction_id.push(id.0);
                p.counterparty_id.push(leg.counterparty_id.0);
                p.recorded_at.push(recorded_at);
                self.balances.insert(
                    (leg.account_id, leg.asset.clone()),
                    (balance_after, position),
                );
            }
        }
    }
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.position.is_empty() && self.idempotency.key.is_empty()
    }

    /// The idempotency keys this batch records.
    pub fn idempotency_keys(&self) -> impl Iterator<Item = &str> {
        self.idempotency.key.iter().map(String::as_str)
    }

    pub fn last_position(&self) -> Option<i64> {
        self.last_position
    }

    /// Whether this batch is in the database, for a write whose outcome is unknown (the session
    /// broke while PostgreSQL may have been committing it). Only meaningful once the session that
    /// sent it is gone, e.g. when the caller holds the writer's lock: until then it might still
    /// commit. A batch with events is there if its last position holds its last hash; a batch of
    /// recorded refusals only, if its first key was recorded at its time with its fingerprint.
    pub async fn is_committed(&self, conn: &mut PgConnection) -> Result<bool> {
        if let (Some(position), Some(hash)) = (self.last_position, self.events.hash.last()) {
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT hash FROM events WHERE position = $1")
                    .bind(position)
                    .fetch_optional(conn)
                    .await?;
            return Ok(stored.as_ref() == Some(hash));
        }
        let i = &self.idempotency;
        let (Some(key), Some(fingerprint), Some(recorded_at)) =
            (i.key.first(), i.fingerprint.first(), i.recorded_at.first())
        else {
            return Ok(false);
        };
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM idempotency_keys WHERE key = $1 AND fingerprint = $2 AND recorded_at = $3",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(recorded_at)
        .fetch_optional(conn)
        .await?;
        Ok(found.is_some())
    }

    /// Adds an accepted event, the legs `apply` computed for it, and its idempotency record, and
    /// extends the hash chain whose head is `chain_head` by it.
    #[allow(clippy::too_many_arguments)]
    pub fn push_event(
        &mut self,
        position: i64,
        event: &Event,
        legs: &[Leg],
        metadata: &EventMetadata,
        fingerprint: &[u8],
        recorded_at: DateTime<Utc>,
        chain_head: &mut Hash,
        account_id: Option<AccountId>,
    ) {
        // Time-ordered ids keep the unique index append-only instead of scattering inserts.
        let event_id = Uuid::now_v7();
        let payload = event.encode();
        let metadata_json = serde_json::to_value(metadata).unwrap_or_default();
        let recorded_at_text = crate::audit::format_recorded_at(recorded_at);
        *chain_head = domain::chain::chain(
            chain_head,
            &ChainedEvent {
                position,
                event_id,
                event_type: event.event_type(),
                schema_version: event.schema_version(),
                recorded_at: &recorded_at_text,
                payload: &payload,
                metadata: &metadata_json,
            },
        );
        let e = &mut self.events;
        e.position.push(position);
        e.event_id.push(event_id);
        e.event_type.push(event.event_type());
        e.schema_version.push(event.schema_version());
        e.payload.push(canonical_json(&payload));
        e.metadata.push(canonical_json(&metadata_json));
        e.recorded_at.push(recorded_at);
        e.hash.push(chain_head.to_vec());

        self.projections
            .push(position, event, legs, recorded_at, account_id);
        self.push_idempotency(
            &metadata.idempotency_key,
            fingerprint,
            Some(position),
            None,
            recorded_at,
        );
        self.last_position = Some(position);
    }

    /// Records a refusal under its idempotency key, so that a retry gets the same answer.
    pub fn push_rejection(
        &mut self,
        key: &str,
        fingerprint: &[u8],
        rejection: &Rejection,
        recorded_at: DateTime<Utc>,
    ) {
        let encoded = serde_json::to_string(rejection).unwrap_or_else(|_| "{}".to_owned());
        self.push_idempotency(key, fingerprint, None, Some(encoded), recorded_at);
    }

    fn push_idempotency(
        &mut self,
        key: &str,
        fingerprint: &[u8],
        position: Option<i64>,
        rejection: Option<String>,
        recorded_at: DateTime<Utc>,
    ) {
        let i = &mut self.idempotency;
        i.key.push(key.to_owned());
        i.fingerprint.push(fingerprint.to_vec());
        i.position.push(position);
        i.rejection.push(rejection);
        i.recorded_at.push(recorded_at);
    }

    /// Writes everything in one statement: data-modifying CTEs over arrays, one per table. A
    /// single statement is its own transaction, so the batch commits atomically in one round
    /// trip; empty arrays insert nothing, so the statement is the same for every batch and is
    /// prepared once.
    pub async fn write(&self, conn: &mut PgConnection) -> Result<()> {
        let balance_count = self.projections.balances.len();
        let mut balance_account = Vec::with_capacity(balance_count);
        let mut balance_asset = Vec::with_capacity(balance_count);
        let mut balance_value = Vec::with_capacity(balance_count);
        let mut balance_position = Vec::with_capacity(balance_count);
        for ((id, code), (units, pos)) in &self.projections.balances {
            balance_account.push(id.0);
            balance_asset.push(code.as_str());
            balance_value.push(*units);
            balance_position.push(*pos);
        }
        let (e, i) = (&self.events, &self.idempotency);
        let query = sqlx::query(WRITE_BATCH)
            .bind(&e.position)
            .bind(&e.event_id)
            .bind(&e.event_type)
            .bind(&e.schema_version)
            .bind(&e.payload)
            .bind(&e.metadata)
            .bind(&e.recorded_at);
        let query = self
            .projections
            .bind_rows(query)
            .bind(&balance_account)
            .bind(&balance_asset)
            .bind(&balance_value)
            .bind(&balance_position)
            .bind(&i.key)
            .bind(&i.fingerprint)
            .bind(&i.position)
            .bind(&i.rejection)
            .bind(&i.recorded_at)
            .bind(self.last_position)
            .bind(&e.hash);
        self.projections
            .bind_account_changes(query)
            .execute(conn)
            .await?;
        Ok(())
    }
}

const WRITE_BATCH: &str = "
WITH new_events AS (
    INSERT INTO events (position, event_id, event_type, schema_version, payload, metadata, recorded_at, hash)
    SELECT p, i, t, v, pl::jsonb, m::jsonb, r, h
    FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::int2[], $5::text[], $6::text[], $7::timestamptz[], $39::bytea[])
      AS u(p, i, t, v, pl, m, r, h)
), new_assets AS (
    INSERT INTO assets (code, scale, position)
    SELECT * FROM UNNEST($8::text[], $9::int2[], $10::int8[])
), new_accounts AS (
    INSERT INTO accounts (id, code, allow_negative, metadata, position, opened_at)
    SELECT i, c, n, m::jsonb, p, o
    FROM UNNEST($11::uuid[], $12::text[], $13::bool[], $14::text[], $15::int8[], $16::timestamptz[])
      AS u(i, c, n, m, p, o)
), new_transactions AS (
    INSERT INTO transactions (id, kind, position)
    SELECT * FROM UNNEST($17::uuid[], $18::text[], $19::int8[])
), new_postings AS (
    INSERT INTO postings (account_id, position, leg, asset, amount, balance_after, transaction_id, counterparty_id, recorded_at)
    SELECT * FROM UNNEST($20::uuid[], $21::int8[], $22::int2[], $23::text[], $24::numeric[], $25::numeric[], $26::uuid[], $27::uuid[], $28::timestamptz[])
), new_balances AS (
    INSERT INTO balances (account_id, asset, balance, position)
    SELECT * FROM UNNEST($29::uuid[], $30::text[], $31::numeric[], $32::int8[])
    ON CONFLICT (account_id, asset)
    DO UPDATE SET balance = EXCLUDED.balance, position = EXCLUDED.position
), new_keys AS (
    INSERT INTO idempotency_keys (key, fingerprint, position, rejection, recorded_at)
    SELECT k, f, p, r::jsonb, t
    FROM UNNEST($33::text[], $34::bytea[], $35::int8[], $36::text[], $37::timestamptz[])
      AS u(k, f, p, r, t)
), new_status_changes AS (
    INSERT INTO account_status_changes (account_id, position, status, metadata, recorded_at)
    SELECT a, p, s, m::jsonb, r
    FROM UNNEST($40::uuid[], $41::int8[], $42::text[], $43::text[], $44::timestamptz[])
      AS u(a, p, s, m, r)
), new_limits AS (
    INSERT INTO account_limits (account_id, asset, position, min_balance, max_balance, recorded_at)
    SELECT * FROM UNNEST($45::uuid[], $46::text[], $47::int8[], $48::numeric[], $49::numeric[], $50::timestamptz[])
)
UPDATE projection_head SET position = $38 WHERE $38::int8 IS NOT NULL
";

const INSERT_PROJECTIONS: &str = "
WITH new_assets AS (
    INSERT INTO {schema}.assets (code, scale, position)
    SELECT * FROM UNNEST($1::text[], $2::int2[], $3::int8[])
), new_accounts AS (
    INSERT INTO {schema}.accounts (id, code, allow_negative, metadata, position, opened_at)
    SELECT i, c, n, m::jsonb, p, o
    FROM UNNEST($4::uuid[], $5::text[], $6::bool[], $7::text[], $8::int8[], $9::timestamptz[])
      AS u(i, c, n, m, p, o)
), new_transactions AS (
    INSERT INTO {schema}.transactions (id, kind, position)
    SELECT * FROM UNNEST($10::uuid[], $11::text[], $12::int8[])
), new_status_changes AS (
    INSERT INTO {schema}.account_status_changes (account_id, position, status, metadata, recorded_at)
    SELECT a, p, s, m::jsonb, r
    FROM UNNEST($22::uuid[], $23::int8[], $24::text[], $25::text[], $26::timestamptz[])
      AS u(a, p, s, m, r)
), new_limits AS (
    INSERT INTO {schema}.account_limits (account_id, asset, position, min_balance, max_balance, recorded_at)
    SELECT * FROM UNNEST($27::uuid[], $28::text[], $29::int8[], $30::numeric[], $31::numeric[], $32::timestamptz[])
)
INSERT INTO {schema}.postings (account_id, position, leg, asset, amount, balance_after, transaction_id, counterparty_id, recorded_at)
SELECT * FROM UNNEST($13::uuid[], $14::int8[], $15::int2[], $16::text[], $17::numeric[], $18::numeric[], $19::uuid[], $20::uuid[], $21::timestamptz[])
";
