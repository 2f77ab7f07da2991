//! Response bodies. Amounts are decimal strings at the asset's scale; `render` fills these from
//! events and read records.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::is_false;

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    pub code: String,
    pub scale: u32,
    /// The position of the event that defined it.
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetList {
    pub items: Vec<AssetView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub asset: String,
    /// The posted balance.
    #[schema(example = "100.00")]
    pub balance: String,
    /// Reserved by pending transactions that debit the account. Absent from balances at a past
    /// position or time, which are the posted ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "30.00")]
    pub pending_debits: Option<String>,
    /// Reserved by pending transactions that credit the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "0.00")]
    pub pending_credits: Option<String>,
    /// `balance` less `pending_debits`: what the account can still spend.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "70.00")]
    pub available: Option<String>,
    /// The trade-date position: `balance` + `pending_credits` − `pending_debits`, as if every
    /// pending transaction and every trade awaiting its settlement date had settled. `balance`
    /// is the settled position.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "70.00")]
    pub trade_date_balance: Option<String>,
    /// The position of the last event that changed these figures.
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
    pub code: String,
    pub allow_negative: bool,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
    /// The position of the event that opened it.
    pub position: i64,
    pub opened_at: DateTime<Utc>,
    /// `open`, `frozen` (no postings until unfrozen) or `closed` (final).
    pub status: String,
    /// The position of the last event that changed the account: pass it as `expected_versions`
    /// to apply a command only if nothing changed since.
    pub version: i64,
    pub balances: Vec<BalanceView>,
    /// Bounds set with `PATCH …/limits`, per asset.
    pub limits: Vec<LimitView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    pub asset: String,
    /// `null`: unbounded.
    #[schema(example = "-500.00")]
    pub min_balance: Option<String>,
    pub max_balance: Option<String>,
}

/// What a status change returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountStatusView {
    pub account: String,
    pub status: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
}

/// What a change of booking method returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingMethodView {
    pub account: String,
    /// `fifo`, `lifo`, `hifo` or `average`: how its disposals close lots from now on.
    pub booking_method: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
}

/// A mark: the price of one unit of an instrument in a currency as of a time.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceView {
    pub instrument: String,
    pub currency: String,
    #[schema(example = "190.25")]
    pub price: String,
    pub as_of: DateTime<Utc>,
    /// The position of the `PriceMarked` event.
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
}

/// What a limits change returns: the bounds in the asset from now on.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountLimitsView {
    pub account: String,
    #[serde(flatten)]
    pub limits: LimitView,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

/// The accounts under a prefix and their sums per asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct RollupView {
    /// Whole code segments (`` for the whole ledger).
    pub prefix: String,
    /// Accounts whose code starts with the prefix.
    pub accounts: i64,
    /// One per asset any of them holds or held, in asset order.
    pub balances: Vec<RollupBalanceView>,
    /// The position the sums reflect.
    pub position: i64,
    /// With `as_of`: the sums count the entries effective at or before it…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    /// …recorded at or before this position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_at_position: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RollupBalanceView {
    pub asset: String,
    /// The posted balances, summed.
    #[schema(example = "1500.00")]
    pub posted: String,
    /// Absent from a roll-up at a past position, which sums posted balances only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "30.00")]
    pub pending_debits: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "0.00")]
    pub pending_credits: Option<String>,
    /// `posted` less `pending_debits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "1470.00")]
    pub available: Option<String>,
}

