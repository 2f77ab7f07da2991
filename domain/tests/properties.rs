//! Property tests: for any sequence of commands, every asset's balances sum to zero, no account
//! that may not go negative ever does, and a refused command changes nothing.

use domain::command::{
    AccountStatus, BoundChange, ChangeAccountStatus, Guards, SetAccountLimits, StatusChange,
};
use domain::{
    AccountId, Command, DefineAsset, ExecuteTrade, FeeInstruction, LedgerState, Metadata,
    OpenAccount, PostTransaction, PostingInstruction, TransactionId, TransactionKind,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use uuid::Uuid;

const ASSETS: [(&str, u32); 3] = [("USD", 2), ("BTC", 8), ("AAPL", 0)];
/// (code, allow_negative)
const ACCOUNTS: [(&str, bool); 6] = [
    ("world:bank", true),
    ("world:exchange", true),
    ("alice:main", false),
    ("bob:main", false),
    ("carol:main", false),
    ("house:fees", false),
];

#[derive(Debug, Clone)]
enum Op {
    Transaction(Vec<(usize, usize, usize, String)>),
    Trade {
        buyer: usize,
        seller: usize,
        quantity: String,
        price: String,
        fee: Option<(usize, usize, String)>,
    },
    DefineAsset(usize, u32),
    OpenAccount(usize),
    Status(usize, StatusChange),
    /// Account, asset, minimum and maximum (`None`: unbounded).
    Limits(usize, usize, Option<i64>, Option<i64>),
}

/// Amounts that are sometimes too precise for their asset, and span several magnitudes.
fn amount() -> impl Strategy<Value = String> {
    let scale = prop_oneof![6 => 0u32..3, 1 => 3u32..10];
    (1u64..5_000_000, scale).prop_map(|(mantissa, scale)| {
        rust_decimal::Decimal::new(mantissa as i64, scale).to_string()
    })
}

fn op() -> impl Strategy<Value = Op> {
    let account = 0..ACCOUNTS.len();
    // Half the money comes from the world accounts, so that the others have balances to spend.
    let source = prop_oneof![0..2usize, 0..ACCOUNTS.len()];
    let posting = (source, account.clone(), 0..ASSETS.len(), amount());
    prop_oneof![
        6 => prop::collection::vec(posting, 1..4).prop_map(Op::Transaction),
        3 => (
            account.clone(),
            account.clone(),
            (1u64..50).prop_map(|q| q.to_string()),
            amount(),
            prop::option::of((account.clone(), account.clone(), amount())),
        )
            .prop_map(|(buyer, seller, quantity, price, fee)| Op::Trade {
                buyer,
                seller,
                quantity,
                price,
                fee,
            }),
        1 => (0..ASSETS.len(), 0u32..19).prop_map(|(a, s)| Op::DefineAsset(a, s)),
        1 => account.clone().prop_map(Op::OpenAccount),
        1 => (
            account.clone(),
            prop_oneof![
                3 => Just(StatusChange::Freeze),
                4 => Just(StatusChange::Unfreeze),
                1 => Just(StatusChange::Close)
            ],
        )
            .prop_map(|(a, change)| Op::Status(a, change)),
        1 => (
            account,
            0..ASSETS.len(),
            prop::option::of(-100_000i64..1000),
            prop::option::weighted(0.3, 0i64..1_000_000_000),
        )
            .prop_map(|(a, asset, min, max)| Op::Limits(a, asset, min, max)),
    ]
}

fn account_id(index: usize) -> AccountId {
    AccountId(Uuid::from_u128(index as u128 + 1))
}

fn command(op: &Op) -> Command {
    let code = |i: usize| ACCOUNTS[i].0.parse().unwrap();
    match op {
        Op::Transaction(postings) => Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::new_v4()),
            kind: TransactionKind::Transaction,
            postings: postings
                .iter()
                .map(|(s, d, a, amount)| PostingInstruction {
                    source: code(*s),
                    destination: code(*d),
                    asset: ASSETS[*a].0.parse().unwrap(),
                    amount: amount.parse().unwrap(),
                })
                .collect(),
            metadata: Metadata::default(),
            guards: Guards::default(),
        }),
        Op::Trade {
            buyer,
            seller,
            quantity,
            price,
            fee,
        } => Command::ExecuteTrade(ExecuteTrade {
            id: TransactionId(Uuid::new_v4()),
            buyer: code(*buyer),
            seller: code(*seller),
            instrument: "AAPL".parse().unwrap(),
            quantity: quantity.parse().unwrap(),
            price: price.parse().unwrap(),
            currency: "USD".parse().unwrap(),
            fees: fee
                .iter()
                .map(|(payer, account, amount)| FeeInstruction {
                    payer: code(*payer),
                    account: code(*account),
                    asset: None,
                    amount: amount.parse().unwrap(),
                })
                .collect(),
            metadata: Metadata::default(),
            guards: Guards::default(),
        }),
        Op::DefineAsset(a, scale) => Command::DefineAsset(DefineAsset {
            code: ASSETS[*a].0.parse().unwrap(),
            scale: (*scale).min(18).try_into().unwrap(),
        }),
        Op::OpenAccount(i) => Command::OpenAccount(OpenAccount {
            id: account_id(*i),
            code: ACCOUNTS[*i].0.parse().unwrap(),
            allow_negative: ACCOUNTS[*i].1,
            metadata: Metadata::default(),
        }),
        Op::Status(i, change) => Command::ChangeAccountStatus(ChangeAccountStatus {
            account: code(*i),
            change: *change,
            metadata: Metadata::default(),
        }),
        Op::Limits(i, asset, min, max) => {
            let bound = |b: &Option<i64>| match b {
                None => BoundChange::Unbounded,
                Some(units) => BoundChange::To(units.to_string().parse().unwrap()),
            };
            Command::SetAccountLimits(SetAccountLimits {
                account: code(*i),
                asset: ASSETS[*asset].0.parse().unwrap(),
                min_balance: bound(min),
                max_balance: bound(max),
            })
        }
    }
}

