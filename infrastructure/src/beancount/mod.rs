//! The log as a Beancount file (`ledger export --format beancount`), for accountants' tools:
//! `bean-check`, `bean-query`, Fava.
//!
//! What each event becomes, in position order, dated the UTC day it counts in the books (its
//! `effective_at`, else when it was recorded; Beancount sorts by date itself):
//! - `AssetDefined`: a `commodity` (names: `names`).
//! - `AccountOpened`: an `open`, constrained to the assets the account ever uses, dated the
//!   earliest day of an entry that names it (a backdated entry may count before it was opened).
//! - A posted transaction, transfer, reversal or trade, and the post of a hold: a transaction
//!   (`*`) whose postings take each ledger posting's amount from its source (a negative posting)
//!   and give it to its destination (a positive one), so that Beancount's balance of an account is
//!   the ledger's (`credits − debits`) under any root, and every entry balances per asset by
//!   construction. Metadata carries the position, event id, transaction id and idempotency key;
//!   the link `^tx-<id>` joins a transaction with its reversal and a hold with its post.
//! - Lots (docs/beancount.md, "Lots"; `booking` decides each form): a posting that moves units
//!   at cost (a trade's instrument leg, a posting that states a cost, the post of a trade that
//!   settles later, the reversal of one of these) is held at cost on each side: an acquisition
//!   or a short sale at its total cost `{{…}}`, a disposal as a reduction `{CUR}` that
//!   Beancount's booking method (on the account's `open`; `average` is `NONE`, with the costs
//!   stated) picks, or by label where Beancount's method would pick other lots than the
//!   ledger's. Each disposal gets an income posting without an amount on
//!   `Income:Realized-PnL:<account>:<instrument>` (`names::realized_name`), which Beancount fills
//!   in with `−(proceeds − cost)`. The postings of an entry net to zero per asset, so its weights
//!   in the currency are the sides' own: an acquisition weighs with its income what it cost
//!   (`N + Fb` for a buyer), a disposal minus what it brought (`−(N − Fs)` for a seller); their
//!   sum, `Fb + Fs` for a trade, is the fees counted a second time (they are cash paid to the fee
//!   account as well), so `Equity:Ledger:Fees-In-Cost` takes minus the sum of the sides' targets
//!   and each income is exactly `−(proceeds − cost)` by the ledger's fee rule. Beancount fills in
//!   one missing amount per currency and transaction: a second side that realizes is written in a
//!   transaction of its own, balanced through `Equity:Ledger:Lot-Clearing`.
//! - A hold (a pending transaction or trade) moves no money: a `note` on each account it touches
//!   says what it reserves; its void or expiry (or a trade's failed settlement) is a `note` too,
//!   and only its post moves money, at cost pro rata for a trade (dated the post's day, where the
//!   ledger's lots count the trade at its trade date).
//! - Status changes, limits and booking methods set after the opening: `note`s (a Beancount
//!   `open` keeps its method). Marks: `price`s.
//! - Closes and reopens: at the end, the trial balance of every close still standing, as
//!   `balance`s on the day after its end (`periods`).
//!
//! Last, a `balance` for every account and every asset it used, dated the day after the
//! latest entry because Beancount checks a `balance` at the start of its day, and with the
//! tolerance `~ 0` because Beancount otherwise accepts a balance off by one in its last place.
//!
//! The log is read twice, to the same head: once to learn which assets each account uses (its
//! `open` comes first), the balances and what moves at cost, once to write the entries; a third
//! time, before writing, when anything moves at cost (`booking`: the units of traded
//! instruments moved without a cost). Memory is one balance per account and asset, as in the
//! balances projection, plus what `booking` keeps of the lots.

mod booking;
mod names;
mod periods;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use booking::{Income, Leg, Part, Plans};
use chrono::{DateTime, NaiveDate, Utc};
use domain::event::{
    AccountLimitsSet, AccountOpened, AssetDefined, PendingPosted, TradeExecuted, TransactionPosted,
};
use domain::values::TransactionKind;
use domain::{chain, AccountCode, AssetCode, Event, Posting};
use rust_decimal::Decimal;
use sqlx::PgPool;