/// The next code segments under a prefix, each with its roll-up.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountTree {
    pub prefix: String,
    pub items: Vec<TreeNodeView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TreeNodeView {
    /// The segment itself (`alice` under `broker`); its `prefix` is the whole path.
    pub segment: String,
    #[serde(flatten)]
    pub rollup: RollupView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub items: Vec<AccountView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostingView {
    pub source: String,
    pub destination: String,
    pub asset: String,
    pub amount: String,
    /// The cost the posting stated, for the lots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CostView {
    #[schema(example = "1505.00")]
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionView {
    pub id: Uuid,
    /// `transaction`, `transfer` or `trade`.
    pub kind: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// When it counts in the books: its `effective_at`, or when it was recorded.
    pub effective_at: DateTime<Utc>,
    /// For a pending transaction, what it reserves.
    pub postings: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
    /// `posted`; or for a pending transaction `pending`, then `posted`, `voided` or `expired`.
    /// A trade with a settlement date goes by its `settlement.status`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// A trade's trade date: the date (UTC) of `effective_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub trade_date: Option<NaiveDate>,
    /// A trade's settlement date, when it stated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub settlement_date: Option<NaiveDate>,
    /// When the ledger posts what a trade booked as pending for its settlement date still
    /// reserves: the settlement date at the server's settlement time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settles_at: Option<DateTime<Utc>>,
    /// How a pending transaction was settled, once it was; for a trade with a settlement date,
    /// how its settlement stands from the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementView>,
    /// For a reversal (kind `reversal`): the transaction it reverses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverses: Option<Uuid>,
    /// For a reversal: whether the balance bounds were skipped on request.
    #[serde(skip_serializing_if = "is_false")]
    pub forced: bool,
    /// The reversal of this transaction, once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reversed_by: Option<Uuid>,
}

/// The settlement of a pending transaction: what a post, void, settle or fail returns (the event
/// it appended). In the view of a trade with a settlement date, where its settlement stands:
/// then `status` is `pending`, `partially_settled`, `settled`, `failed`, `voided` or `expired`,
/// `settled` and `remaining` are always there, and the other fields are those of its latest
/// settlement event (the trade's own while nothing has settled).
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementView {
    /// The pending transaction.
    pub pending_id: Uuid,
    /// `posted`, `voided` or `expired`; `partially_settled` when a trade with a settlement date
    /// settled in part (the rest stays reserved), `failed` when a trade's settlement failed.
    pub status: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// When it counts in the books: its `effective_at`, or when it was recorded.
    pub effective_at: DateTime<Utc>,
    /// What moved (posted only): at most what was reserved, per posting.
    pub postings: Vec<PostingView>,
    /// The reservations that ended.
    pub released: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
    /// A trade with a settlement date, in its view: everything its settlement has posted so far
    /// (over all its parts), per source, destination and asset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled: Option<Vec<PostingView>>,
    /// What stays reserved: after a partial settlement, in the answer to it; in the view of a
    /// trade with a settlement date, what it still reserves, per posting (what the `amounts` of
    /// `POST /v1/trades/{id}/settle` refer to, in this order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<Vec<PostingView>>,
    /// Why the trade's settlement failed (status `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeeView {
    pub payer: String,
    pub account: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TradeView {
    pub id: Uuid,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// When it counts in the books: its `effective_at`, or when it was recorded.
    pub effective_at: DateTime<Utc>,
    pub buyer: String,
    pub seller: String,
    pub instrument: String,
    pub quantity: String,
    pub price: String,
    pub currency: String,
    /// quantity × price, exact at the currency's scale.
    pub notional: String,
    pub fees: Vec<FeeView>,
    /// Instrument to the buyer, cash to the seller, then one posting per fee.
    pub postings: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
    /// `posted`; or for a pending trade `pending`, then `posted`, `voided` or `expired`. A
    /// trade with a settlement date goes by its `settlement.status`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The date (UTC) of `effective_at`.
    #[schema(value_type = String, format = Date)]
    pub trade_date: NaiveDate,
    /// The settlement date, when the trade stated one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub settlement_date: Option<NaiveDate>,
    /// When the ledger posts what the trade still reserves, when it was booked as pending for
    /// a later settlement date: that date at the server's settlement time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settles_at: Option<DateTime<Utc>>,
    /// How a pending trade was settled, once it was; for a trade with a settlement date, how its
    /// settlement stands from the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementView>,
    /// The reversal of this trade, once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reversed_by: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntryView {
    pub position: i64,
    /// The leg's index within its event.
    pub leg: i16,
    pub transaction_id: Uuid,
    pub kind: String,
    pub asset: String,
    /// Signed: negative when money left the account.
    #[schema(example = "-25.00")]
    pub amount: String,
    /// The account's balance in this asset right after this leg.
    pub balance_after: String,
    /// The account on the other side of the posting.
    pub counterparty: String,
    /// When the ledger recorded it.
    pub recorded_at: DateTime<Utc>,
    /// When it counts in the books: the `effective_at` it was written with, or `recorded_at`.
    pub effective_at: DateTime<Utc>,
}

/// One item of an account's history: a posting, or a change of the account itself.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryItemView {
    Posting(HistoryEntryView),
    StatusChanged {
        position: i64,
        /// -1: before the postings of its position (it has none).
        leg: i16,
        status: String,
        recorded_at: DateTime<Utc>,
    },
    LimitsSet {
        position: i64,
        leg: i16,
        #[serde(flatten)]
        limits: LimitView,
        recorded_at: DateTime<Utc>,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub items: Vec<HistoryItemView>,
    pub next_cursor: Option<String>,
    /// With `order=effective`: every page is read as known at this position (that of the first
    /// page), so that entries recorded meanwhile move no page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_at_position: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub position: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i16,
    /// The canonical JSON text the hash covers, as stored.
    #[schema(value_type = Object)]
    pub payload: Box<serde_json::value::RawValue>,
    /// The canonical JSON text the hash covers, as stored.
    #[schema(value_type = Object)]
    pub metadata: Box<serde_json::value::RawValue>,
    /// RFC 3339 in UTC with exactly six fractional digits: the form the hash chain covers.
    #[serde(serialize_with = "chained_time")]
    pub recorded_at: DateTime<Utc>,
    /// SHA-256 of the previous event's hash and this event's canonical bytes, hex (docs/audit.md).
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `after` for the next page (the last position returned, or `after` if none).
    pub next_after: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// This node serves reads and writes: its read source answers, and it is the writer or knows
    /// the writer to forward writes to.
    pub ready: bool,
    /// The read source answers.
    pub database: bool,
    /// This node's writer task: `leader`, `standby`, `starting`, `recovering`, or
    /// `awaiting_standby` (the synchronous standby has not confirmed what was committed, or a
    /// commit has waited for it over a second: no write is acknowledged until it does).
    pub writer: String,
    /// `writer` (holds the lock) or `follower` (forwards writes to the writer).
    pub role: String,
    /// Where writes go: this node's URL when it is the writer, the writer's when it is known.
    pub writer_url: Option<String>,
    /// The last position this node's writer committed (0 on a follower).
    pub position: i64,
    /// Where reads come from; `None` while it does not answer.
    pub read_source: Option<ReadSourceView>,
    /// Where each projection of the read source is in the log (empty while it does not answer).
    pub projections: Vec<ProjectionView>,
}

/// A projection's place in the log: inline ones are at the head by construction; asynchronous
/// ones trail it by what their projector has not applied yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionView {
    pub name: String,
    /// `inline` (written with the events) or `async` (built by the projector after the commit).
    pub kind: String,
    /// The position it reflects.
    pub position: i64,
    /// Events of the log it does not reflect yet.
    pub lag_events: i64,
    /// How long ago the oldest event it does not reflect yet was recorded.
    pub lag_ms: i64,
}

/// Where a node's reads come from, and how far behind the primary they are.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadSourceView {
    /// `primary`, or `replica` (a streaming replica, through `--read-database-url`).
    pub kind: String,
    /// The position its snapshots reflect now.
    pub position: i64,
    /// How many events the primary holds that it has not replayed yet (0 on the primary).
    pub lag_events: i64,
    /// On a replica: how long ago the last transaction it replayed committed on the primary.
    pub replay_lag_ms: Option<i64>,
}

/// The result of walking the hash chain over the whole log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainReportView {
    pub intact: bool,
    pub events_verified: i64,
    pub head_position: i64,
    pub head_hash: String,
    /// The first position where the chain breaks: an altered, missing or misplaced event.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
    /// Events written before migration 0013 whose stored form differs from their hashed form
    /// only in how numbers of equal value are written: a known defect of that version, proven
    /// not to be an alteration (docs/audit.md). Listed up to 100; the count covers them all.
    pub stored_form_differs: Vec<StoredFormDiffersView>,
    pub stored_form_differs_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoredFormDiffersView {
    pub position: i64,
    /// `stored form differs from hashed form: …`, naming each number as stored and as hashed.
    pub cause: String,
}

impl From<infrastructure::audit::ChainReport> for ChainReportView {
    fn from(report: infrastructure::audit::ChainReport) -> Self {
        Self {
            intact: report.intact(),
            events_verified: report.events_verified,
            head_position: report.head_position,
            head_hash: report.head_hash,
            first_broken_position: report.first_broken_position,
            problem: report.problem,
            stored_form_differs: report
                .stored_form_differs
                .into_iter()
                .map(|d| StoredFormDiffersView {
                    position: d.position,
                    cause: d.cause,
                })
                .collect(),
            stored_form_differs_count: report.stored_form_differs_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesAtView {
    pub account_id: Uuid,
    pub account: String,
    /// The balances are as the ledger stood right after this position (with `as_of`: as known
    /// at it, `known_at_position`).
    pub as_of_position: i64,
    /// The time asked for with `at` (recorded time).
    pub at: Option<DateTime<Utc>>,
    /// The time asked for with `as_of` (effective time): the balances count every entry
    /// effective at or before it…
    pub as_of: Option<DateTime<Utc>>,
    /// …recorded at or before this position (the head when not asked for); `null` without
    /// `as_of`.
    pub known_at_position: Option<i64>,
    /// Each asset the account held by then; `position` is that of its last change.
    pub balances: Vec<BalanceView>,
}

/// What an account has due in and out in one asset on one settlement date.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementLadderItemView {
    /// The settlement date; `null` for holds that have none (two-phase transactions and
    /// trades, settled when a client posts or voids them), listed last.
    #[schema(value_type = Option<String>, format = Date)]
    pub date: Option<NaiveDate>,
    pub asset: String,
    /// What the account's open holds bring in on that date (pending credits).
    #[schema(example = "10")]
    pub due_in: String,
    /// What they take out of it (pending debits).
    #[schema(example = "0")]
    pub due_out: String,
}

/// What an account has due in and out in one asset over all its open holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementTotalView {
    pub asset: String,
    /// Equal to the account's `pending_credits` in the asset.
    pub due_in: String,
    /// Equal to the account's `pending_debits` in the asset.
    pub due_out: String,
}

/// An account's settlement ladder: what its open holds have due in and out per settlement date
/// and asset.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementLadderView {
    pub account: String,
    /// The position the ladder reflects.
    pub position: i64,
    /// By date (undated last), then asset. With `from` or `to`, the dates in that range only.
    pub items: Vec<SettlementLadderItemView>,
    /// Per asset, over every open hold of the account whatever `from` and `to` say: equal to
    /// its pending figures, which the read checks.
    pub totals: Vec<SettlementTotalView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    pub account_id: Uuid,
    pub account: String,
    pub asset: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `recorded`: `from` and `to` are recorded times and the entries are in the log's order;
    /// `effective`: they are effective times and the entries in effective order, each balance
    /// computed in that order.
    pub order: EntryOrder,
    /// The balance right after `opening_position`, the last event before `from` (in effective
    /// order: the position the statement is known at, as is `closing_position`).
    pub opening_position: i64,
    pub opening_balance: String,
    /// The postings in [from, to), oldest first, each with the balance after it.
    pub entries: Vec<HistoryEntryView>,
    /// The balance right after `closing_position`, the last event before `to`.
    pub closing_position: i64,
    pub closing_balance: String,
}

/// An event's time as the hash chain covers it (docs/audit.md), so that a consumer can hash an
/// event exactly as it was given.
fn chained_time<S: serde::Serializer>(at: &DateTime<Utc>, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&infrastructure::event_store::format_recorded_at(*at))
}

