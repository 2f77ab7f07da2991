//! The export of lots, from events decided and applied as the writer does (`LedgerState`),
//! checked by Beancount itself when its tools are found (`beancount_tool`): `bean-check` must
//! accept the file, and `bean-query`'s realized P&L per account and instrument must equal
//! `domain::lots`' where Beancount's order is the log's. Without Beancount only the text is
//! checked (scripts/beancount_check.sh installs it, and CI runs that too).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command as Process;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use domain::command::{
    CostInstruction, OriginalTransaction, ReverseTransaction, SetBookingMethod, SettlePending,
    Settlement,
};
use domain::lots::{self, Book, BookKey};
use domain::{
    AccountCode, AccountId, AccountRef, AssetCode, BookingMethod, Command, DefineAsset, Event,
    ExecuteTrade, FeeInstruction, LedgerState, Metadata, OpenAccount, PostTransaction,
    PostingInstruction, Scale, TransactionId, TransactionKind,
};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{export_events, realized_name, Root};
use crate::event_store::StoredEvent;

fn d(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn code(text: &str) -> AccountCode {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn asset(text: &str) -> AssetCode {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn account(text: &str) -> AccountRef {
    AccountRef::Code(code(text))
}

/// Noon of the `day`th day of 2025: every entry of a test is dated by its day.
fn at(day: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap() + Duration::days(day)
}

/// A log made by deciding and applying commands, each recorded at noon of its day.
struct Log {
    state: LedgerState,
    events: Vec<(StoredEvent, Event)>,
    ids: u128,
}

impl Log {
    fn new(assets: &[(&str, u32)], accounts: &[(&str, Option<BookingMethod>)]) -> Self {
        let mut log = Log {
            state: LedgerState::new(),
            events: Vec::new(),
            ids: 0,
        };
        for (text, scale) in assets {
            let scale = Scale::try_from(*scale).unwrap();
            log.run(
                0,
                Command::DefineAsset(DefineAsset {
                    code: asset(text),
                    scale,
                }),
            );
        }
        for (text, booking_method) in accounts {
            let id = AccountId(Uuid::from_u128(log.next_id()));
            let open = OpenAccount {
                id,
                code: code(text),
                allow_negative: true,
                metadata: Metadata::default(),
                booking_method: *booking_method,
            };
            log.run(0, Command::OpenAccount(open));
        }
        log
    }

    fn next_id(&mut self) -> u128 {
        self.ids += 1;
        0x1ed6_0000_0000_7000_8000_0000_0000_0000 + self.ids
    }

    fn run(&mut self, day: i64, command: Command) -> Event {
        self.state.set_recording_at(at(day));
        let event = self
            .state
            .decide(&command)
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        self.state.apply(&event).unwrap();
        let position = i64::try_from(self.events.len()).unwrap() + 1;
        let stored = StoredEvent {
            position,
            event_id: Uuid::from_u128(u128::try_from(position).unwrap()),
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            payload: event.encode(),
            metadata: "{}".to_owned(),
            recorded_at: at(day),
            hash: vec![0; 32],
        };
        self.events.push((stored, event.clone()));
        event
    }

    /// `amount` of `asset`, at a total `cost` (amount, currency) when given.
    fn transfer(
        &mut self,
        day: i64,
        route: (&str, &str),
        moved: (&str, &str),
        cost: Option<(&str, &str)>,
    ) -> Event {
        let posting = PostingInstruction {
            source: account(route.0),
            destination: account(route.1),
            asset: asset(moved.1),
            amount: moved.0.parse().unwrap(),
            cost: cost.map(|(amount, currency)| CostInstruction {
                amount: amount.parse().unwrap(),
                currency: asset(currency),
            }),
        };
        let id = TransactionId(Uuid::from_u128(self.next_id()));
        self.run(
            day,
            Command::PostTransaction(PostTransaction {
                id,
                kind: TransactionKind::Transfer,
                postings: vec![posting],
                metadata: Metadata::default(),
                guards: Default::default(),
                pending: None,
                effective_at: None,
            }),
        )
    }

    /// `buyer` buys `quantity` `instrument` at `price` USD from `seller`, with fees (payer,
    /// amount, asset when not USD), settling on `settlement` when given.
    fn trade(
        &mut self,
        day: i64,
        (buyer, seller): (&str, &str),
        (quantity, instrument, price): (&str, &str, &str),
        fees: &[(&str, &str, Option<&str>)],
        settlement: Option<NaiveDate>,
    ) -> Event {
        let fees = fees
            .iter()
            .map(|(payer, amount, fee_asset)| FeeInstruction {
                payer: account(payer),
                account: account("fees:broker"),
                asset: fee_asset.map(asset),
                amount: amount.parse().unwrap(),
            })
            .collect();
        let id = TransactionId(Uuid::from_u128(self.next_id()));
        let trade = ExecuteTrade {
            lots: Vec::new(),
            open_lots: None,
            id,
            buyer: account(buyer),
            seller: account(seller),
            instrument: asset(instrument),
            quantity: quantity.parse().unwrap(),
            price: price.parse().unwrap(),
            currency: asset("USD"),
            fees,
            metadata: Metadata::default(),
            guards: Default::default(),
            pending: None,
            effective_at: None,
            settlement_date: settlement,
        };
        self.run(day, Command::ExecuteTrade(trade))
    }

    fn settle(&mut self, day: i64, id: TransactionId, settlement: Settlement) -> Event {
        let settle = SettlePending {
            pending_id: id,
            settlement,
            at: at(day),
            metadata: Metadata::default(),
            effective_at: None,
        };
        self.run(day, Command::SettlePending(settle))
    }

    fn reverse(&mut self, day: i64, original: &Event) -> Event {
        let (stored, _) = self
            .events
            .iter()
            .find(|(_, e)| e.transaction_id() == original.transaction_id())
            .unwrap();
        let original = OriginalTransaction {
            id: original.transaction_id().unwrap(),
            postings: original.postings().to_vec(),
            is_reversal: false,
            effective_at: original.effective_or(stored.recorded_at),
        };
        let id = TransactionId(Uuid::from_u128(self.next_id()));
        let reverse = ReverseTransaction {
            id,
            original,
            force: true,
            metadata: Metadata::default(),
            effective_at: None,
        };
        self.run(day, Command::ReverseTransaction(reverse))
    }

    fn export(&self) -> String {
        let mut out = Vec::new();
        export_events(&self.events, Root::Assets, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}

/// A Beancount tool: from `$BEANCOUNT_BIN`, else the virtual environment
/// scripts/beancount_check.sh makes beside the build (`<target>/beancount-venv`), else `PATH`.
fn beancount_tool(name: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BEANCOUNT_BIN") {
        return Some(PathBuf::from(dir).join(name));
    }
    // The test binary is <target>/debug/deps/<name>.
    let exe = std::env::current_exe().ok()?;
    let venv = exe
        .parent()?
        .parent()?
        .parent()?
        .join("beancount-venv/bin")
        .join(name);
    if venv.exists() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
}

/// Writes `text` to a file of its own, runs bean-check on it (which must accept it) and returns
/// the file, or None when Beancount is not installed.
fn bean_check(name: &str, text: &str) -> Option<PathBuf> {
    let Some(bean_check) = beancount_tool("bean-check") else {
        panic!("bean-check not found: scripts/test.sh installs it (or set BEANCOUNT_BIN)");
    };
    let path = std::env::temp_dir().join(format!("ledger-{}-{name}.beancount", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let answer = Process::new(&bean_check).arg(&path).output().unwrap();
    let errors = String::from_utf8_lossy(&answer.stderr);
    assert!(answer.status.success(), "bean-check: {errors}\n{text}");
    Some(path)
}

/// bean-query's sum per income account of realized P&L, by (account, instrument).
fn beancount_realized(
    path: &PathBuf,
    names: &HashMap<String, (String, String)>,
) -> BTreeMap<(String, String), Decimal> {
    let bean_query = beancount_tool("bean-query").expect("bean-query beside bean-check");
    let query =
        "SELECT account, sum(number) AS n WHERE account ~ '^Income:Realized-PnL:' GROUP BY account";
    let answer = Process::new(bean_query)
        .args(["-f", "csv"])
        .arg(path)
        .arg(query)
        .output()
        .unwrap();
    assert!(
        answer.status.success(),
        "{}",
        String::from_utf8_lossy(&answer.stderr)
    );
    let mut realized = BTreeMap::new();
    for line in String::from_utf8(answer.stdout).unwrap().lines().skip(1) {
        let (name, number) = line.split_once(',').unwrap();
        let key = names
            .get(name.trim())
            .unwrap_or_else(|| panic!("{name}"))
            .clone();
        realized.insert(key, -d(number.trim()));
    }
    realized
}

/// `domain::lots` over the log in its order: realized P&L by (account, instrument), non-zero.
fn ledger_realized(events: &[(StoredEvent, Event)]) -> BTreeMap<(String, String), Decimal> {
    let mut methods: HashMap<AccountCode, BookingMethod> = HashMap::new();
    let mut books: HashMap<BookKey, Book> = HashMap::new();
    let mut realized: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for (stored, event) in events {
        match event {
            Event::AccountOpened(e) => {
                methods.insert(e.code.clone(), e.booking_method.unwrap_or_default());
            }
            Event::BookingMethodSet(e) => {
                methods.insert(e.account.clone(), e.booking_method);
                for (key, book) in &mut books {
                    if key.account == e.account {
                        book.method = e.booking_method;
                    }
                }
            }
            _ => {}
        }
        let date = event.effective_or(stored.recorded_at).date_naive();
        for (key, movement) in lots::movements_of(event, stored.position, date) {
            let method = methods.get(&key.account).copied().unwrap_or_default();
            let book = books
                .entry(key.clone())
                .or_insert_with(|| Book::new(method, Scale::try_from(2).unwrap()));
            for closed in book.apply(&movement) {
                let account_instrument = (key.account.to_string(), key.instrument.to_string());
                *realized.entry(account_instrument).or_default() += closed.realized();
            }
        }
    }
    realized.retain(|_, r| !r.is_zero());
    realized
}

/// A small deterministic generator (a linear congruential one), for the trades.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const TRADERS: [(&str, Option<BookingMethod>); 4] = [
    ("f:fifo", Some(BookingMethod::Fifo)),
    ("l:lifo", Some(BookingMethod::Lifo)),
    ("h:hifo", Some(BookingMethod::Hifo)),
    ("a:avg", Some(BookingMethod::Average)),
];

fn market() -> Log {
    let mut accounts = vec![("world:bank", None), ("fees:broker", None)];
    accounts.extend(TRADERS);
    Log::new(
        &[("USD", 2), ("EUR", 2), ("AAPL", 0), ("MSFT", 0)],
        &accounts,
    )
}

/// Trades between the four books, one a day, with fees that are whole cents per unit (so that
/// every split of an amount is exact, and Beancount's unit costs equal the ledger's shares).
#[test]
fn beancounts_realized_pnl_equals_the_ledgers_lots() {
    let mut log = market();
    let mut day = 1;
    for (trader, _) in TRADERS {
        log.transfer(day, ("world:bank", trader), ("100000.00", "USD"), None);
        log.transfer(day, ("world:bank", trader), ("50.00", "EUR"), None);
        for (instrument, first, second) in [
            ("AAPL", "1000.00", "1150.00"),
            ("MSFT", "2000.00", "1900.00"),
        ] {
            log.transfer(
                day,
                ("world:bank", trader),
                ("10", instrument),
                Some((first, "USD")),
            );
            log.transfer(
                day + 1,
                ("world:bank", trader),
                ("10", instrument),
                Some((second, "USD")),
            );
        }
    }
    day += 2;
    let mut random = Lcg(24);
    for _ in 0..60 {
        let buyer = TRADERS[random.below(4) as usize].0;
        let seller = TRADERS[random.below(4) as usize].0;
        if buyer == seller {
            continue;
        }
        let instrument = ["AAPL", "MSFT"][random.below(2) as usize];
        let quantity = random.below(14) + 1;
        let price = Decimal::new(8000 + i64::try_from(random.below(5000)).unwrap(), 2);
        let per_unit = |cents: u64| Decimal::new(i64::try_from(cents * quantity).unwrap(), 2);
        let (buyer_fee, seller_fee) = (per_unit(random.below(30)), per_unit(random.below(30)));
        let mut fees = Vec::new();
        let (b, s) = (buyer_fee.to_string(), seller_fee.to_string());
        if !buyer_fee.is_zero() {
            fees.push((buyer, b.as_str(), None));
        }
        if !seller_fee.is_zero() {
            fees.push((seller, s.as_str(), None));
        }
        if random.below(4) == 0 {
            fees.push((buyer, "0.35", Some("EUR")));
        }
        let (q, p) = (quantity.to_string(), price.to_string());
        log.trade(day, (buyer, seller), (&q, instrument, &p), &fees, None);
        day += 1;
    }
    let text = log.export();
    assert!(
        text.contains("open Assets:L:Lifo AAPL,EUR,MSFT,USD \"LIFO\""),
        "{text}"
    );
    assert!(
        text.contains("open Assets:A:Avg AAPL,EUR,MSFT,USD \"NONE\""),
        "{text}"
    );
    assert!(
        text.contains("open Income:Realized-PnL:H:Hifo:Msft USD"),
        "{text}"
    );
    let ledger = ledger_realized(&log.events);
    assert!(ledger.len() >= 8, "{ledger:?}");
    let Some(path) = bean_check("realized", &text) else {
        return;
    };
    let mut names = HashMap::new();
    for (trader, _) in TRADERS {
        for instrument in ["AAPL", "MSFT"] {
            let name = realized_name(&code(trader), &asset(instrument));
            names.insert(name, (trader.to_owned(), instrument.to_owned()));
        }
    }
    let beancount = beancount_realized(&path, &names);
    std::fs::remove_file(&path).ok();
    assert_eq!(beancount, ledger);
}

/// Amounts that do not divide, a trade that settles in two parts and one that fails, lots of
/// one day under LIFO, units held without a cost, a method set later, and reversals of a trade
/// and of a cost-stated transfer: Beancount accepts what the export makes of them.
#[test]
fn settlements_reversals_and_units_without_cost_are_lots_beancount_accepts() {
    let mut log = market();
    let usd = ("100000.00", "USD");
    for (trader, _) in TRADERS {
        log.transfer(1, ("world:bank", trader), usd, None);
    }
    // Two lots of one day: LIFO takes the later one, which Beancount's LIFO would not.
    log.transfer(
        2,
        ("world:bank", "l:lifo"),
        ("3", "AAPL"),
        Some(("100.00", "USD")),
    );
    log.transfer(
        2,
        ("world:bank", "l:lifo"),
        ("3", "AAPL"),
        Some(("200.00", "USD")),
    );
    log.trade(
        3,
        ("f:fifo", "l:lifo"),
        ("2", "AAPL", "70.01"),
        &[("l:lifo", "0.10", None)],
        None,
    );
    // Units without a cost, then a sale beyond the lots: no short lot in Beancount.
    log.transfer(4, ("world:bank", "h:hifo"), ("5", "AAPL"), None);
    log.transfer(
        4,
        ("world:bank", "h:hifo"),
        ("1", "AAPL"),
        Some(("33.33", "USD")),
    );
    log.trade(5, ("f:fifo", "h:hifo"), ("3", "AAPL", "35.00"), &[], None);
    log.transfer(5, ("h:hifo", "world:bank"), ("4", "AAPL"), None);
    // A trade that settles in two parts, at cost pro rata, and one that fails.
    let fees = [("a:avg", "1.00", None), ("f:fifo", "0.01", None)];
    let settling = log.trade(
        6,
        ("a:avg", "f:fifo"),
        ("3", "AAPL", "50.00"),
        &fees,
        NaiveDate::from_ymd_opt(2025, 1, 10),
    );
    let id = settling.transaction_id().unwrap();
    let part = ["1", "50.00", "0", "0"]
        .map(|a| a.parse().unwrap())
        .to_vec();
    log.settle(
        7,
        id,
        Settlement::Post {
            amounts: Some(part),
        },
    );
    log.settle(9, id, Settlement::Due);
    let failing = log.trade(
        6,
        ("l:lifo", "f:fifo"),
        ("1", "AAPL", "50.00"),
        &[],
        NaiveDate::from_ymd_opt(2025, 1, 12),
    );
    let reason = "the seller did not deliver".to_owned();
    log.settle(
        8,
        failing.transaction_id().unwrap(),
        Settlement::Fail { reason },
    );
    // Both sides realize: the second in a transaction of its own.
    log.trade(10, ("f:fifo", "a:avg"), ("4", "AAPL", "60.00"), &[], None);
    // Reversals: of a trade whose sides closed and opened lots, and of a cost-stated transfer.
    let trade = log.trade(
        11,
        ("h:hifo", "f:fifo"),
        ("5", "AAPL", "61.00"),
        &[("h:hifo", "0.50", None)],
        None,
    );
    log.reverse(12, &trade);
    let moved = log.transfer(
        12,
        ("a:avg", "l:lifo"),
        ("1", "AAPL"),
        Some(("40.00", "USD")),
    );
    log.reverse(13, &moved);
    let set = SetBookingMethod {
        account: account("f:fifo"),
        booking_method: BookingMethod::Lifo,
        metadata: Metadata::default(),
    };
    log.run(14, Command::SetBookingMethod(set));
    log.transfer(
        15,
        ("world:bank", "f:fifo"),
        ("2", "AAPL"),
        Some(("99.99", "USD")),
    );
    log.trade(
        16,
        ("world:bank", "f:fifo"),
        ("1", "AAPL", "70.00"),
        &[],
        None,
    );

    let text = log.export();
    for expected in [
        "  Assets:L:Lifo  -2 AAPL {\"",
        " AAPL @@ ",
        "  Equity:Ledger:Lot-Clearing  ",
        " AAPL {{70.00 USD, 2025-01-06, \"",
        "Booking method: lifo",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    if let Some(path) = bean_check("settlements", &text) {
        std::fs::remove_file(path).ok();
    }
}

/// A log that moves nothing at cost is written as before: no booking method, no lots, no
/// accounts of the export's own.
#[test]
fn a_log_without_costs_has_no_lots() {
    let mut log = market();
    log.transfer(1, ("world:bank", "f:fifo"), ("3", "AAPL"), None);
    let text = log.export();
    assert!(!text.contains("Equity:Ledger"), "{text}");
    assert!(text.contains("open Assets:World:Bank AAPL\n"), "{text}");
    assert!(
        text.contains("open Assets:F:Fifo AAPL \"FIFO\"\n"),
        "stated: {text}"
    );
}