pub use names::{account_name, commodity_name, realized_name, Root, FEES_IN_COST, LOT_CLEARING};

use crate::event_store::{format_recorded_at, page, EventMetadata, StoredEvent, PAGE_EVENTS};
use crate::{Error, Result};

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Events read (positions 1 to `head_position`).
    pub events: i64,
    pub head_position: i64,
}

/// Writes the whole log, up to its head as the export begins, as a Beancount file.
pub async fn export(pool: &PgPool, root: Root, out: &mut impl Write) -> Result<ExportSummary> {
    let mut survey = Survey::default();
    walk(pool, i64::MAX, |stored, event| survey.record(stored, event)).await?;
    let head_position = survey.head_position;
    if survey.bookings.any() {
        walk(pool, head_position, |stored, event| {
            survey.flow(stored, event);
            Ok(())
        })
        .await?;
    }
    let plans = std::mem::take(&mut survey.bookings).plan(&survey.scales)?;
    let mut closes = std::mem::take(&mut survey.closes);
    let mut writer = BeancountWriter::new(out, root, &survey, &plans);
    writer.header()?;
    let mut events = 0;
    walk(pool, head_position, |stored, event| {
        events += 1;
        closes.apply(stored, event);
        writer.entry(stored, event)
    })
    .await?;
    writer.closes = closes.finish()?;
    writer.closes()?;
    writer.balances()?;
    writer.out.flush()?;
    Ok(ExportSummary {
        events,
        head_position,
    })
}

/// `export`, over events in memory (as the log would give them).
#[cfg(test)]
fn export_events(
    events: &[(StoredEvent, Event)],
    root: Root,
    out: &mut impl Write,
) -> Result<ExportSummary> {
    let mut survey = Survey::default();
    for (stored, event) in events {
        survey.record(stored, event)?;
    }
    if survey.bookings.any() {
        for (stored, event) in events {
            survey.flow(stored, event);
        }
    }
    let plans = std::mem::take(&mut survey.bookings).plan(&survey.scales)?;
    let mut closes = std::mem::take(&mut survey.closes);
    let mut writer = BeancountWriter::new(out, root, &survey, &plans);
    writer.header()?;
    for (stored, event) in events {
        closes.apply(stored, event);
        writer.entry(stored, event)?;
    }
    writer.closes = closes.finish()?;
    writer.closes()?;
    writer.balances()?;
    writer.out.flush()?;
    Ok(ExportSummary {
        events: i64::try_from(events.len()).unwrap_or(i64::MAX),
        head_position: survey.head_position,
    })
}

/// Calls `visit` with every event up to `head` (inclusive), decoded, in position order.
async fn walk(
    pool: &PgPool,
    head: i64,
    mut visit: impl FnMut(&StoredEvent, &Event) -> Result<()>,
) -> Result<()> {
    let mut after = 0;
    while after < head {
        let rows = page(pool, after, PAGE_EVENTS).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.position;
        for stored in rows.iter().take_while(|stored| stored.position <= head) {
            visit(stored, &stored.decode()?)?;
        }
    }
    Ok(())
}

/// What the first reading of the log learns: its head, scales, each account's assets and
/// balances and the first day it is named, and the closes.
struct Survey {
    head_position: i64,
    head_hash: String,
    /// The latest day of an entry.
    last_date: Option<NaiveDate>,
    /// The earliest day of an entry that names the account (its `open` is dated so).
    first_dates: HashMap<AccountCode, NaiveDate>,
    closes: periods::Closes,
    scales: HashMap<AssetCode, u32>,
    /// Per account, every asset it moves or reserves, with its balance (`credits − debits`).
    balances: BTreeMap<AccountCode, BTreeMap<AssetCode, Decimal>>,
    /// What moves at cost (`booking`).
    bookings: booking::Bookings,
}

impl Default for Survey {
    /// An empty log's: position 0 and the genesis hash.
    fn default() -> Self {
        Self {
            head_position: 0,
            head_hash: chain::to_hex(&chain::genesis()),
            last_date: None,
            first_dates: HashMap::new(),
            closes: periods::Closes::default(),
            scales: HashMap::new(),
            balances: BTreeMap::new(),
            bookings: booking::Bookings::default(),
        }
    }
}