/// A close or a reopen of a period of the books.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodEventView {
    pub period: u32,
    /// `closed` or `reopened`.
    pub action: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// A close: the end of the period (inclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub through: Option<DateTime<Utc>>,
    /// A close: the position its trial balance was read at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_at_position: Option<i64>,
    /// A close: SHA-256 of the trial balance as of `through`, hex (docs/events.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_balance_digest: Option<String>,
    /// A reopen: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: domain::Metadata,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodList {
    /// Every close and reopen, in log order.
    pub items: Vec<PeriodEventView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrialBalanceRowView {
    pub account: String,
    pub asset: String,
    pub balance: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrialBalanceTotalView {
    pub asset: String,
    /// Zero: every posting debits what it credits.
    pub total: String,
}

/// Every account's posted balance in every asset where it is not zero, over the entries that
/// count at or before `as_of`, as known at `known_at_position`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrialBalanceView {
    pub as_of: DateTime<Utc>,
    pub known_at_position: i64,
    /// In order of account code, then asset.
    pub rows: Vec<TrialBalanceRowView>,
    pub totals: Vec<TrialBalanceTotalView>,
    /// What a close records: SHA-256 of the rows (docs/events.md), hex.
    pub digest: String,
}

/// A close with the trial balance it fixed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeriodView {
    pub close: PeriodEventView,
    /// Whether a later reopen opened it again.
    pub reopened: bool,
    pub trial_balance: TrialBalanceView,
}

