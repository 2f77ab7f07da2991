//! Fuzz-style test of the decision function: long sequences of commands built from garbage as well
//! as plausible values (amounts at the edges of the balance type and beyond any asset's scale,
//! unknown accounts and assets, accounts named by random ids, oversized postings and guard lists,
//! extreme times, settlements and reversals of things that never happened). `decide` must never
//! panic, and whenever it accepts, the event must apply, balance per asset (debits equal credits,
//! leg by leg, in an independent tally), and survive its stored encoding.
//!
//! The number of sequences is `PROPTEST_CASES` (default below); each holds up to 120 commands.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::command::{
    BalanceFigure, BoundChange, ChangeAccountStatus, Comparison, Condition, ExpectedVersion,
    Guards, HoldTerms, OriginalTransaction, ReverseTransaction, SetAccountLimits, SettlePending,
    Settlement, StatusChange,
};
use domain::values::SignedDecimal;
use domain::{
    AccountCode, AccountId, AccountRef, AssetCode, Command, DefineAsset, Event, ExecuteTrade,
    FeeInstruction, LedgerState, Metadata, OpenAccount, PositiveDecimal, PostTransaction, Posting,
    PostingInstruction, TransactionId, TransactionKind,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

/// Sequences per run when `PROPTEST_CASES` is not set: about 10 s of a debug build on one core.
const DEFAULT_CASES: u32 = 3000;

/// Assets the genesis defines (scale 18 makes overflow of the balance type easy to reach), and
/// codes that are well-formed but never defined unless a command defines them.
const ASSETS: [(&str, u32); 4] = [("USD", 2), ("BTC", 8), ("AAPL", 0), ("WEI", 18)];
const OTHER_ASSETS: [&str; 2] = ["XXX", "Z_9"];
/// (code, allow_negative) of the genesis accounts; then codes that do not exist at first.
const ACCOUNTS: [(&str, bool); 5] = [
    ("world:bank", true),
    ("alice:main", false),
    ("bob:main", false),
    ("carol:main", false),
    ("house:fees", false),
];
const OTHER_ACCOUNTS: [&str; 3] = ["ghost", "x:y:z", "a-b_c:0"];

fn account_id(index: usize) -> AccountId {
    AccountId(Uuid::from_u128(index as u128 + 1))
}

/// An account as a command names it: by code or id, existing or not.
fn account_ref() -> impl Strategy<Value = AccountRef> {
    prop_oneof![
        8 => (0..ACCOUNTS.len()).prop_map(|i| AccountRef::Code(code(ACCOUNTS[i].0))),
        2 => (0..ACCOUNTS.len() + 2).prop_map(|i| AccountRef::Id(account_id(i))),
        1 => (0..OTHER_ACCOUNTS.len()).prop_map(|i| AccountRef::Code(code(OTHER_ACCOUNTS[i]))),
        1 => any::<u128>().prop_map(|n| AccountRef::Id(AccountId(Uuid::from_u128(n)))),
    ]
}

fn account_code() -> impl Strategy<Value = AccountCode> {
    prop_oneof![
        3 => (0..ACCOUNTS.len()).prop_map(|i| code(ACCOUNTS[i].0)),
        1 => (0..OTHER_ACCOUNTS.len()).prop_map(|i| code(OTHER_ACCOUNTS[i])),
    ]
}

fn code(s: &str) -> AccountCode {
    s.parse().expect("a valid account code")
}

fn asset() -> impl Strategy<Value = AssetCode> {
    prop_oneof![
        8 => (0..ASSETS.len()).prop_map(|i| ASSETS[i].0.parse().expect("asset code")),
        1 => (0..OTHER_ASSETS.len()).prop_map(|i| OTHER_ASSETS[i].parse().expect("asset code")),
    ]
}

/// Any decimal `rust_decimal` can hold: 96-bit mantissa, scale 0 to 28.
fn any_decimal() -> impl Strategy<Value = Decimal> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        0u32..=28,
    )
        .prop_map(|(lo, mid, hi, negative, scale)| {
            Decimal::from_parts(lo, mid, hi, negative, scale)
        })
}

