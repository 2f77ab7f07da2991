//! Lots, cost basis, realized P&L and marks over HTTP. Seeded random trading among a few
//! accounts in two instruments, with every booking method, shorts, cost-stated transfers,
//! reversals and voided pending trades: the open lots and realized P&L the API serves equal a
//! small model written here, in whole smallest units, which shares nothing with `domain::lots`
//! but its specification; and a rebuild of the projections from the log equals the live ones row
//! for row. Then marks, positions as of a date, a booking method changed later, realized P&L as
//! CSV, and the roll-up of positions by prefix.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use ledger_tests::serde_json::{json, Value};
use ledger_tests::{Answer, TestLedger};

/// xorshift64*: a small generator, so that a seed names one run exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// The model: lots in whole units (instrument units, cents), by the rules of docs/events.md.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Fifo,
    Lifo,
    Hifo,
    Average,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Fifo => "fifo",
            Method::Lifo => "lifo",
            Method::Hifo => "hifo",
            Method::Average => "average",
        }
    }
}

/// One acquisition (+) or disposal (−) of a book.
#[derive(Debug, Clone)]
struct Move {
    lot_id: String,
    transaction: String,
    position: i64,
    /// Its order among the movements of its event.
    leg: i64,
    date: NaiveDate,
    units: i128,
    cents: i128,
}

#[derive(Debug, Clone)]
struct ModelLot {
    id: String,
    position: i64,
    date: NaiveDate,
    /// Negative when short.
    units: i128,
    /// What it cost (long) or brought (short).
    cents: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ModelClosing {
    position: i64,
    lot_id: String,
    units: i128,
    cost: i128,
    proceeds: i128,
}

/// `whole × part ÷ of`, rounded half to even, in whole units.
fn share(whole: i128, part: i128, of: i128) -> i128 {
    if part == of || of == 0 {
        return whole;
    }
    let n = whole * part;
    let (q, r) = (n.div_euclid(of), n.rem_euclid(of));
    match (2 * r).cmp(&of) {
        Ordering::Less => q,
        Ordering::Greater => q + 1,
        Ordering::Equal => q + q.rem_euclid(2),
    }
}

/// `whole` over `parts` (summing to `of`): each its share, the last what is left.
fn split(whole: i128, parts: &[i128], of: i128) -> Vec<i128> {
    let mut left = whole;
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let amount = if i + 1 == parts.len() {
            left
        } else {
            share(whole, *part, of)
        };
        left -= amount;
        out.push(amount);
    }
    out
}

#[derive(Debug, Default, Clone)]
struct ModelBook {
    lots: Vec<ModelLot>,
}

/// What the model notes at each closing of an `average` book: units closed, the open units
/// and their amount just before.
#[derive(Debug, Clone)]
struct AverageAt {
    position: i64,
    /// Whether the lots closed were long (their cost is the average's) or short (their proceeds).
    long: bool,
    closed: i128,
    open: i128,
    amount: i128,
}

impl ModelBook {
    fn open_units(&self) -> i128 {
        self.lots.iter().map(|l| l.units.abs()).sum()
    }

    fn insert(&mut self, lot: ModelLot) {
        let at = self
            .lots
            .iter()
            .position(|l| (l.date, l.position) > (lot.date, lot.position))
            .unwrap_or(self.lots.len());
        self.lots.insert(at, lot);
    }

    /// The lots a closing of `units` takes, as (index, units), by `method`.
    fn picks(&self, method: Method, units: i128) -> Vec<(usize, i128)> {
        let mut order: Vec<usize> = (0..self.lots.len()).collect();
        match method {
            Method::Fifo | Method::Average => {}
            Method::Lifo => order.reverse(),
            // Long lots: the highest unit cost first; short lots, in mirror: the lowest unit
            // proceeds first.
            Method::Hifo => order.sort_by(|&a, &b| {
                let (x, y) = (&self.lots[a], &self.lots[b]);
                let higher_first = (y.cents * x.units.abs()).cmp(&(x.cents * y.units.abs()));
                let short = self.lots.iter().any(|l| l.units < 0);
                let by_unit = if short {
                    higher_first.reverse()
                } else {
                    higher_first
                };
                by_unit.then(a.cmp(&b))
            }),
        }
        let mut left = units;
        let mut picks = Vec::new();
        for i in order {
            if left == 0 {
                break;
            }
            let take = self.lots[i].units.abs().min(left);
            picks.push((i, take));
            left -= take;
        }
        picks
    }

    /// What each pick takes from its lot's amount: its own share, or under `average` its share
    /// of the whole book's (noted in `averages`).
    fn taken_from_lots(
        &self,
        method: Method,
        picks: &[(usize, i128)],
        position: i64,
        averages: &mut Vec<AverageAt>,
    ) -> Vec<i128> {
        let takes: Vec<i128> = picks.iter().map(|p| p.1).collect();
        let taken: i128 = takes.iter().sum();
        if method != Method::Average || picks.is_empty() {
            let own = |(i, take): &(usize, i128)| {
                share(self.lots[*i].cents, *take, self.lots[*i].units.abs())
            };
            return picks.iter().map(own).collect();
        }
        let amount: i128 = self.lots.iter().map(|l| l.cents).sum();
        let open = self.open_units();
        let long = self.lots[0].units > 0;
        averages.push(AverageAt {
            position,
            long,
            closed: taken,
            open,
            amount,
        });
        split(share(amount, taken, open), &takes, taken)
    }

    /// Under average, what is left of the whole book's amount (a closed lot's remainder too: it
    /// was taken at the book's average, not at its own) is spread over the open lots.
    fn restate(&mut self, total: i128) {
        let units: Vec<i128> = self.lots.iter().map(|l| l.units.abs()).collect();
        let open: i128 = units.iter().sum();
        for (lot, cents) in self.lots.iter_mut().zip(split(total, &units, open)) {
            lot.cents = cents;
        }
    }