/// The order of an account's history or statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryOrder {
    /// The log's: by position (then leg). The running balance is the one recorded with each
    /// entry.
    #[default]
    Recorded,
    /// Accounting time: by effective time, then position, then leg. The running balance is
    /// computed in that order.
    Effective,
}

/// An account's positions: one per book, an instrument held at a cost in a currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionsView {
    pub account: String,
    /// The position of the log the figures reflect.
    pub position: i64,
    /// With `as_of`: the time the figures are as of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    pub positions: Vec<PositionView>,
}

/// One book of an account. Quantities are in the instrument, amounts in the currency; a short
/// position has negative quantities and a negative cost basis (what its sales brought, owed back).
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionView {
    pub instrument: String,
    pub currency: String,
    /// The account's booking method now.
    pub booking_method: String,
    /// On the trade date: settled plus what pending trades and holds will credit, less what they
    /// will debit. As of a date: the settled quantity.
    #[schema(example = "25")]
    pub quantity: String,
    /// Posted.
    pub settled: String,
    /// `quantity` less `settled`; `null` as of a date (reservations are known now only).
    pub unsettled: Option<String>,
    /// What the open lots hold.
    pub lots_quantity: String,
    /// `quantity` less the lots' quantities in every currency of the instrument: units that came
    /// without a cost (a transfer that stated none).
    pub uncosted: String,
    /// What the open lots cost (short lots' proceeds taken off).
    #[schema(example = "4752.50")]
    pub cost_basis: String,
    /// `cost_basis` ÷ `lots_quantity` at 18 decimal places, for reading only; `null` without
    /// lots.
    pub average_cost: Option<String>,
    pub lots: Vec<LotView>,
    /// The realized P&L of the book to date (as of the date).
    pub realized: String,
    /// The latest mark of the pair at or before now (or `as_of`); `null` when there is none.
    pub mark: Option<MarkView>,
    /// `quantity` × the mark's price, exactly.
    pub market_value: Option<String>,
    /// `lots_quantity` × the mark's price less `cost_basis`: the P&L of the lots at the mark
    /// (for a short position, what its sales brought less what buying back would cost).
    pub unrealized: Option<String>,
}