/// Magnitudes from the everyday to the edges of the balance type and beyond any asset's scale.
fn magnitude() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        6 => (1i64..1_000_000, 0u32..4).prop_map(|(m, s)| Decimal::new(m, s)),
        2 => (1i64..i64::MAX, 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
        1 => any_decimal().prop_map(|d| d.abs()),
        1 => Just(Decimal::MAX),
        1 => Just(Decimal::new(1, 28)),
        1 => Just(Decimal::from_i128_with_scale(domain::money::MAX_UNITS, 18)),
    ]
}

fn positive() -> impl Strategy<Value = PositiveDecimal> {
    magnitude().prop_map(|d| {
        let d = if d.is_zero() { Decimal::ONE } else { d };
        // Through the string form, as a request carries it.
        d.to_string().parse().expect("a positive decimal")
    })
}

fn signed() -> impl Strategy<Value = SignedDecimal> {
    (magnitude(), any::<bool>(), prop::bool::weighted(0.1)).prop_map(|(d, negative, zero)| {
        let d = if zero { Decimal::ZERO } else { d };
        let d = if negative { -d } else { d };
        d.to_string().parse().expect("a signed decimal")
    })
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        6 => (-3600i64..7200).prop_map(|s| t0() + chrono::Duration::seconds(s)),
        1 => Just(DateTime::<Utc>::MIN_UTC),
        1 => Just(DateTime::<Utc>::MAX_UTC),
        1 => (-8_000_000_000_000i64..8_000_000_000_000)
            .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or_else(t0)),
    ]
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn metadata() -> impl Strategy<Value = Metadata> {
    prop::collection::btree_map("[a-z]{1,4}", "\\PC{0,12}", 0..3).prop_map(|entries| {
        let map = entries
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect::<serde_json::Map<_, _>>();
        Metadata::parse(&serde_json::Value::Object(map).to_string()).unwrap_or_default()
    })
}

fn guards() -> impl Strategy<Value = Guards> {
    let condition = (
        account_ref(),
        asset(),
        prop_oneof![Just(BalanceFigure::Available), Just(BalanceFigure::Posted)],
        prop_oneof![
            Just(Comparison::Gte),
            Just(Comparison::Lte),
            Just(Comparison::Eq)
        ],
        signed(),
    )
        .prop_map(|(account, asset, balance, op, amount)| Condition {
            account,
            asset,
            balance,
            op,
            amount,
        });
    let version = (account_ref(), prop_oneof![0i64..200, any::<i64>()])
        .prop_map(|(account, version)| ExpectedVersion { account, version });
    prop_oneof![
        4 => Just(Guards::default()),
        1 => (
            prop::collection::vec(condition, 0..20),
            prop::collection::vec(version, 0..20)
        )
            .prop_map(|(conditions, expected_versions)| Guards {
                conditions,
                expected_versions,
            }),
    ]
}

fn hold_terms() -> impl Strategy<Value = Option<HoldTerms>> {
    prop::option::weighted(
        0.3,
        prop::option::of(time()).prop_map(|expires_at| HoldTerms { expires_at }),
    )
}

fn posting_instruction() -> impl Strategy<Value = PostingInstruction> {
    // Half the sources are the world account, so that the others have money to spend.
    let source = prop_oneof![Just(AccountRef::Code(code(ACCOUNTS[0].0))), account_ref()];
    (source, account_ref(), asset(), positive()).prop_map(|(source, destination, asset, amount)| {
        PostingInstruction {
            cost: None,
            source,
            destination,
            asset,
            amount,
        }
    })
}

/// A posting as a log would record it, but with any decimal at all: what a reversal is handed.
fn raw_posting() -> impl Strategy<Value = Posting> {
    (account_code(), account_code(), asset(), any_decimal()).prop_map(
        |(source, destination, asset, amount)| Posting {
            cost: None,
            source,
            destination,
            asset,
            amount,
        },
    )
}