    fn apply(
        &mut self,
        method: Method,
        m: &Move,
        averages: &mut Vec<AverageAt>,
    ) -> Vec<ModelClosing> {
        let closing = self
            .lots
            .first()
            .is_some_and(|l| (l.units > 0) != (m.units > 0));
        let units = m.units.abs();
        let picks = match closing {
            true => self.picks(method, units),
            false => Vec::new(),
        };
        let taken: i128 = picks.iter().map(|p| p.1).sum();
        let from_lots = self.taken_from_lots(method, &picks, m.position, averages);
        let mut parts: Vec<i128> = picks.iter().map(|p| p.1).collect();
        if units > taken {
            parts.push(units - taken);
        }
        let from_move = split(m.cents, &parts, units);
        let mut closings = Vec::new();
        for (k, (i, take)) in picks.iter().enumerate() {
            let lot = &mut self.lots[*i];
            let (cost, proceeds) = match lot.units > 0 {
                true => (from_lots[k], from_move[k]),
                false => (from_move[k], from_lots[k]),
            };
            let id = lot.id.clone();
            closings.push(ModelClosing {
                position: m.position,
                lot_id: id,
                units: *take,
                cost,
                proceeds,
            });
            lot.units -= take * lot.units.signum();
            lot.cents -= from_lots[k];
        }
        let total: i128 = self.lots.iter().map(|l| l.cents).sum();
        self.lots.retain(|l| l.units != 0);
        if method == Method::Average && !picks.is_empty() {
            self.restate(total);
        }
        if units > taken {
            self.insert(ModelLot {
                id: m.lot_id.clone(),
                position: m.position,
                date: m.date,
                units: (units - taken) * m.units.signum(),
                cents: *from_move.last().unwrap_or(&m.cents),
            });
        }
        closings
    }
}

/// A book: (account, instrument); every currency here is USD.
type BookId = (String, String);

/// Everything the test did that the lots follow.
#[derive(Default)]
struct Model {
    moves: BTreeMap<BookId, Vec<Move>>,
    /// Per account, (position from which, method).
    methods: BTreeMap<String, Vec<(i64, Method)>>,
}

/// What the model computes for one book.
#[derive(Debug, Default)]
struct Computed {
    lots: Vec<ModelLot>,
    closings: Vec<ModelClosing>,
    averages: Vec<AverageAt>,
    units: i128,
    /// Its movements' amounts, acquisitions added and disposals taken off.
    signed_cents: i128,
    /// Whether it held a short lot at some point.
    went_short: bool,
}

impl Model {
    fn drop_transaction(&mut self, id: &str) {
        for moves in self.moves.values_mut() {
            moves.retain(|m| m.transaction != id);
        }
    }

    fn method_at(&self, account: &str, position: i64) -> Method {
        self.methods[account]
            .iter()
            .rfind(|(from, _)| *from < position)
            .map_or(Method::Fifo, |(_, method)| *method)
    }

    fn compute(&self, book: &BookId) -> Computed {
        let mut moves = self.moves.get(book).cloned().unwrap_or_default();
        // Movements apply by trade date, then position (a backdated trade takes its place).
        moves.sort_by_key(|m| (m.date, m.position, m.leg));
        let mut state = ModelBook::default();
        let mut computed = Computed::default();
        for m in &moves {
            let method = self.method_at(&book.0, m.position);
            computed
                .closings
                .extend(state.apply(method, m, &mut computed.averages));
            computed.went_short |= state.lots.iter().any(|l| l.units < 0);
            computed.units += m.units;
            computed.signed_cents += m.cents * m.units.signum();
        }
        computed.lots = state.lots;
        computed
    }
}

// ---------------------------------------------------------------------------------------------
// Talking to the ledger.
// ---------------------------------------------------------------------------------------------

/// Cents as the API writes a USD amount.
fn usd(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// A USD amount the API wrote, in cents; it must have exactly two places.
fn cents(text: &str) -> i128 {
    let (whole, fraction) = text
        .split_once('.')
        .unwrap_or_else(|| panic!("{text} has no cents"));
    assert_eq!(fraction.len(), 2, "{text} is not at the scale of USD");
    let negative = whole.starts_with('-');
    let value = whole.trim_start_matches('-').parse::<i128>().unwrap() * 100
        + fraction.parse::<i128>().unwrap();
    if negative {
        -value
    } else {
        value
    }
}

/// Units of an instrument (scale 0) as the API wrote them.
fn units(text: &str) -> i128 {
    assert!(
        !text.contains('.'),
        "{text} is not at the scale of the instrument"
    );
    text.parse().unwrap()
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
}

async fn put(ledger: &TestLedger, path: &str, key: &str, body: &Value) -> Answer {
    let response = ledger
        .client
        .put(ledger.url(path))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("PUT");
    TestLedger::read(response).await
}

async fn get_csv(ledger: &TestLedger, path: &str) -> Answer {
    let response = ledger
        .client
        .get(ledger.url(path))
        .header("accept", "text/csv")
        .send()
        .await
        .expect("GET");
    TestLedger::read(response).await
}

/// A time `days` before now (a second more, so never ahead of the server), to the microsecond.
fn days_ago(days: i64) -> DateTime<Utc> {
    let at = Utc::now() - Duration::days(days) - Duration::seconds(1);
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

const INSTRUMENTS: [&str; 2] = ["AAPL", "MSFT"];

/// USD (2), AAPL and MSFT (0); `world:bank` and `world:market` may go negative, and so may
/// every account named in `negative`; each account opened with its booking method.
async fn trading_floor(ledger: &TestLedger, accounts: &[(&str, Method, bool)], model: &mut Model) {
    for (code, scale) in [("USD", 2), ("AAPL", 0), ("MSFT", 0)] {
        ledger.define_asset(code, scale).await.expect(201);
    }
    let world = [
        ("world:bank", Method::Fifo, true),
        ("world:market", Method::Fifo, true),
        ("t:fees", Method::Fifo, false),
    ];
    for (code, method, negative) in world.iter().chain(accounts) {
        let opened = ledger
            .post(
                "/v1/accounts",
                &format!("open-{code}"),
                &json!({"code": code, "allow_negative": negative, "booking_method": method.name()}),
            )
            .await;
        opened.expect(201);
        model
            .methods
            .insert((*code).to_owned(), vec![(opened.position(), *method)]);
    }
    for (code, _, _) in accounts {
        ledger
            .transfer(
                &format!("cash-{code}"),
                "world:bank",
                code,
                "USD",
                "1000000.00",
            )
            .await
            .expect(201);
    }
}

/// One trade: its terms, and whether the ledger took it.
struct Trade<'a> {
    buyer: &'a str,
    seller: &'a str,
    instrument: &'a str,
    units: i128,
    price_cents: i128,
    /// (payer is the buyer, cents).
    fee: Option<(bool, i128)>,
    at: DateTime<Utc>,
    pending: bool,
}

impl Trade<'_> {
    fn body(&self) -> Value {
        let mut body = json!({"buyer": self.buyer, "seller": self.seller, "instrument": self.instrument,
            "quantity": self.units.to_string(), "price": usd(self.price_cents), "currency": "USD",
            "effective_at": rfc3339(self.at), "pending": self.pending});
        if let Some((by_buyer, fee)) = self.fee {
            let payer = if by_buyer { self.buyer } else { self.seller };
            body["fees"] = json!([{"payer": payer, "account": "t:fees", "amount": usd(fee)}]);
        }
        body
    }

    /// Its two movements, as `movements_of` makes them: the buyer's at the notional plus the
    /// buyer's fee, the seller's at the notional less the seller's.
    fn record(&self, model: &mut Model, id: &str, position: i64) {
        let notional = self.units * self.price_cents;
        let fee = |by_buyer: bool| self.fee.filter(|f| f.0 == by_buyer).map_or(0, |f| f.1);
        let sides = [
            (self.buyer, self.units, notional + fee(true)),
            (self.seller, -self.units, notional - fee(false)),
        ];
        for (leg, (account, units, cents)) in sides.into_iter().enumerate() {
            model
                .moves
                .entry((account.to_owned(), self.instrument.to_owned()))
                .or_default()
                .push(Move {
                    lot_id: format!("{id}/0"),
                    transaction: id.to_owned(),
                    position,
                    leg: leg as i64,
                    date: self.at.date_naive(),
                    units,
                    cents,
                });
        }
    }
}