/// An open lot.
#[derive(Debug, Serialize, ToSchema)]
pub struct LotView {
    /// `<transaction id>/<posting index>`.
    pub lot_id: String,
    pub transaction_id: Uuid,
    pub trade_date: chrono::NaiveDate,
    /// Negative for a short lot.
    pub quantity: String,
    /// What the lot's units cost (for a short lot, what their sale brought, negative).
    pub cost: String,
    /// `cost` ÷ `quantity` at 18 decimal places, for reading only.
    pub unit_cost: String,
}

/// A mark as a position is valued at.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkView {
    pub price: String,
    pub as_of: DateTime<Utc>,
    /// The position of its `PriceMarked`.
    pub position: i64,
}

/// The positions of the accounts under a code prefix, summed per instrument and currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct PositionRollupView {
    pub prefix: String,
    /// Accounts under the prefix.
    pub accounts: i64,
    pub position: i64,
    pub positions: Vec<PositionTotalView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionTotalView {
    pub instrument: String,
    pub currency: String,
    /// The trade-date quantities of the accounts with a book in the pair.
    pub quantity: String,
    pub lots_quantity: String,
    pub cost_basis: String,
    pub realized: String,
    pub mark: Option<MarkView>,
    pub market_value: Option<String>,
    pub unrealized: Option<String>,
}