impl Survey {
    fn record(&mut self, stored: &StoredEvent, event: &Event) -> Result<()> {
        self.head_position = stored.position;
        self.head_hash = chain::to_hex_slice(&stored.hash);
        let date = entry_date(stored, event);
        self.last_date = self.last_date.max(Some(date));
        for account in event.accounts_touched() {
            let first = self.first_dates.entry(account.clone()).or_insert(date);
            *first = (*first).min(date);
        }
        self.closes.survey(stored, event);
        match event {
            Event::AssetDefined(e) => {
                self.scales.insert(e.asset.clone(), e.scale.get());
            }
            Event::AccountOpened(e) => {
                self.balances.entry(e.code.clone()).or_default();
            }
            _ => {}
        }
        for posting in event.postings() {
            for account in [&posting.source, &posting.destination] {
                self.balance_mut(account, &posting.asset, stored.position)?;
            }
        }
        for posting in event.moved() {
            *self.balance_mut(&posting.source, &posting.asset, stored.position)? -= posting.amount;
            *self.balance_mut(&posting.destination, &posting.asset, stored.position)? +=
                posting.amount;
        }
        self.bookings.record(stored, event, date, &self.scales)
    }

    /// Second reading, when something moves at cost: the units moved without one.
    fn flow(&mut self, stored: &StoredEvent, event: &Event) {
        let date = entry_date(stored, event);
        self.bookings.flow(stored, event, date);
    }

    fn balance_mut(
        &mut self,
        account: &AccountCode,
        asset: &AssetCode,
        position: i64,
    ) -> Result<&mut Decimal> {
        let assets = self.balances.get_mut(account).ok_or_else(|| {
            Error::Corrupt(format!(
                "position {position}: account {account} is not open"
            ))
        })?;
        Ok(assets.entry(asset.clone()).or_default())
    }

    /// `amount` and its commodity, as Beancount writes them.
    fn amount(&self, amount: Decimal, asset: &AssetCode) -> Result<String> {
        Ok(format!(
            "{} {}",
            self.number(amount, asset)?,
            commodity_name(asset)
        ))
    }

    /// `amount` exactly, at the asset's scale (never rounded: more places is an error).
    fn number(&self, amount: Decimal, asset: &AssetCode) -> Result<String> {
        let scale = *self
            .scales
            .get(asset)
            .ok_or_else(|| Error::Corrupt(format!("asset {asset} is not defined")))?;
        let mut exact = amount.normalize();
        if exact.scale() > scale {
            return Err(Error::Corrupt(format!(
                "{amount} {asset} has more than the asset's {scale} decimal places"
            )));
        }
        exact.rescale(scale);
        if exact.is_zero() {
            exact.set_sign_positive(true);
        }
        Ok(exact.to_string())
    }
}

/// A metadata value, in Beancount's syntax.
#[derive(Clone)]
enum Meta {
    Text(String),
    Number(String),
    Bool(bool),
}

/// A string in Beancount's syntax: quoted, with `\` and `"` escaped.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

struct BeancountWriter<'a, W: Write> {
    out: &'a mut W,
    root: Root,
    survey: &'a Survey,
    /// How the postings at cost are written (`booking`).
    plans: &'a Plans,
    /// The date of the entries being written: the UTC day the event counts (`entry_date`).
    date: NaiveDate,
    /// Every close, recomputed, for its assertions.
    closes: Vec<periods::Asserted>,
}

impl<'a, W: Write> BeancountWriter<'a, W> {
    fn new(out: &'a mut W, root: Root, survey: &'a Survey, plans: &'a Plans) -> Self {
        Self {
            out,
            root,
            survey,
            plans,
            date: NaiveDate::MIN,
            closes: Vec::new(),
        }
    }

    fn header(&mut self) -> Result<()> {
        let survey = self.survey;
        writeln!(
            self.out,
            "; The ledger's log as Beancount, written by `ledger export --format beancount`:\n\
             ; the log up to position {}, head hash {}.\n\
             ; Every account is under {}. docs/beancount.md in the ledger's repository says how\n\
             ; codes become names, how signs read and how holds appear.\n\
             option \"title\" \"ledger\"\n",
            survey.head_position, survey.head_hash, self.root
        )?;
        if let Some(first) = self.plans.first_date {
            writeln!(
                self.out,
                "; Lots: the fees in costs and proceeds that the entries' weights count twice, and\n\
                 ; the legs of an entry written apart (each nets to zero per entry).\n\
                 {first} open {FEES_IN_COST}\n\
                 {first} open {LOT_CLEARING}\n"
            )?;
        }
        Ok(())
    }