/// A transfer of `units` from `source` to `destination` that states what they cost.
async fn cost_transfer(
    ledger: &TestLedger,
    model: &mut Model,
    key: &str,
    (source, destination, instrument): (&str, &str, &str),
    units: i128,
    cost_cents: i128,
    at: DateTime<Utc>,
) -> Option<String> {
    let body = json!({"source": source, "destination": destination, "asset": instrument,
        "amount": units.to_string(), "cost": {"amount": usd(cost_cents), "currency": "USD"},
        "effective_at": rfc3339(at)});
    let answer = ledger.post("/v1/transfers", key, &body).await;
    if answer.status != 201 {
        assert_eq!(answer.status, 422, "{}", answer.text);
        return None;
    }
    let id = text(&answer.body["id"]).to_owned();
    assert_eq!(
        answer.body["postings"][0]["cost"]["amount"],
        usd(cost_cents)
    );
    for (leg, (account, sign)) in [(source, -1), (destination, 1)].into_iter().enumerate() {
        model
            .moves
            .entry((account.to_owned(), instrument.to_owned()))
            .or_default()
            .push(Move {
                lot_id: format!("{id}/0"),
                transaction: id.clone(),
                position: answer.position(),
                leg: leg as i64,
                date: at.date_naive(),
                units: units * sign,
                cents: cost_cents,
            });
    }
    Some(id)
}

// ---------------------------------------------------------------------------------------------
// The random run and its comparison.
// ---------------------------------------------------------------------------------------------

/// What the run did: transactions that moved (reversible) and pending trades still open.
#[derive(Default)]
struct Run {
    moved: Vec<String>,
    pending: Vec<String>,
    /// What the run went through: accepted trades, reversals and voids.
    trades: usize,
    reversed: usize,
    voided: usize,
}

async fn random_trading(
    ledger: &TestLedger,
    seed: u64,
    accounts: &[(&str, Method, bool)],
) -> (Model, i64) {
    let mut model = Model::default();
    trading_floor(ledger, accounts, &mut model).await;
    let mut rng = Rng(seed);
    let mut run = Run::default();
    seed_lots(ledger, accounts, &mut model, &mut rng, &mut run).await;
    let mut parties: Vec<&str> = accounts.iter().map(|a| a.0).collect();
    parties.push("world:market");
    for step in 0..90 {
        let mut floor = Floor {
            ledger,
            model: &mut model,
            rng: &mut rng,
            run: &mut run,
            parties: &parties,
        };
        one_step(&mut floor, step).await;
        if step == 45 {
            // A booking method set later applies from its position on.
            let account = accounts[0].0;
            let set = put(
                ledger,
                &format!("/v1/accounts/{account}/booking-method"),
                "method-change",
                &json!({"booking_method": "hifo", "metadata": {"why": "tax lots"}}),
            )
            .await;
            set.expect(201);
            assert_eq!(set.body["booking_method"], "hifo");
            let methods = model.methods.get_mut(account).unwrap();
            methods.push((set.position(), Method::Hifo));
        }
    }
    assert!(
        run.trades > 30 && run.reversed > 0 && run.voided > 0,
        "the seed exercises trades ({}), reversals ({}) and voids ({})",
        run.trades,
        run.reversed,
        run.voided
    );
    // One pending trade is left open: it counts on its trade date, not yet settled.
    let open = Trade {
        buyer: accounts[1].0,
        seller: "world:market",
        instrument: "AAPL",
        units: 3,
        price_cents: 15_000,
        fee: None,
        at: days_ago(0),
        pending: true,
    };
    let answer = ledger.post("/v1/trades", "left-open", &open.body()).await;
    answer.expect(201);
    open.record(&mut model, text(&answer.body["id"]), answer.position());
    (model, answer.position())
}

/// Every account that may not go short starts with lots in both instruments, bought from the
/// market at a cost; the others start flat, and their first sale opens a short lot.
async fn seed_lots(
    ledger: &TestLedger,
    accounts: &[(&str, Method, bool)],
    model: &mut Model,
    rng: &mut Rng,
    run: &mut Run,
) {
    for (code, _, _) in accounts.iter().filter(|a| !a.2) {
        for instrument in INSTRUMENTS {
            let cost = (rng.between(1_000, 3_000) * 100) as i128;
            let key = format!("seed-{code}-{instrument}");
            let at = days_ago(rng.between(3, 6));
            let route = ("world:market", *code, instrument);
            let id = cost_transfer(ledger, model, &key, route, 20, cost, at).await;
            run.moved.push(id.expect("seed transfers are accepted"));
        }
    }
}

/// The state of a random run, and its steps.
struct Floor<'a> {
    ledger: &'a TestLedger,
    model: &'a mut Model,
    rng: &'a mut Rng,
    run: &'a mut Run,
    parties: &'a [&'a str],
}

async fn one_step(floor: &mut Floor<'_>, step: usize) {
    let key = format!("step-{step}");
    match floor.rng.between(0, 99) {
        0..=59 => floor.trade(&key).await,
        60..=77 => floor.transfer(&key).await,
        78..=87 => floor.settle(&key).await,
        _ => floor.reverse(&key).await,
    }
}

impl<'a> Floor<'a> {
    /// Two different parties.
    fn pair(&mut self) -> (&'a str, &'a str) {
        let first = *self.rng.pick(self.parties);
        loop {
            let second = *self.rng.pick(self.parties);
            if second != first {
                return (first, second);
            }
        }
    }

