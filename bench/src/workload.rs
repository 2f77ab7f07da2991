//! What each workload sends. Bodies are built before the clock starts, so the generator spends
//! its time sending, not formatting.

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// One transfer per request between accounts chosen uniformly.
    Transfers,
    /// `transfers`, each stating an `effective_at` an hour before the run began: what accounting
    /// time costs a write (`effective` ÷ `transfers` in compare.sh).
    Effective,
    /// One transaction per request: a transfer plus a fee to one house account.
    Hot,
    /// The control for `hot`: the same transaction, with the fee paid to a random account, so
    /// that `hot` ÷ `spread` isolates what the hot account itself costs.
    Spread,
    /// One trade per request: instrument against cash, with one fee.
    Trades,
    /// `trades` settling T+1: each states a trade date a day back (its `effective_at`) and the
    /// next day as its settlement date, so it is booked pending and the ledger settles it by
    /// itself at its settlement time (compare.sh sets that to just after the run).
    TradesT1,
    /// The batch endpoint, `--batch-size` transfers per request.
    Batch,
    /// 80 % transfers, 20 % balance reads with `min_position` of the client's last write.
    Mixed,
    /// Only slow reads: the audit of the whole log, each holding a read connection for as long
    /// as recomputing the hash chain takes.
    Reads,
    /// One transfer between ledgers per request (`POST /v1/ledger-transfers`), between
    /// `LEDGER_TRANSFER_PAIR`'s ledgers in a random direction: a hold in each, then both posted.
    /// Set the ledgers up with `--ledger` runs first; no check (the check follows one ledger).
    LedgerTransfers,
}

/// The two ledgers the `ledger-transfers` workload moves money between.
pub const LEDGER_TRANSFER_PAIR: [&str; 2] = ["bench-l0", "bench-l1"];

/// The house account every `hot` and `trades` request pays a fee to.
pub const HOUSE: &str = "bench:house";
/// Where the money comes from.
pub const WORLD: &str = "bench:world";

/// How the accounts' codes are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Codes {
    /// `bench:a<i>`: every account directly under one root.
    Flat,
    /// A tree, as a broker's might be: `broker:f<firm>:client:c<i>:cash` over 100 firms (so
    /// `broker` has 100 children and each firm's `client` about 1 % of the accounts), and every
    /// hundredth account a bank account directly under a root of its own, `bank:b<i>`.
    Tree,
}

/// Firms in the `tree` shape.
const TREE_FIRMS: u64 = 100;
/// One account in this many is a bank account in the `tree` shape.
const TREE_BANK_EVERY: u64 = 100;

impl Codes {
    /// The code of the `i`th account.
    pub fn account(self, i: u64) -> String {
        match self {
            Self::Flat => format!("bench:a{i}"),
            Self::Tree if i % TREE_BANK_EVERY == TREE_BANK_EVERY - 1 => format!("bank:b{i}"),
            Self::Tree => {
                let firm = (i / TREE_BANK_EVERY) % TREE_FIRMS;
                format!("broker:f{firm}:client:c{i}:cash")
            }
        }
    }
}

/// What the `reads` workload asks for.
pub fn slow_read_path() -> String {
    "/v1/audit/verify".to_owned()
}

/// A small, fast, reproducible generator (xorshift64*); the benchmark needs spread, not secrecy.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Two different accounts.
    pub fn pair(&mut self, accounts: u64) -> (u64, u64) {
        let a = self.below(accounts);
        let b = (a + 1 + self.below(accounts - 1)) % accounts;
        (a, b)
    }
}

fn cents(rng: &mut Rng) -> String {
    let c = 1 + rng.below(100);
    format!("{}.{:02}", c / 100, c % 100)
}

fn transfer_json(rng: &mut Rng, codes: Codes, accounts: u64) -> String {
    let (from, to) = rng.pair(accounts);
    let account = |i| codes.account(i);
    format!(
        r#"{{"source":"{}","destination":"{}","asset":"USD","amount":"{}"}}"#,
        account(from),
        account(to),
        cents(rng)
    )
}