fn genesis() -> LedgerState {
    let mut state = LedgerState::new();
    for (code, scale) in ASSETS {
        let event = state
            .decide(&Command::DefineAsset(DefineAsset {
                code: code.parse().unwrap(),
                scale: scale.try_into().unwrap(),
            }))
            .unwrap();
        state.apply(&event).unwrap();
    }
    for i in 0..ACCOUNTS.len() {
        let event = state.decide(&command(&Op::OpenAccount(i))).unwrap();
        state.apply(&event).unwrap();
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn money_is_conserved_and_refusals_change_nothing(ops in prop::collection::vec(op(), 1..80)) {
        let mut state = genesis();
        let mut log = Vec::new();
        for op in &ops {
            let before = state.clone();
            match state.decide(&command(op)) {
                Ok(event) => {
                    let legs = state.apply(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    // Every leg respects its account's status and bounds as they stood.
                    for leg in &legs {
                        let account = before.account(leg.account_id).unwrap();
                        prop_assert_eq!(account.status, AccountStatus::Open);
                        let limits = account.limits(&leg.asset);
                        if leg.units < 0 {
                            prop_assert!(limits.min_units.is_none_or(|min| leg.balance_after >= min), "{} below its minimum", account.code);
                        } else {
                            prop_assert!(limits.max_units.is_none_or(|max| leg.balance_after <= max), "{} above its maximum", account.code);
                        }
                    }
                    prop_assert_eq!(state.head(), before.head() + 1);
                    log.push(event);
                }
                Err(_) => prop_assert_eq!(&state, &before),
            }
            prop_assert!(state.check_conservation().is_ok(), "{:?}", state.totals_per_asset());
            for account in state.accounts() {
                if account.status == AccountStatus::Closed {
                    prop_assert_eq!(account.balances().count(), 0, "closed {} holds money", account.code);
                }
            }
        }
        // Replaying the accepted events from genesis gives the same state.
        let mut replayed = genesis();
        for event in &log {
            replayed.apply(event).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert_eq!(&replayed, &state);
    }
}

#[test]
fn the_generator_produces_accepted_money_movements() {
    // A guard on the property above: with funding from world accounts most sequences accept some.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 40..60);
    let mut accepted_total = 0;
    let mut trades_accepted = 0;
    let mut account_changes_accepted = 0;
    for _ in 0..20 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let mut state = genesis();
        for op in &ops {
            if let Ok(event) = state.decide(&command(op)) {
                if !event.postings().is_empty() {
                    accepted_total += 1;
                }
                if matches!(event, domain::Event::TradeExecuted(_)) {
                    trades_accepted += 1;
                }
                if matches!(
                    event,
                    domain::Event::AccountStatusChanged(_) | domain::Event::AccountLimitsSet(_)
                ) {
                    account_changes_accepted += 1;
                }
                state.apply(&event).unwrap();
            }
        }
    }
    assert!(
        accepted_total > 100,
        "only {accepted_total} accepted movements"
    );
    assert!(
        trades_accepted > 5,
        "only {trades_accepted} accepted trades"
    );
    assert!(
        account_changes_accepted > 20,
        "only {account_changes_accepted} accepted status and limit changes"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Rolling a group back restores the state exactly: how an atomic batch is abandoned.
    #[test]
    fn rolling_back_a_group_restores_the_state(prefix in prop::collection::vec(op(), 0..30), group in prop::collection::vec(op(), 1..10)) {
        let mut state = genesis();
        for op in &prefix {
            if let Ok(event) = state.decide(&command(op)) {
                state.apply(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        let before = state.clone();
        state.begin_group();
        for op in &group {
            if let Ok(event) = state.decide(&command(op)) {
                state.apply(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        state.roll_back_group();
        prop_assert_eq!(&state, &before);
    }
}