    fn account(&self, code: &AccountCode) -> String {
        account_name(self.root, code)
    }

    fn entry(&mut self, stored: &StoredEvent, event: &Event) -> Result<()> {
        self.date = entry_date(stored, event);
        match event {
            Event::AssetDefined(e) => self.commodity(stored, e),
            Event::AccountOpened(e) => self.open(stored, e),
            Event::TransactionPosted(e) if e.pending => {
                self.hold(stored, event, "Hold", &e.postings, e.expires_at)
            }
            Event::TransactionPosted(e) => self.transaction(stored, e),
            Event::TradeExecuted(e) if e.pending => {
                self.hold(stored, event, "Trade hold", &e.postings, e.expires_at)
            }
            Event::TradeExecuted(e) => self.trade(stored, e),
            Event::PendingPosted(e) => self.post(stored, e),
            Event::PendingVoided(e) => self.release(stored, event, "voided", &e.released),
            Event::PendingExpired(e) => self.release(stored, event, "expired", &e.released),
            Event::AccountStatusChanged(e) => {
                let text = format!("Status: {}", e.status.as_str());
                self.note(stored, &e.account, &text, Vec::new())
            }
            Event::AccountLimitsSet(e) => self.limits(stored, e),
            Event::BookingMethodSet(e) => {
                let text = format!("Booking method: {}", e.booking_method.as_str());
                self.note(stored, &e.account, &text, Vec::new())
            }
            Event::PriceMarked(e) => self.price(stored, e),
            // Closes are written at the end, with their trial balances (`closes`).
            Event::PeriodClosed(_) | Event::PeriodReopened(_) => Ok(()),
        }
    }

    fn commodity(&mut self, stored: &StoredEvent, e: &AssetDefined) -> Result<()> {
        let date = self.date;
        writeln!(self.out, "{date} commodity {}", commodity_name(&e.asset))?;
        self.meta(
            stored,
            [
                ("ledger-code", Meta::Text(e.asset.to_string())),
                ("scale", Meta::Number(e.scale.get().to_string())),
            ],
        )?;
        Ok(writeln!(self.out)?)
    }

    fn open(&mut self, stored: &StoredEvent, e: &AccountOpened) -> Result<()> {
        let first = self.survey.first_dates.get(&e.code).copied();
        let date = first.map_or(self.date, |first| first.min(self.date));
        let (name, constraint) = (self.account(&e.code), self.constraint(&e.code));
        let method = self.plans.methods.get(&e.code).map_or(String::new(), |m| {
            format!(" \"{}\"", booking::beancount_method(*m))
        });
        writeln!(self.out, "{date} open {name}{constraint}{method}")?;
        self.meta(
            stored,
            [
                ("ledger-code", Meta::Text(e.code.to_string())),
                ("account-id", Meta::Text(e.account_id.to_string())),
                ("allow-negative", Meta::Bool(e.allow_negative)),
            ],
        )?;
        writeln!(self.out)?;
        self.realized_opens(&e.code, date)
    }

    /// The income accounts of an account's realized P&L, one per instrument, opened with it;
    /// their metadata names the account and instrument (the names are not read back).
    fn realized_opens(&mut self, code: &AccountCode, date: NaiveDate) -> Result<()> {
        let plans = self.plans;
        for ((account, instrument), (_, currencies)) in &plans.income {
            if account != code {
                continue;
            }
            let currencies: Vec<String> = currencies.iter().map(commodity_name).collect();
            writeln!(
                self.out,
                "{date} open {} {}\n  realized-account: {}\n  realized-instrument: {}\n",
                realized_name(account, instrument),
                currencies.join(","),
                quoted(account.as_str()),
                quoted(instrument.as_str())
            )?;
        }
        Ok(())
    }