/// One operation: a command, or a settlement or reversal of something picked from the state or
/// log when the command is built.
// Sizes do not matter in a generator of test cases.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Op {
    Command(Command),
    /// Settles the n-th open hold (or an unknown id when there is none), with this settlement.
    Settle(usize, Settlement, DateTime<Utc>, Metadata),
    /// Reverses the n-th earlier movement of the log.
    Reverse(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let id = any::<u128>().prop_map(|n| TransactionId(Uuid::from_u128(n)));
    let transaction = (
        id.clone(),
        prop_oneof![
            Just(TransactionKind::Transaction),
            Just(TransactionKind::Transfer),
            Just(TransactionKind::Reversal)
        ],
        prop_oneof![
            20 => prop::collection::vec(posting_instruction(), 1..4),
            1 => prop::collection::vec(posting_instruction(), 0..70),
        ],
        metadata(),
        guards(),
        hold_terms(),
    )
        .prop_map(
            |(id, kind, postings, metadata, guards, pending)| PostTransaction {
                id,
                kind,
                postings,
                metadata,
                guards,
                pending,
                effective_at: None,
            },
        );
    let fee = (
        account_ref(),
        account_ref(),
        prop::option::of(asset()),
        positive(),
    )
        .prop_map(|(payer, account, asset, amount)| FeeInstruction {
            payer,
            account,
            asset,
            amount,
        })
        .boxed();
    // Mostly AAPL for USD with the world as seller, so that many trades can settle.
    let seller = prop_oneof![Just(AccountRef::Code(code(ACCOUNTS[0].0))), account_ref()];
    let pair = prop_oneof![
        4 => Just(("AAPL".parse().expect("asset"), "USD".parse().expect("asset"))),
        1 => (asset(), asset()),
    ];
    let trade = (
        (id.clone(), account_ref(), seller, pair),
        (
            prop_oneof![3 => (1i64..50).prop_map(|q| Decimal::new(q, 0).to_string().parse().expect("quantity")), 1 => positive()],
            prop_oneof![3 => (1i64..20_000).prop_map(|p| Decimal::new(p, 2).to_string().parse().expect("price")), 1 => positive()],
            prop_oneof![
                10 => prop::collection::vec(fee.clone(), 0..2),
                1 => prop::collection::vec(fee, 0..20),
            ],
            metadata(),
            guards(),
            hold_terms(),
        ),
    )
        .prop_map(
            |((id, buyer, seller, (instrument, currency)), (quantity, price, fees, metadata, guards, pending))| {
                ExecuteTrade {
                    lots: Vec::new(),
                    open_lots: None,
                    settlement_date: None,
                    id,
                    buyer,
                    seller,
                    instrument,
                    quantity,
                    price,
                    currency,
                    fees,
                    metadata,
                    guards,
                    pending, effective_at: None,
                }
            },
        );
    // A trade that can settle: a funded-looking buyer buys a few AAPL from the world for USD.
    let plain_trade = (
        id.clone(),
        1..ACCOUNTS.len(),
        1i64..20,
        1i64..5_000,
        metadata(),
    )
        .prop_map(|(id, buyer, quantity, price, metadata)| ExecuteTrade {
            lots: Vec::new(),
            open_lots: None,
            settlement_date: None,
            id,
            buyer: AccountRef::Code(code(ACCOUNTS[buyer].0)),
            seller: AccountRef::Code(code(ACCOUNTS[0].0)),
            instrument: "AAPL".parse().expect("asset"),
            quantity: quantity.to_string().parse().expect("quantity"),
            price: Decimal::new(price, 2).to_string().parse().expect("price"),
            currency: "USD".parse().expect("asset"),
            fees: Vec::new(),
            metadata,
            guards: Guards::default(),
            pending: None,
            effective_at: None,
        });
    let bound = prop_oneof![
        Just(BoundChange::Keep),
        Just(BoundChange::Unbounded),
        signed().prop_map(BoundChange::To)
    ]
    .boxed();
    let settlement = prop_oneof![
        2 => prop::option::of(prop::collection::vec(signed(), 0..5))
            .prop_map(|amounts| Settlement::Post { amounts }),
        1 => Just(Settlement::Void),
        1 => Just(Settlement::Expire),
    ];
    let garbage_reversal = (
        id.clone(),
        id,
        prop::collection::vec(raw_posting(), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(id, original, postings, is_reversal, force)| {
            Command::ReverseTransaction(ReverseTransaction {
                id,
                original: OriginalTransaction {
                    id: original,
                    postings,
                    is_reversal,
                    effective_at: chrono::DateTime::UNIX_EPOCH,
                },
                force,
                metadata: Metadata::default(),
                effective_at: None,
            })
        });
    prop_oneof![
        12 => transaction.prop_map(|c| Op::Command(Command::PostTransaction(c))),
        3 => trade.prop_map(|c| Op::Command(Command::ExecuteTrade(c))),
        3 => plain_trade.prop_map(|c| Op::Command(Command::ExecuteTrade(c))),
        4 => (0..8usize, settlement, time(), metadata())
            .prop_map(|(n, s, at, m)| Op::Settle(n, s, at, m)),
        2 => (0..40usize, prop::bool::weighted(0.3)).prop_map(|(n, force)| Op::Reverse(n, force)),
        1 => garbage_reversal.prop_map(Op::Command),
        1 => (asset(), 0u32..=18).prop_map(|(code, scale)| Op::Command(Command::DefineAsset(DefineAsset {
            code,
            scale: scale.try_into().expect("a scale of 0 to 18"),
        }))),
        1 => (0..ACCOUNTS.len() + 2, account_code(), any::<bool>(), metadata()).prop_map(|(i, code, allow_negative, metadata)| {
            Op::Command(Command::OpenAccount(OpenAccount { booking_method: None, id: account_id(i), code, allow_negative, metadata }))
        }),
        1 => (
            account_ref(),
            prop_oneof![
                3 => Just(StatusChange::Freeze),
                4 => Just(StatusChange::Unfreeze),
                1 => Just(StatusChange::Close)
            ],
            metadata(),
        )
            .prop_map(|(account, change, metadata)| Op::Command(Command::ChangeAccountStatus(ChangeAccountStatus { account, change, metadata }))),
        1 => (account_ref(), asset(), bound.clone(), bound).prop_map(|(account, asset, min_balance, max_balance)| {
            Op::Command(Command::SetAccountLimits(SetAccountLimits { account, asset, min_balance, max_balance }))
        }),
    ]
}

fn command(op: &Op, state: &LedgerState, log: &[Event]) -> Command {
    match op {
        Op::Command(command) => command.clone(),
        Op::Settle(n, settlement, at, metadata) => {
            let holds = state.open_holds();
            let pending_id = if holds.is_empty() {
                TransactionId(Uuid::from_u128(7))
            } else {
                holds[n % holds.len()]
            };
            Command::SettlePending(SettlePending {
                pending_id,
                settlement: settlement.clone(),
                at: *at,
                metadata: metadata.clone(),
                effective_at: None,
            })
        }
        Op::Reverse(n, force) => common::reverse_nth(log, *n, *force),
    }
}

fn genesis() -> Result<LedgerState, TestCaseError> {
    let mut state = LedgerState::new();
    let mut commands = Vec::new();
    for (code, scale) in ASSETS {
        commands.push(Command::DefineAsset(DefineAsset {
            code: code.parse().map_err(fail)?,
            scale: scale.try_into().map_err(fail)?,
        }));
    }
    for (i, (code, allow_negative)) in ACCOUNTS.iter().enumerate() {
        commands.push(Command::OpenAccount(OpenAccount {
            booking_method: None,
            id: account_id(i),
            code: code.parse().map_err(fail)?,
            allow_negative: *allow_negative,
            metadata: Metadata::default(),
        }));
    }
    for command in &commands {
        let event = state.decide(command).map_err(fail)?;
        state.apply(&event).map_err(fail)?;
    }
    Ok(state)
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Checks an accepted event and applies it, keeping an independent tally of balances from the
/// legs `apply` reports.
fn accept(
    state: &mut LedgerState,
    event: &Event,
    tally: &mut BTreeMap<(AccountId, AssetCode), i128>,
) -> Result<(), TestCaseError> {
    // Every amount the event names is positive and exact at its asset's scale.
    for posting in event.postings().iter().chain(event.released()) {
        prop_assert!(posting.amount > Decimal::ZERO, "{:?}", event);
        let scale = state
            .asset_scale(&posting.asset)
            .ok_or_else(|| fail(format!("undefined asset in {event:?}")))?;
        prop_assert!(
            posting.amount.normalize().scale() <= scale.get(),
            "{:?}",
            event
        );
        prop_assert!(posting.source != posting.destination, "{:?}", event);
    }
    // The stored form decodes to the same event.
    let decoded =
        Event::decode(event.event_type(), event.schema_version(), &event.encode()).map_err(fail)?;
    prop_assert_eq!(&decoded, event);

    let legs = state.apply(event).map_err(fail)?;
    // Debits equal credits, per asset, within the event.
    let mut per_asset: BTreeMap<&AssetCode, (i128, i128)> = BTreeMap::new();
    for leg in &legs {
        let sums = per_asset.entry(&leg.asset).or_default();
        if leg.units < 0 {
            sums.0 -= leg.units;
        } else {
            sums.1 += leg.units;
        }
        *tally
            .entry((leg.account_id, leg.asset.clone()))
            .or_default() += leg.units;
        prop_assert_eq!(
            tally[&(leg.account_id, leg.asset.clone())],
            leg.balance_after,
            "leg {:?} of {:?}",
            leg,
            event
        );
    }
    for (asset, (debits, credits)) in per_asset {
        prop_assert_eq!(debits, credits, "{} in {:?}", asset, event);
    }
    // The moved postings are exactly the legs: one debit and one credit each.
    if !event.is_pending() {
        prop_assert_eq!(legs.len(), 2 * event.postings().len(), "{:?}", event);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: common::cases(DEFAULT_CASES), ..ProptestConfig::default() })]

    #[test]
    fn decide_never_panics_and_accepted_events_balance(ops in prop::collection::vec(op(), 1..120)) {
        let mut state = genesis()?;
        let mut log = Vec::new();
        let mut tally = BTreeMap::new();
        for op in &ops {
            let command = command(op, &state, &log);
            let before = state.clone();
            match state.decide(&command) {
                Ok(event) => {
                    accept(&mut state, &event, &mut tally)?;
                    prop_assert_eq!(state.head(), before.head() + 1);
                    log.push(event);
                }
                // A refusal is a typed rejection with a code and a message.
                Err(rejection) => {
                    prop_assert!(!rejection.code().is_empty());
                    prop_assert!(!rejection.to_string().is_empty());
                }
            }
            // Every asset's balances sum to zero, and the tally agrees with the state.
            prop_assert!(state.check_conservation().is_ok(), "{:?}", state.totals_per_asset());
            prop_assert!(state.check_holds().is_ok(), "{:?}", state.check_holds());
        }
        let mut held: BTreeMap<(AccountId, AssetCode), i128> = BTreeMap::new();
        for account in state.accounts() {
            for (asset, units) in account.balances() {
                held.insert((account.id, asset.clone()), units);
            }
        }
        tally.retain(|_, units| *units != 0);
        prop_assert_eq!(held, tally);
        // Replaying the accepted events from genesis gives the same state.
        let mut replayed = genesis()?;
        for event in &log {
            replayed.apply(event).map_err(fail)?;
        }
        prop_assert_eq!(&replayed, &state);
    }
}