    async fn trade(&mut self, key: &str) {
        let (buyer, seller) = self.pair();
        let rng = &mut *self.rng;
        let trade = Trade {
            buyer,
            seller,
            instrument: INSTRUMENTS[(rng.next() % INSTRUMENTS.len() as u64) as usize],
            units: rng.between(1, 8) as i128,
            price_cents: rng.between(10_000, 19_999) as i128,
            fee: rng
                .chance(40)
                .then(|| (rng.chance(50), rng.between(1, 500) as i128)),
            at: days_ago(rng.between(0, 3)),
            pending: rng.chance(12),
        };
        let answer = self.ledger.post("/v1/trades", key, &trade.body()).await;
        if answer.status != 201 {
            assert_eq!(answer.code(), "insufficient_funds", "{}", answer.text);
            return;
        }
        let id = text(&answer.body["id"]).to_owned();
        trade.record(self.model, &id, answer.position());
        self.run.trades += 1;
        match trade.pending {
            true => self.run.pending.push(id),
            false => self.run.moved.push(id),
        }
    }

    async fn transfer(&mut self, key: &str) {
        let (source, destination) = self.pair();
        let route = (source, destination, *self.rng.pick(&INSTRUMENTS));
        let units = self.rng.between(1, 5) as i128;
        let cost = self.rng.between(5_000, 100_000) as i128;
        let at = days_ago(self.rng.between(0, 2));
        let moved = cost_transfer(self.ledger, self.model, key, route, units, cost, at).await;
        self.run.moved.extend(moved);
    }

    /// Posts or voids a pending trade.
    async fn settle(&mut self, key: &str) {
        if self.run.pending.is_empty() {
            return;
        }
        let at = (self.rng.next() % self.run.pending.len() as u64) as usize;
        let id = self.run.pending.remove(at);
        let action = if self.rng.chance(50) { "post" } else { "void" };
        let path = format!("/v1/transactions/{id}/{action}");
        self.ledger.post(&path, key, &json!({})).await.expect(201);
        if action == "void" {
            // A failed trade leaves the lots as if it had never happened.
            self.model.drop_transaction(&id);
            self.run.voided += 1;
        } else {
            self.run.moved.push(id);
        }
    }

    async fn reverse(&mut self, key: &str) {
        if self.run.moved.is_empty() {
            return;
        }
        let at = (self.rng.next() % self.run.moved.len() as u64) as usize;
        let id = self.run.moved[at].clone();
        let path = format!("/v1/transactions/{id}/reverse");
        let answer = self.ledger.post(&path, key, &json!({})).await;
        if answer.status == 201 {
            self.model.drop_transaction(&id);
            self.run.moved.retain(|m| *m != id);
            self.run.reversed += 1;
        } else {
            // The positions moved since; undoing it may take units an account no longer has.
            assert_eq!(answer.code(), "insufficient_funds", "{}", answer.text);
        }
    }
}