    /// A hold moves nothing: a note on each account it touches says what it reserves.
    fn hold(
        &mut self,
        stored: &StoredEvent,
        event: &Event,
        kind: &str,
        postings: &[Posting],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let id = event.transaction_id().map(|id| id.to_string());
        let what = format!("{kind} {} reserves", id.unwrap_or_default());
        let expiry = expires_at.map(|at| ("expires-at", Meta::Text(format_recorded_at(at))));
        self.notes(stored, &what, postings, note_meta(event, expiry))
    }

    /// A void or an expiry moves nothing: a note on each account says what it releases.
    fn release(
        &mut self,
        stored: &StoredEvent,
        event: &Event,
        how: &str,
        released: &[Posting],
    ) -> Result<()> {
        let id = event.transaction_id().map(|id| id.to_string());
        let what = format!("Hold {} {how}: releases", id.unwrap_or_default());
        self.notes(stored, &what, released, note_meta(event, None))
    }

    fn limits(&mut self, stored: &StoredEvent, e: &AccountLimitsSet) -> Result<()> {
        let bound = |b: Option<Decimal>| -> Result<String> {
            b.map_or(Ok("none".to_owned()), |b| self.survey.amount(b, &e.asset))
        };
        let text = format!(
            "Limits in {}: min {}, max {}",
            commodity_name(&e.asset),
            bound(e.min_balance)?,
            bound(e.max_balance)?
        );
        self.note(stored, &e.account, &text, Vec::new())
    }

    /// ` USD,AAPL`: the commodities an account uses, for its `open`.
    fn constraint(&self, code: &AccountCode) -> String {
        let mut commodities: Vec<String> = self
            .survey
            .balances
            .get(code)
            .map(|assets| assets.keys().map(commodity_name).collect())
            .unwrap_or_default();
        commodities.sort();
        if commodities.is_empty() {
            String::new()
        } else {
            format!(" {}", commodities.join(","))
        }
    }

    fn transaction(&mut self, stored: &StoredEvent, e: &TransactionPosted) -> Result<()> {
        let (narration, mut links) = match (e.kind, e.reverses) {
            (TransactionKind::Reversal, Some(original)) => (
                format!("Reversal of {original}"),
                vec![original.to_string()],
            ),
            (TransactionKind::Reversal, None) => ("Reversal".to_owned(), Vec::new()),
            (TransactionKind::Transfer, _) => ("Transfer".to_owned(), Vec::new()),
            (TransactionKind::Transaction, _) => ("Transaction".to_owned(), Vec::new()),
        };
        links.insert(0, e.transaction_id.to_string());
        self.transaction_header(&narration, &links)?;
        let mut meta = vec![
            ("transaction-id", Meta::Text(e.transaction_id.to_string())),
            ("kind", Meta::Text(e.kind.as_str().to_owned())),
        ];
        if let Some(original) = e.reverses {
            meta.push(("reverses", Meta::Text(original.to_string())));
        }
        if e.forced {
            meta.push(("forced", Meta::Bool(true)));
        }
        meta.extend(ledger_metadata(&e.metadata));
        self.meta(stored, meta)?;
        self.postings(stored, &e.postings, &links)
    }

    fn trade(&mut self, stored: &StoredEvent, e: &TradeExecuted) -> Result<()> {
        let narration = format!(
            "Trade: {} buys {} {} at {} {} from {}",
            self.account(&e.buyer),
            e.quantity,
            commodity_name(&e.instrument),
            e.price,
            commodity_name(&e.currency),
            self.account(&e.seller)
        );
        let links = [e.trade_id.to_string()];
        self.transaction_header(&narration, &links)?;
        let mut meta = vec![
            ("trade-id", Meta::Text(e.trade_id.to_string())),
            ("quantity", Meta::Number(e.quantity.to_string())),
            ("price", Meta::Number(e.price.to_string())),
            ("notional", Meta::Number(e.notional.to_string())),
        ];
        if !e.fees.is_empty() {
            let fees = e
                .fees
                .iter()
                .map(|f| (&f.payer, &f.account, &f.asset, f.amount));
            meta.push(("fees", Meta::Text(self.movements(fees)?)));
        }
        meta.extend(ledger_metadata(&e.metadata));
        self.meta(stored, meta)?;
        self.postings(stored, &e.postings, &links)
    }