/// Realized P&L over a range of trade dates: one item per closing (a movement that closed lots
/// of a book), with the lots it closed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RealizedView {
    pub account: String,
    pub position: i64,
    pub from: Option<chrono::NaiveDate>,
    pub to: Option<chrono::NaiveDate>,
    pub items: Vec<RealizedItemView>,
    /// Per instrument and currency, the realized P&L of the items.
    pub totals: Vec<RealizedTotalView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RealizedItemView {
    pub transaction_id: Uuid,
    pub position: i64,
    /// The closing's trade date.
    pub date: chrono::NaiveDate,
    pub instrument: String,
    pub currency: String,
    /// Units closed.
    pub quantity: String,
    pub cost: String,
    pub proceeds: String,
    /// `proceeds` − `cost`.
    pub realized: String,
    pub lots: Vec<RealizedLotView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RealizedLotView {
    pub lot_id: String,
    /// The lot's trade date.
    pub opened: chrono::NaiveDate,
    pub quantity: String,
    pub cost: String,
    pub proceeds: String,
    pub realized: String,
    /// Days from `opened` to the closing's date.
    pub holding_days: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RealizedTotalView {
    pub instrument: String,
    pub currency: String,
    pub realized: String,
}

/// A mark as the prices read serves it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarkRecordView {
    pub instrument: String,
    pub currency: String,
    #[schema(example = "190.25")]
    pub price: String,
    pub as_of: DateTime<Utc>,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PriceList {
    /// With `as_of`: the latest mark at or before it (none or one). Otherwise marks newest first.
    pub items: Vec<MarkRecordView>,
    pub next_cursor: Option<String>,
}

/// What a batch of marks returns: each mark's view, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarksView {
    #[schema(value_type = Vec<Object>)]
    pub marks: Vec<Box<serde_json::value::RawValue>>,
    /// Present (true) with `?dry_run=true`: nothing was written.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub dry_run: bool,
}

/// What `POST /v1/prices` returns: one mark's view, or a batch's marks.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PricesAnswer {
    One(PriceView),
    Batch(MarksView),
}

/// What `POST /v1/prices?dry_run=true` returns: a dry run of one mark, or a batch's marks as they
/// would be recorded (`dry_run: true`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PricesDryRunAnswer {
    One(crate::dry_run::DryRunView),
    Batch(MarksView),
}