/// The open lots and the realized parts the API serves for an account, by book.
async fn served(ledger: &TestLedger, account: &str, at: i64) -> (Value, Vec<Value>) {
    let positions = ledger
        .get(&format!(
            "/v1/accounts/{account}/positions?min_position={at}"
        ))
        .await;
    positions.expect(200);
    assert!(positions.position() >= at);
    let realized = ledger
        .get(&format!(
            "/v1/accounts/{account}/realized?min_position={at}"
        ))
        .await;
    realized.expect(200);
    let mut parts = Vec::new();
    for item in realized.body["items"].as_array().unwrap() {
        for lot in item["lots"].as_array().unwrap() {
            let mut part = lot.clone();
            part["position"] = item["position"].clone();
            part["instrument"] = item["instrument"].clone();
            parts.push(part);
        }
        // An item sums its parts.
        let sum = |field: &str| {
            item["lots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| cents(text(&l[field])))
                .sum::<i128>()
        };
        assert_eq!(cents(text(&item["cost"])), sum("cost"));
        assert_eq!(cents(text(&item["proceeds"])), sum("proceeds"));
    }
    (positions.body, parts)
}

/// Every book of every account: the API's lots and realized parts equal the model's.
async fn compare(ledger: &TestLedger, model: &Model, at: i64, accounts: &[&str]) {
    for account in accounts {
        let (positions, parts) = served(ledger, account, at).await;
        let method = model.methods[*account].last().unwrap().1;
        for instrument in INSTRUMENTS {
            let book = (account.to_string(), instrument.to_owned());
            let expected = model.compute(&book);
            let position = positions["positions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["instrument"] == instrument && p["currency"] == "USD");
            let what = format!("{account} {instrument}");
            let Some(position) = position else {
                assert!(
                    expected.lots.is_empty() && expected.closings.is_empty(),
                    "{what}"
                );
                continue;
            };
            assert_eq!(position["booking_method"], method.name(), "{what}");
            let parts: Vec<&Value> = parts
                .iter()
                .filter(|p| p["instrument"] == instrument)
                .collect();
            compare_book(&what, &expected, position, &parts);
            if method == Method::Average {
                average_properties(&what, &expected, &parts, position);
            }
        }
    }
}

/// One book: the open lots in order, the closed parts, the realized P&L and the quantity.
fn compare_book(what: &str, expected: &Computed, position: &Value, parts: &[&Value]) {
    let lot = |l: &Value| {
        let id = text(&l["lot_id"]).to_owned();
        (id, units(text(&l["quantity"])), cents(text(&l["cost"])))
    };
    let lots: Vec<(String, i128, i128)> = position["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(lot)
        .collect();
    // A short lot's cost is what its sale brought, negative.
    let want: Vec<(String, i128, i128)> = expected
        .lots
        .iter()
        .map(|l| (l.id.clone(), l.units, l.cents * l.units.signum()))
        .collect();
    assert_eq!(lots, want, "open lots of {what}");
    let mut closings: Vec<ModelClosing> = parts
        .iter()
        .map(|p| ModelClosing {
            position: p["position"].as_i64().unwrap(),
            lot_id: text(&p["lot_id"]).to_owned(),
            units: units(text(&p["quantity"])),
            cost: cents(text(&p["cost"])),
            proceeds: cents(text(&p["proceeds"])),
        })
        .collect();
    closings.sort();
    let mut want = expected.closings.clone();
    want.sort();
    assert_eq!(closings, want, "realized parts of {what}");
    let realized: i128 = want.iter().map(|c| c.proceeds - c.cost).sum();
    assert_eq!(cents(text(&position["realized"])), realized, "{what}");
    // Every unit has a lot: the quantity on the trade date is the lots'.
    assert_eq!(units(text(&position["quantity"])), expected.units, "{what}");
    assert_eq!(position["uncosted"], "0", "{what}");
}

/// Under `average`: cost is conserved (the movements' amounts are what the open lots cost less
/// what was realized), and each closing takes within one cent of its units × the average of the
/// lots before it (their cost when long, what they brought when short).
fn average_properties(what: &str, expected: &Computed, parts: &[&Value], position: &Value) {
    let open_cost = cents(text(&position["cost_basis"]));
    let realized = cents(text(&position["realized"]));
    assert_eq!(
        open_cost - realized,
        expected.signed_cents,
        "cost conserved in {what}"
    );
    for at in &expected.averages {
        let side = if at.long { "cost" } else { "proceeds" };
        let taken: i128 = parts
            .iter()
            .filter(|p| p["position"].as_i64() == Some(at.position))
            .map(|p| cents(text(&p[side])))
            .sum();
        // |taken − closed × amount ÷ open| ≤ 1 cent, without dividing.
        let off = (taken * at.open - at.closed * at.amount).abs();
        assert!(
            off <= at.open,
            "{what} at {}: {taken} for {} of {} at {}",
            at.position,
            at.closed,
            at.open,
            at.amount
        );
    }
}

async fn random_trading_matches_the_model(seed: u64, accounts: &[(&str, Method, bool)]) {
    random_trading_on(TestLedger::start().await, seed, accounts, false).await;
}

/// `paced`: the projector is known to be behind when the run ends (it projects in few pages).
async fn random_trading_on(
    mut ledger: TestLedger,
    seed: u64,
    accounts: &[(&str, Method, bool)],
    paced: bool,
) {
    let (model, last) = random_trading(&ledger, seed, accounts).await;
    if paced {
        let mut conn = ledger.sql().await;
        let checkpoint: i64 =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'lots'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(checkpoint < last, "the lots are at {checkpoint} of {last}");
    }
    let mut everyone: Vec<&str> = accounts.iter().map(|a| a.0).collect();
    everyone.push("world:market");
    let short = |account: &str| {
        INSTRUMENTS.iter().any(|i| {
            let book = (account.to_owned(), (*i).to_owned());
            model.compute(&book).went_short
        })
    };
    assert!(
        accounts.iter().any(|a| a.2 && short(a.0)),
        "an account that may go negative goes short"
    );
    compare(&ledger, &model, last, &everyone).await;
    // Replay equals live: the lots rebuilt from the log are the live rows, byte for byte.
    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    for table in [
        "lot_movements",
        "lots",
        "lot_closings",
        "lot_books",
        "booking_methods",
        "prices",
    ] {
        assert!(
            report
                .differing_rows
                .iter()
                .any(|(t, n)| t == table && *n == 0),
            "{table}: {report:?}"
        );
    }
    // And the server serves them again after a restart, from its checkpoint.
    ledger.restart().await;
    compare(&ledger, &model, last, &everyone).await;
    ledger.finish().await;
}

#[tokio::test]
async fn seeded_random_trading_under_each_booking_method_matches_an_independent_model() {
    let accounts = [
        ("t:alice", Method::Fifo, false),
        ("t:bob", Method::Lifo, false),
        ("t:carol", Method::Hifo, false),
        ("t:dave", Method::Average, false),
        ("t:erin", Method::Fifo, true),
    ];
    random_trading_matches_the_model(0x5eed_0001, &accounts).await;
}

#[tokio::test]
async fn seeded_random_trading_with_shorts_under_every_method_matches_an_independent_model() {
    // Every account may go short here, each under another method.
    let accounts = [
        ("t:lifo", Method::Lifo, true),
        ("t:hifo", Method::Hifo, true),
        ("t:average", Method::Average, true),
        ("t:fifo", Method::Fifo, true),
    ];
    random_trading_matches_the_model(0x5eed_0002, &accounts).await;
}

#[tokio::test]
async fn seeded_random_trading_projected_in_few_large_pages_matches_an_independent_model() {
    // The projector waits long between pages that are not full, and only the reads of a
    // reversal (its original) hurry it: trades and their voids land in the same pages, so the
    // books a page computes again have movements of that very page too.
    let ledger = TestLedger::start_with(|config| {
        config.projector.page_interval_max = std::time::Duration::from_secs(30);
        config.projector.page_events_target = 1_000_000;
    })
    .await;
    let accounts = [
        ("t:average", Method::Average, false),
        ("t:hifo", Method::Hifo, true),
        ("t:lifo", Method::Lifo, false),
    ];
    random_trading_on(ledger, 0x5eed_0003, &accounts, true).await;
}

// ---------------------------------------------------------------------------------------------
// Scenarios.
// ---------------------------------------------------------------------------------------------

/// A trading floor of alice (fifo) and the market, with alice holding 10 AAPL at 100.00 and 10
/// at 200.00 (cost-stated transfers, trade dates three and two days ago).
async fn alice_with_two_lots(ledger: &TestLedger, method: &str) -> i64 {
    for (code, scale) in [("USD", 2), ("AAPL", 0)] {
        ledger.define_asset(code, scale).await.expect(201);
    }
    ledger.open_account("world:market", true).await.expect(201);
    ledger
        .post(
            "/v1/accounts",
            "open-alice",
            &json!({"code": "alice", "booking_method": method}),
        )
        .await
        .expect(201);
    ledger
        .transfer("cash", "world:market", "alice", "USD", "10000.00")
        .await
        .expect(201);
    let mut last = 0;
    for (key, cost, days) in [("lot-1", "1000.00", 3), ("lot-2", "2000.00", 2)] {
        let answer = ledger
            .post(
                "/v1/transfers",
                key,
                &json!({"source": "world:market", "destination": "alice",
                "asset": "AAPL", "amount": "10", "cost": {"amount": cost, "currency": "USD"},
                "effective_at": rfc3339(days_ago(days))}),
            )
            .await;
        answer.expect(201);
        last = answer.position();
    }
    last
}

async fn sell(ledger: &TestLedger, key: &str, units: &str, price: &str) -> Answer {
    let answer = ledger
        .post(
            "/v1/trades",
            key,
            &json!({"buyer": "world:market", "seller": "alice",
            "instrument": "AAPL", "quantity": units, "price": price, "currency": "USD"}),
        )
        .await;
    answer.expect(201);
    answer
}

async fn realized_parts(ledger: &TestLedger, at: i64) -> Vec<(String, String, String)> {
    let realized = ledger
        .get(&format!("/v1/accounts/alice/realized?min_position={at}"))
        .await;
    realized.expect(200);
    realized.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["lots"].as_array().unwrap().clone())
        .map(|l| {
            (
                text(&l["quantity"]).to_owned(),
                text(&l["cost"]).to_owned(),
                text(&l["proceeds"]).to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_booking_method_set_later_applies_from_its_position_on() {
    let mut ledger = TestLedger::start().await;
    alice_with_two_lots(&ledger, "fifo").await;
    // Under fifo, the first sale closes the older lot (100.00 a unit).
    sell(&ledger, "sale-1", "2", "150.00").await;
    let set = put(
        &ledger,
        "/v1/accounts/alice/booking-method",
        "lifo",
        &json!({"booking_method": "lifo"}),
    )
    .await;
    set.expect(201);
    assert_eq!(set.body["account"], "alice");
    // The change is the account's latest: its version, as served and as a decision checks it.
    let version = |answer: Answer| answer.body["version"].as_i64();
    assert_eq!(
        version(ledger.get("/v1/accounts/alice").await),
        Some(set.position())
    );
    // After a restart too: the writer restores the version the reads serve.
    ledger.restart().await;
    let guarded = ledger
        .post(
            "/v1/transactions",
            "guarded",
            &json!({"postings": [{"source": "alice", "destination": "world:market", "asset": "USD", "amount": "1.00"}],
                    "expected_versions": [{"account": "alice", "version": set.position()}]}),
        )
        .await;
    guarded.expect(201);
    // Replayed by its key: the same answer.
    let again = put(
        &ledger,
        "/v1/accounts/alice/booking-method",
        "lifo",
        &json!({"booking_method": "lifo"}),
    )
    .await;
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // From then on, lifo: the newer lot (200.00 a unit).
    let sold = sell(&ledger, "sale-2", "3", "150.00").await;
    let parts = realized_parts(&ledger, sold.position()).await;
    assert_eq!(
        parts,
        [
            ("2".into(), "200.00".into(), "300.00".into()),
            ("3".into(), "600.00".into(), "450.00".into())
        ]
    );
    let positions = ledger.get("/v1/accounts/alice/positions").await;
    positions.expect(200);
    let aapl = &positions.body["positions"][0];
    assert_eq!(aapl["booking_method"], "lifo");
    assert_eq!(aapl["quantity"], "15");
    assert_eq!(aapl["cost_basis"], "2200.00");
    assert_eq!(aapl["realized"], "-50.00");
    assert_eq!(aapl["average_cost"], "146.666666666666666667");
    assert_eq!(aapl["lots"][0]["unit_cost"], "100.000000000000000000");
    // An unknown method is refused before it reaches the ledger.
    let bad = put(
        &ledger,
        "/v1/accounts/alice/booking-method",
        "bad",
        &json!({"booking_method": "lofi"}),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    let missing = put(
        &ledger,
        "/v1/accounts/nobody/booking-method",
        "nobody",
        &json!({"booking_method": "fifo"}),
    )
    .await;
    assert_eq!(missing.code(), "account_not_found", "{}", missing.text);
    ledger.finish().await;
}

#[tokio::test]
async fn a_mark_values_positions_and_names_itself_and_a_mark_in_the_future_is_refused() {
    let ledger = TestLedger::start().await;
    alice_with_two_lots(&ledger, "average").await;
    let unmarked = ledger.get("/v1/accounts/alice/positions").await;
    unmarked.expect(200);
    assert!(unmarked.body["positions"][0]["mark"].is_null());
    assert!(unmarked.body["positions"][0]["market_value"].is_null());
    let as_of = days_ago(1);
    let marked = ledger
        .post(
            "/v1/prices",
            "mark-1",
            &json!({"instrument": "AAPL", "currency": "USD",
            "price": "180.125", "as_of": rfc3339(as_of)}),
        )
        .await;
    marked.expect(201);
    assert_eq!(marked.body["price"], "180.125");
    let positions = ledger
        .get(&format!(
            "/v1/accounts/alice/positions?min_position={}",
            marked.position()
        ))
        .await;
    positions.expect(200);
    let aapl = &positions.body["positions"][0];
    assert_eq!(aapl["mark"]["price"], "180.125");
    assert_eq!(aapl["mark"]["position"], marked.position());
    // 20 × 180.125, exactly; less the 3000.00 the lots cost.
    assert_eq!(aapl["market_value"], "3602.50");
    assert_eq!(aapl["unrealized"], "602.50");
    // A mark ahead of now is refused, and appends nothing; so is a batch holding one.
    let before = ledger.event_count().await;
    let ahead = rfc3339(Utc::now() + Duration::hours(1));
    let future = ledger
        .post(
            "/v1/prices",
            "mark-2",
            &json!({"instrument": "AAPL", "currency": "USD", "price": "1", "as_of": ahead}),
        )
        .await;
    ledger
        .assert_refused(&future, 422, "validation_error", before)
        .await;
    // A time finer than the microsecond is refused, never cut.
    let fine = json!({"instrument": "AAPL", "currency": "USD", "price": "1",
        "as_of": "2026-01-02T03:04:05.123456789Z"});
    let fine = ledger.post("/v1/prices", "mark-3", &fine).await;
    ledger
        .assert_refused(&fine, 422, "validation_error", before)
        .await;
    ledger.finish().await;
}

#[tokio::test]
async fn a_batch_of_marks_is_recorded_all_or_none_and_the_latest_mark_at_a_time_is_served() {
    let ledger = TestLedger::start().await;
    alice_with_two_lots(&ledger, "average").await;
    let mark = json!({"instrument": "AAPL", "currency": "USD", "price": "180.125",
        "as_of": rfc3339(days_ago(1))});
    ledger.post("/v1/prices", "mark-1", &mark).await.expect(201);
    // A batch holding a refused mark is refused whole, for that mark's reason.
    let before = ledger.event_count().await;
    let ahead = rfc3339(Utc::now() + Duration::hours(1));
    let batch = json!({"marks": [
        {"instrument": "AAPL", "currency": "USD", "price": "181", "as_of": rfc3339(days_ago(0))},
        {"instrument": "AAPL", "currency": "USD", "price": "182", "as_of": ahead}]});
    let refused = ledger.post("/v1/prices", "batch-1", &batch).await;
    ledger
        .assert_refused(&refused, 422, "validation_error", before)
        .await;
    // A batch is recorded all together; the latest mark at or before a time is served.
    let batch = json!({"marks": [
        {"instrument": "AAPL", "currency": "USD", "price": "170", "as_of": rfc3339(days_ago(2))},
        {"instrument": "AAPL", "currency": "USD", "price": "190.5", "as_of": rfc3339(days_ago(0))}]});
    let dry = ledger
        .post("/v1/prices?dry_run=true", "batch-2", &batch)
        .await;
    dry.expect(200);
    assert_eq!(dry.body["dry_run"], true);
    assert_eq!(
        ledger.event_count().await,
        before,
        "a dry run appends nothing"
    );
    let recorded = ledger.post("/v1/prices", "batch-2", &batch).await;
    recorded.expect(201);
    assert_eq!(recorded.body["marks"].as_array().unwrap().len(), 2);
    let replayed = ledger.post("/v1/prices", "batch-2", &batch).await;
    assert_eq!(replayed.body, recorded.body);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    let at = recorded.position();
    let then = ledger
        .get(&format!(
            "/v1/prices?instrument=AAPL&currency=USD&as_of={}&min_position={at}",
            rfc3339(days_ago(1)).replace('+', "%2B")
        ))
        .await;
    then.expect(200);
    assert_eq!(then.body["items"][0]["price"], "180.125");
    let all = ledger
        .get(&format!(
            "/v1/prices?instrument=AAPL&limit=2&min_position={at}"
        ))
        .await;
    all.expect(200);
    assert_eq!(all.body["items"][0]["price"], "190.5");
    let next = text(&all.body["next_cursor"]).to_owned();
    let rest = ledger
        .get(&format!("/v1/prices?instrument=AAPL&limit=2&cursor={next}"))
        .await;
    assert_eq!(rest.body["items"][0]["price"], "180.125");
    // Positions as of a day ago read the mark of then.
    let past = ledger
        .get(&format!(
            "/v1/accounts/alice/positions?as_of={}",
            rfc3339(days_ago(1)).replace('+', "%2B")
        ))
        .await;
    past.expect(200);
    assert_eq!(past.body["positions"][0]["mark"]["price"], "180.125");
    let now = ledger.get("/v1/accounts/alice/positions").await;
    assert_eq!(now.body["positions"][0]["unrealized"], "810.00");
    ledger.finish().await;
}

#[tokio::test]
async fn positions_as_of_a_date_count_only_the_trades_of_then_and_a_voided_trade_leaves_no_lot() {
    let ledger = TestLedger::start().await;
    alice_with_two_lots(&ledger, "fifo").await;
    // As of three days ago only the first lot existed.
    let as_of = rfc3339(days_ago(3) + Duration::seconds(30)).replace('+', "%2B");
    let then = ledger
        .get(&format!("/v1/accounts/alice/positions?as_of={as_of}"))
        .await;
    then.expect(200);
    let aapl = &then.body["positions"][0];
    assert_eq!(aapl["lots_quantity"], "10");
    assert_eq!(aapl["quantity"], "10");
    assert!(aapl["unsettled"].is_null());
    // A pending sale counts on its trade date: quantity, lots and realized, not settled.
    let pending = ledger
        .post("/v1/trades", "pending-sale", &json!({"buyer": "world:market", "seller": "alice",
            "instrument": "AAPL", "quantity": "4", "price": "120.00", "currency": "USD", "pending": true}))
        .await;
    pending.expect(201);
    let id = text(&pending.body["id"]).to_owned();
    let now = ledger
        .get(&format!(
            "/v1/accounts/alice/positions?min_position={}",
            pending.position()
        ))
        .await;
    let aapl = &now.body["positions"][0];
    assert_eq!(
        (
            aapl["quantity"].as_str(),
            aapl["settled"].as_str(),
            aapl["unsettled"].as_str()
        ),
        (Some("16"), Some("20"), Some("-4"))
    );
    assert_eq!(aapl["lots_quantity"], "16");
    assert_eq!(aapl["realized"], "80.00");
    // Voided, the sale never happened: the lots are computed again without it.
    let voided = ledger
        .post(&format!("/v1/transactions/{id}/void"), "void", &json!({}))
        .await;
    voided.expect(201);
    let after = ledger
        .get(&format!(
            "/v1/accounts/alice/positions?min_position={}",
            voided.position()
        ))
        .await;
    let aapl = &after.body["positions"][0];
    assert_eq!(aapl["lots_quantity"], "20");
    assert_eq!(aapl["realized"], "0.00");
    assert_eq!(aapl["lots"].as_array().unwrap().len(), 2);
    let realized = ledger.get("/v1/accounts/alice/realized").await;
    assert!(realized.body["items"].as_array().unwrap().is_empty());
    ledger.finish().await;
}

#[tokio::test]
async fn realized_pnl_over_a_range_of_dates_as_json_and_csv_and_positions_rolled_up_by_prefix() {
    let ledger = TestLedger::start().await;
    alice_with_two_lots(&ledger, "hifo").await;
    let sold = sell(&ledger, "sale", "12", "210.00").await;
    let today = Utc::now().date_naive();
    let path = format!(
        "/v1/accounts/alice/realized?from={today}&to={today}&instrument=AAPL&min_position={}",
        sold.position()
    );
    let realized = ledger.get(&path).await;
    realized.expect(200);
    let item = &realized.body["items"][0];
    assert_eq!(
        (
            item["quantity"].as_str(),
            item["cost"].as_str(),
            item["proceeds"].as_str()
        ),
        (Some("12"), Some("2200.00"), Some("2520.00"))
    );
    assert_eq!(
        item["lots"][0]["holding_days"], 2,
        "hifo closes the dearer, newer lot first"
    );
    assert_eq!(item["lots"][1]["holding_days"], 3);
    assert_eq!(
        realized.body["totals"],
        json!([{"instrument": "AAPL", "currency": "USD", "realized": "320.00"}])
    );
    let csv = get_csv(&ledger, &path).await;
    csv.expect(200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", csv.text);
    assert!(
        lines[1].ends_with(",10,2000.00,2100.00,100.00,2"),
        "{}",
        csv.text
    );
    let earlier = (today - chrono::Days::new(1)).to_string();
    let none = ledger
        .get(&format!("/v1/accounts/alice/realized?to={earlier}"))
        .await;
    assert!(none.body["items"].as_array().unwrap().is_empty());
    // Roll-ups: alice's book and the market's short one, per instrument and currency.
    let mark = ledger
        .post("/v1/prices", "mark", &json!({"instrument": "AAPL", "currency": "USD", "price": "200", "as_of": rfc3339(days_ago(0))}))
        .await;
    mark.expect(201);
    let all = ledger
        .get(&format!("/v1/positions?min_position={}", mark.position()))
        .await;
    all.expect(200);
    let aapl = &all.body["positions"][0];
    assert_eq!(
        aapl["quantity"], "0",
        "what alice holds, the market is short"
    );
    let alice = ledger.get("/v1/positions?prefix=alice").await;
    alice.expect(200);
    assert_eq!(alice.body["accounts"], 1);
    let aapl = &alice.body["positions"][0];
    assert_eq!(
        (aapl["quantity"].as_str(), aapl["cost_basis"].as_str()),
        (Some("8"), Some("800.00"))
    );
    assert_eq!(
        (aapl["market_value"].as_str(), aapl["unrealized"].as_str()),
        (Some("1600.00"), Some("800.00"))
    );
    let bad = ledger.get("/v1/positions?prefix=Alice").await;
    assert_eq!(bad.code(), "invalid_request");
    ledger.finish().await;
}

#[tokio::test]
async fn the_new_routes_are_served_in_every_ledger() {
    let ledger = TestLedger::start().await;
    ledger.create_ledger_with_usd("eu", &["alice"]).await;
    let prefix = "/v1/ledgers/eu";
    ledger
        .post(
            &format!("{prefix}/assets"),
            "aapl",
            &json!({"code": "AAPL", "scale": 0}),
        )
        .await
        .expect(201);
    // A transaction's postings state their costs each: one opens a lot, the other none.
    let moved = ledger
        .post(
            &format!("{prefix}/transactions"),
            "lot",
            &json!({"postings": [
                {"source": "world:bank", "destination": "alice", "asset": "AAPL", "amount": "5",
                 "cost": {"amount": "500.00", "currency": "USD"}},
                {"source": "world:bank", "destination": "alice", "asset": "USD", "amount": "1.00"}]}),
        )
        .await;
    moved.expect(201);
    assert_eq!(moved.body["postings"][0]["cost"]["currency"], "USD");
    assert!(moved.body["postings"][1].get("cost").is_none());
    // A cost in the posting's own asset, or on a pending posting, is refused.
    let own = json!({"source": "world:bank", "destination": "alice", "asset": "USD",
        "amount": "1.00", "cost": {"amount": "1.00", "currency": "USD"}});
    let refused = ledger
        .post(&format!("{prefix}/transfers"), "own", &own)
        .await;
    assert_eq!(refused.code(), "validation_error", "{}", refused.text);
    let mut pending = own.clone();
    pending["asset"] = json!("AAPL");
    pending["amount"] = json!("1");
    pending["pending"] = json!(true);
    let refused = ledger
        .post(&format!("{prefix}/transfers"), "pending", &pending)
        .await;
    assert_eq!(refused.code(), "validation_error", "{}", refused.text);
    let mark = ledger
        .post(&format!("{prefix}/prices"), "mark", &json!({"instrument": "AAPL", "currency": "USD", "price": "101", "as_of": rfc3339(days_ago(0))}))
        .await;
    mark.expect(201);
    let positions = ledger
        .get(&format!(
            "{prefix}/accounts/alice/positions?min_position={}",
            mark.position()
        ))
        .await;
    positions.expect(200);
    assert_eq!(positions.body["positions"][0]["unrealized"], "5.00");
    ledger
        .get(&format!("{prefix}/positions?prefix=alice"))
        .await
        .expect(200);
    ledger.get(&format!("{prefix}/prices")).await.expect(200);
    put(
        &ledger,
        &format!("{prefix}/accounts/alice/booking-method"),
        "m",
        &json!({"booking_method": "average"}),
    )
    .await
    .expect(201);
    // The default ledger has none of it.
    let default = ledger.get("/v1/accounts/alice/positions").await;
    assert_eq!(default.code(), "account_not_found");
    ledger.finish().await;
}

/// A sale by alice naming `lots` (lot id, units).
async fn sell_named(ledger: &TestLedger, key: &str, units: &str, lots: &[(&str, &str)]) -> Answer {
    let lots: Vec<Value> = lots
        .iter()
        .map(|(id, units)| json!({"lot_id": id, "quantity": units}))
        .collect();
    ledger
        .post(
            "/v1/trades",
            key,
            &json!({"buyer": "world:market", "seller": "alice", "instrument": "AAPL",
            "quantity": units, "price": "150.00", "currency": "USD", "lots": lots}),
        )
        .await
}

#[tokio::test]
async fn a_seller_booking_specific_lots_closes_the_lots_it_names_and_only_lots_it_holds() {
    let mut ledger = TestLedger::start().await;
    let at = alice_with_two_lots(&ledger, "specific").await;
    let positions = ledger
        .get(&format!("/v1/accounts/alice/positions?min_position={at}"))
        .await;
    positions.expect(200);
    let lots = positions.body["positions"][0]["lots"]
        .as_array()
        .unwrap()
        .clone();
    let (older, newer) = (
        text(&lots[0]["lot_id"]).to_owned(),
        text(&lots[1]["lot_id"]).to_owned(),
    );
    let (older, newer) = (older.as_str(), newer.as_str());

    // A sale that names no lot, one it does not hold, more than a lot holds, or lots that do not
    // add up to the sale: refused, and nothing is appended.
    let events_before = ledger.event_count().await;
    let refused = [
        sell_named(&ledger, "none", "2", &[]).await,
        sell_named(&ledger, "unknown", "2", &[("no-such-lot/0", "2")]).await,
        sell_named(&ledger, "too-many", "11", &[(older, "11")]).await,
        sell_named(&ledger, "short-of-it", "3", &[(older, "2")]).await,
    ];
    for answer in &refused {
        ledger
            .assert_refused(answer, 422, "validation_error", events_before)
            .await;
    }

    // Named: 3 of the newer lot (200.00 a unit), then 1 of the older (100.00).
    let sold = sell_named(&ledger, "named", "4", &[(newer, "3"), (older, "1")]).await;
    sold.expect(201);
    let trade = ledger
        .get(&format!("/v1/events?after={}&limit=1", sold.position() - 1))
        .await;
    trade.expect(200);
    assert_eq!(
        trade.body["items"][0]["payload"]["lots"],
        json!([{"lot_id": newer, "quantity": "3"}, {"lot_id": older, "quantity": "1"}])
    );
    let parts = realized_parts(&ledger, sold.position()).await;
    assert_eq!(
        parts,
        [
            ("3".into(), "600.00".into(), "450.00".into()),
            ("1".into(), "100.00".into(), "150.00".into())
        ]
    );
    // After a restart the writer still knows alice books by specific lots.
    ledger.restart().await;
    let unnamed = sell_named(&ledger, "after-restart", "1", &[]).await;
    assert_eq!((unnamed.status, unnamed.code()), (422, "validation_error"));
    sell_named(&ledger, "after-restart-named", "1", &[(older, "1")])
        .await
        .expect(201);
    ledger.finish().await;
}