    /// `1.25 USD from Assets:Alice:Cash to Assets:Broker:Fees; …`, for metadata: a trade's fees
    /// (among its postings already), a post's ended reservations.
    fn movements<'p>(
        &self,
        legs: impl Iterator<Item = (&'p AccountCode, &'p AccountCode, &'p AssetCode, Decimal)>,
    ) -> Result<String> {
        let described: Result<Vec<String>> = legs
            .map(|(from, to, asset, amount)| {
                Ok(format!(
                    "{} from {} to {}",
                    self.survey.amount(amount, asset)?,
                    self.account(from),
                    self.account(to)
                ))
            })
            .collect();
        Ok(described?.join("; "))
    }

    /// The amounts posted (less than reserved when posted in part): `released` names the
    /// reservations the post ends.
    fn post(&mut self, stored: &StoredEvent, e: &PendingPosted) -> Result<()> {
        let narration = format!("Post of hold {}", e.pending_id);
        let links = [e.pending_id.to_string()];
        self.transaction_header(&narration, &links)?;
        let released = e
            .released
            .iter()
            .map(|p| (&p.source, &p.destination, &p.asset, p.amount));
        let mut meta = vec![
            ("pending-id", Meta::Text(e.pending_id.to_string())),
            ("released", Meta::Text(self.movements(released)?)),
        ];
        meta.extend(ledger_metadata(&e.metadata));
        self.meta(stored, meta)?;
        self.postings(stored, &e.postings, &links)
    }

    fn transaction_header(&mut self, narration: &str, links: &[String]) -> Result<()> {
        let date = self.date;
        write!(self.out, "{date} * {}", quoted(narration))?;
        for link in links {
            write!(self.out, " ^tx-{link}")?;
        }
        writeln!(self.out)?;
        Ok(())
    }

    /// Each ledger posting as two Beancount postings: minus at the source, plus at the
    /// destination; a side that moves units at cost as its leg's lines instead. Then the legs'
    /// income and what the entry's costs and proceeds leave (`lots_tail`).
    fn postings(
        &mut self,
        stored: &StoredEvent,
        postings: &[Posting],
        links: &[String],
    ) -> Result<()> {
        let plans = self.plans;
        let legs: &[Leg] = plans.legs.get(&stored.position).map_or(&[], Vec::as_slice);
        for (index, posting) in postings.iter().enumerate() {
            let amount = self.survey.amount(posting.amount, &posting.asset)?;
            for (destination, account) in [(false, &posting.source), (true, &posting.destination)] {
                let mut here = legs
                    .iter()
                    .filter(|l| l.index == index && l.destination == destination)
                    .peekable();
                if here.peek().is_none() {
                    let sign = if destination { "" } else { "-" };
                    writeln!(self.out, "  {}  {sign}{amount}", self.account(account))?;
                }
                for leg in here.filter(|l| !l.split) {
                    for part in &leg.parts {
                        writeln!(self.out, "{}", self.part(leg, part)?)?;
                    }
                }
            }
        }
        self.lots_tail(stored, legs, links)
    }

    /// After an entry's postings: the income of its legs, what its costs and proceeds do not
    /// cancel (`FEES_IN_COST`: the postings themselves net to zero per asset, so the weights
    /// of the legs and their income add up to the sum of their targets), and the legs written
    /// apart, each balanced through `LOT_CLEARING`.
    fn lots_tail(&mut self, stored: &StoredEvent, legs: &[Leg], links: &[String]) -> Result<()> {
        let mut left: BTreeMap<&AssetCode, Decimal> = BTreeMap::new();
        for leg in legs {
            *left.entry(&leg.currency).or_default() -= leg.target;
            if leg.split {
                let clearing = self.survey.amount(leg.target, &leg.currency)?;
                writeln!(self.out, "  {LOT_CLEARING}  {clearing}")?;
            } else {
                self.income(leg)?;
            }
        }
        for (currency, amount) in left.into_iter().filter(|(_, a)| !a.is_zero()) {
            let amount = self.survey.amount(amount, currency)?;
            writeln!(self.out, "  {FEES_IN_COST}  {amount}")?;
        }
        writeln!(self.out)?;
        for leg in legs.iter().filter(|l| l.split) {
            let narration = format!(
                "Lots of {} in {}",
                self.account(&leg.account),
                commodity_name(&leg.instrument)
            );
            self.transaction_header(&narration, links)?;
            self.meta(stored, Vec::new())?;
            for part in &leg.parts {
                writeln!(self.out, "{}", self.part(leg, part)?)?;
            }
            self.income(leg)?;
            let clearing = self.survey.amount(-leg.target, &leg.currency)?;
            writeln!(self.out, "  {LOT_CLEARING}  {clearing}\n")?;
        }
        Ok(())
    }