/// A guard on the generator: the garbage must not drown the commands that get accepted, or the
/// invariants above would be checked on empty logs.
#[test]
fn the_fuzzer_reaches_accepted_commands_of_every_kind() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 100..120);
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..100 {
        let ops = strategy
            .new_tree(&mut runner)
            .map(|tree| tree.current())
            .unwrap_or_default();
        let Ok(mut state) = genesis() else {
            panic!("genesis refused")
        };
        let mut log = Vec::new();
        for op in &ops {
            match state.decide(&command(op, &state, &log)) {
                Ok(event) => {
                    let kind = match &event {
                        Event::TransactionPosted(e) if e.reverses.is_some() => "reversal",
                        Event::TransactionPosted(e) if e.pending => "hold",
                        other => other.event_type(),
                    };
                    *accepted.entry(kind).or_default() += 1;
                    assert!(state.apply(&event).is_ok());
                    log.push(event);
                }
                Err(rejection) => *refused.entry(rejection.code()).or_default() += 1,
            }
        }
    }
    for kind in [
        "TransactionPosted",
        "TradeExecuted",
        "hold",
        "PendingPosted",
        "PendingVoided",
        "reversal",
        "AccountStatusChanged",
        "AccountLimitsSet",
    ] {
        assert!(
            accepted.get(kind).copied().unwrap_or(0) >= 5,
            "too few accepted {kind}: {accepted:?}"
        );
    }
    for code in [
        "insufficient_funds",
        "account_not_found",
        "asset_not_found",
        "amount_precision",
        "validation_error",
    ] {
        assert!(
            refused.get(code).copied().unwrap_or(0) >= 5,
            "too few {code}: {refused:?}"
        );
    }
}