/// The path of a workload's write requests, and how many transfers one request carries.
pub fn write_path(workload: Workload, batch_size: usize) -> (&'static str, u64) {
    match workload {
        Workload::Transfers | Workload::Effective | Workload::Mixed | Workload::Reads => {
            ("/v1/transfers", 1)
        }
        Workload::Hot | Workload::Spread => ("/v1/transactions", 1),
        Workload::Trades | Workload::TradesT1 => ("/v1/trades", 1),
        Workload::Batch => ("/v1/transactions/batch", batch_size as u64),
        Workload::LedgerTransfers => ("/v1/ledger-transfers", 1),
    }
}

/// Pre-built bodies for one client. A batch body embeds idempotency keys, so its keys carry a
/// `{}` placeholder-free prefix that the client completes: see `batch_body`.
pub fn bodies(
    workload: Workload,
    rng: &mut Rng,
    codes: Codes,
    accounts: u64,
    count: usize,
) -> Vec<Bytes> {
    let account = |i| codes.account(i);
    (0..count)
        .map(|_| {
            let body = match workload {
                Workload::Transfers | Workload::Mixed | Workload::Batch | Workload::Reads => {
                    transfer_json(rng, codes, accounts)
                }
                Workload::Effective => {
                    let transfer = transfer_json(rng, codes, accounts);
                    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
                    let at = hour_ago.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    format!(
                        r#"{},"effective_at":"{at}"}}"#,
                        transfer.trim_end_matches('}')
                    )
                }
                Workload::Hot | Workload::Spread => {
                    let (from, to) = rng.pair(accounts);
                    let fee_to = match workload {
                        Workload::Hot => HOUSE.to_owned(),
                        _ => account((from + 1 + rng.below(accounts - 1)) % accounts),
                    };
                    format!(
                        r#"{{"postings":[{{"source":"{a}","destination":"{b}","asset":"USD","amount":"{x}"}},{{"source":"{a}","destination":"{fee_to}","asset":"USD","amount":"0.01"}}]}}"#,
                        a = account(from),
                        b = account(to),
                        x = cents(rng)
                    )
                }
                Workload::LedgerTransfers => {
                    let (from, to) = rng.pair(accounts);
                    let [a, b] = LEDGER_TRANSFER_PAIR;
                    let (source_ledger, destination_ledger) =
                        if rng.below(2) == 0 { (a, b) } else { (b, a) };
                    format!(
                        r#"{{"source_ledger":"{source_ledger}","source":"{}","destination_ledger":"{destination_ledger}","destination":"{}","asset":"USD","amount":"{}"}}"#,
                        account(from),
                        account(to),
                        cents(rng)
                    )
                }
                Workload::Trades => trade_json(rng, codes, accounts),
                Workload::TradesT1 => {
                    let trade = trade_json(rng, codes, accounts);
                    let traded_at = chrono::Utc::now() - chrono::Duration::days(1);
                    let settles_on = traded_at.date_naive() + chrono::Duration::days(1);
                    let at = traded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                    format!(
                        r#"{},"effective_at":"{at}","settlement_date":"{settles_on}"}}"#,
                        trade.trim_end_matches('}')
                    )
                }
            };
            Bytes::from(body)
        })
        .collect()
}

/// One trade of 1 AAPL between two accounts, the buyer paying a fee of 0.01 USD to the house.
fn trade_json(rng: &mut Rng, codes: Codes, accounts: u64) -> String {
    let (buyer, seller) = rng.pair(accounts);
    let account = |i| codes.account(i);
    format!(
        r#"{{"buyer":"{}","seller":"{}","instrument":"AAPL","quantity":"1","price":"{}","currency":"USD","fees":[{{"payer":"{}","account":"{HOUSE}","amount":"0.01"}}]}}"#,
        account(buyer),
        account(seller),
        cents(rng),
        account(buyer)
    )
}

/// A batch request of `transfers` (pre-built transfer bodies) under keys `{prefix}-{i}`.
pub fn batch_body(transfers: &[Bytes], prefix: &str, atomic: bool) -> Bytes {
    let mut out = String::with_capacity(transfers.len() * 128 + 64);
    out.push_str(if atomic {
        r#"{"atomic":true,"commands":["#
    } else {
        r#"{"commands":["#
    });
    for (i, transfer) in transfers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"idempotency_key":""#);
        out.push_str(prefix);
        out.push('-');
        out.push_str(&i.to_string());
        out.push_str(r#"","transfer":"#);
        out.push_str(&String::from_utf8_lossy(transfer));
        out.push('}');
    }
    out.push_str("]}");
    Bytes::from(out)
}