    /// A leg's realized P&L, when it has any: without an amount when Beancount computes it.
    fn income(&mut self, leg: &Leg) -> Result<()> {
        let name = realized_name(&leg.account, &leg.instrument);
        match leg.income {
            None => {}
            Some(Income::Computed) => writeln!(self.out, "  {name}")?,
            Some(Income::Stated(amount)) => {
                let amount = self.survey.amount(amount, &leg.currency)?;
                writeln!(self.out, "  {name}  {amount}")?;
            }
        }
        Ok(())
    }

    /// One line of a leg (`booking::Part`).
    fn part(&self, leg: &Leg, part: &Part) -> Result<String> {
        let name = self.account(&leg.account);
        let (commodity, currency) = (
            commodity_name(&leg.instrument),
            commodity_name(&leg.currency),
        );
        let units = |units: Decimal| self.survey.number(units, &leg.instrument);
        let price = leg
            .price
            .map_or(String::new(), |p| format!(" @ {p} {currency}"));
        Ok(match part {
            Part::Reduce { units: u } => {
                format!("  {name}  {} {commodity} {{{currency}}}{price}", units(*u)?)
            }
            Part::ReduceLot { units: u, label } => {
                format!(
                    "  {name}  {} {commodity} {{{}}}{price}",
                    units(*u)?,
                    quoted(label)
                )
            }
            Part::AtCost {
                units: u,
                total,
                date,
                label,
            } => {
                let mut spec = self.survey.amount(*total, &leg.currency)?;
                if let Some(date) = date {
                    spec.push_str(&format!(", {date}"));
                }
                if let Some(label) = label {
                    spec.push_str(&format!(", {}", quoted(label)));
                }
                format!("  {name}  {} {commodity} {{{{{spec}}}}}{price}", units(*u)?)
            }
            Part::AtTotalPrice { units: u, total } => {
                let total = self.survey.amount(*total, &leg.currency)?;
                format!("  {name}  {} {commodity} @@ {total}", units(*u)?)
            }
        })
    }

    /// One `note` per account that `postings` touch, listing its legs, in the order they appear.
    fn notes(
        &mut self,
        stored: &StoredEvent,
        what: &str,
        postings: &[Posting],
        meta: Vec<(&'static str, Meta)>,
    ) -> Result<()> {
        let mut legs: Vec<(&AccountCode, Vec<String>)> = Vec::new();
        for posting in postings {
            let amount = self.survey.amount(posting.amount, &posting.asset)?;
            let to = format!("-{amount} to {}", self.account(&posting.destination));
            let from = format!("{amount} from {}", self.account(&posting.source));
            for (account, leg) in [(&posting.source, to), (&posting.destination, from)] {
                match legs.iter_mut().find(|(a, _)| *a == account) {
                    Some((_, listed)) => listed.push(leg),
                    None => legs.push((account, vec![leg])),
                }
            }
        }
        for (account, listed) in legs {
            let text = format!("{what} {}", listed.join("; "));
            let meta = meta.iter().map(|(k, v)| (*k, v.clone())).collect();
            self.note(stored, account, &text, meta)?;
        }
        Ok(())
    }

    /// A mark, as Beancount's own price directive.
    fn price(&mut self, stored: &StoredEvent, e: &domain::event::PriceMarked) -> Result<()> {
        let date = self.date;
        writeln!(
            self.out,
            "{date} price {} {} {}",
            commodity_name(&e.instrument),
            e.price,
            commodity_name(&e.currency)
        )?;
        self.meta(stored, Vec::new())?;
        writeln!(self.out)?;
        Ok(())
    }

    fn note(
        &mut self,
        stored: &StoredEvent,
        account: &AccountCode,
        text: &str,
        meta: Vec<(&'static str, Meta)>,
    ) -> Result<()> {
        let date = self.date;
        let name = self.account(account);
        writeln!(self.out, "{date} note {name} {}", quoted(text))?;
        self.meta(stored, meta)?;
        writeln!(self.out)?;
        Ok(())
    }

    /// The metadata every entry has (position, event id, idempotency key), then `extra`.
    fn meta(
        &mut self,
        stored: &StoredEvent,
        extra: impl IntoIterator<Item = (&'static str, Meta)>,
    ) -> Result<()> {
        let mut all = vec![
            ("position", Meta::Number(stored.position.to_string())),
            ("event-id", Meta::Text(stored.event_id.to_string())),
        ];
        if let Ok(envelope) = serde_json::from_str::<EventMetadata>(&stored.metadata) {
            all.push(("idempotency-key", Meta::Text(envelope.idempotency_key)));
        }
        all.extend(extra);
        for (key, value) in all {
            let value = match value {
                Meta::Text(text) => quoted(&text),
                Meta::Number(number) => number,
                Meta::Bool(true) => "TRUE".to_owned(),
                Meta::Bool(false) => "FALSE".to_owned(),
            };
            writeln!(self.out, "  {key}: {value}")?;
        }
        Ok(())
    }

    /// For every close: a comment, and its trial balance as `balance`s on the day after its end
    /// when it still stands and Beancount's days can tell it (`periods`).
    fn closes(&mut self) -> Result<()> {
        let closes = std::mem::take(&mut self.closes);
        for asserted in &closes {
            writeln!(self.out, "{}", periods::comment(asserted))?;
            let Some(date) = asserted.date else {
                writeln!(self.out)?;
                continue;
            };
            for row in asserted.checked.trial_balance.rows() {
                let name = self.account(&row.account);
                let number = self.survey.number(row.balance, &row.asset)?;
                let commodity = commodity_name(&row.asset);
                writeln!(self.out, "{date} balance {name}  {number} ~ 0 {commodity}")?;
            }
            writeln!(self.out)?;
        }
        Ok(())
    }

    /// A `balance` for every account and asset, the day after the last entry.
    fn balances(&mut self) -> Result<()> {
        let survey = self.survey;
        let Some(last_date) = survey.last_date else {
            return Ok(());
        };
        let date = last_date
            .succ_opt()
            .ok_or_else(|| Error::Corrupt(format!("no day follows {last_date}")))?;
        writeln!(
            self.out,
            "; Every balance after position {}, as the ledger computes it from the log. Beancount\n\
             ; checks a balance at the start of its day: these are dated the day after the last entry.\n\
             ; `~ 0`: exactly (by default Beancount lets a balance be off by one in its last place).",
            survey.head_position
        )?;
        for (account, assets) in &survey.balances {
            let name = self.account(account);
            for (asset, balance) in assets {
                let number = survey.number(*balance, asset)?;
                let commodity = commodity_name(asset);
                writeln!(self.out, "{date} balance {name}  {number} ~ 0 {commodity}")?;
            }
        }
        Ok(())
    }
}

/// The UTC day an event counts in the books: its `effective_at`, else when it was recorded.
fn entry_date(stored: &StoredEvent, event: &Event) -> NaiveDate {
    event.effective_or(stored.recorded_at).date_naive()
}

/// The caller's metadata of a transaction, as one JSON string (its keys need not be Beancount
/// keys).
fn ledger_metadata(metadata: &domain::Metadata) -> Option<(&'static str, Meta)> {
    if metadata.is_empty() {
        return None;
    }
    Some(("ledger-metadata", Meta::Text(metadata.as_json().to_owned())))
}

/// The metadata of a note: the transaction or trade the event records or settles, then `extra`.
fn note_meta(event: &Event, extra: Option<(&'static str, Meta)>) -> Vec<(&'static str, Meta)> {
    let id = event
        .transaction_id()
        .map(|id| ("transaction-id", Meta::Text(id.to_string())));
    id.into_iter().chain(extra).collect()
}
