//! The decision rules, one by one, without a database.

use chrono::{DateTime, Utc};
use domain::command::{
    BalanceFigure, BoundChange, ChangeAccountStatus, Comparison, Condition, ExpectedVersion,
    Guards, HoldTerms, OriginalTransaction, ReverseTransaction, SetAccountLimits, SettlePending,
    Settlement, StatusChange,
};
use domain::error::ConditionFailure;
use domain::{
    AccountCode, AccountId, Command, DefineAsset, Event, ExecuteTrade, FeeInstruction, LedgerState,
    Metadata, OpenAccount, PostTransaction, PostingInstruction, Rejection, TransactionId,
    TransactionKind,
};
use uuid::Uuid;

fn run(state: &mut LedgerState, command: Command) -> Result<Event, Rejection> {
    let event = state.decide(&command)?;
    state.apply(&event).expect("a decided event applies");
    Ok(event)
}

fn define(state: &mut LedgerState, code: &str, scale: u32) {
    run(
        state,
        Command::DefineAsset(DefineAsset {
            code: code.parse().unwrap(),
            scale: scale.try_into().unwrap(),
        }),
    )
    .unwrap();
}

/// Ids derived from the code, so that two states built alike are equal.
fn id_of(code: &str) -> AccountId {
    let hash = code.bytes().fold(0xcbf29ce484222325u128, |h, b| {
        (h ^ u128::from(b)).wrapping_mul(0x100000001b3)
    });
    AccountId(Uuid::from_u128(hash))
}

fn open(state: &mut LedgerState, code: &str, allow_negative: bool) -> AccountId {
    let id = id_of(code);
    run(
        state,
        Command::OpenAccount(OpenAccount {
            booking_method: None,
            id,
            code: code.parse().unwrap(),
            allow_negative,
            metadata: Metadata::default(),
        }),
    )
    .unwrap();
    id
}

fn posting(source: &str, destination: &str, asset: &str, amount: &str) -> PostingInstruction {
    PostingInstruction {
        cost: None,
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
        asset: asset.parse().unwrap(),
        amount: amount.parse().unwrap(),
    }
}

fn transaction(postings: Vec<PostingInstruction>) -> Command {
    Command::PostTransaction(PostTransaction {
        id: TransactionId(Uuid::new_v4()),
        kind: TransactionKind::Transaction,
        postings,
        metadata: Metadata::default(),
        guards: Default::default(),
        pending: None,
        effective_at: None,
    })
}

fn balance(state: &LedgerState, account: &str, asset: &str) -> i128 {
    state
        .account_by_code(&account.parse::<AccountCode>().unwrap())
        .unwrap()
        .balance(&asset.parse().unwrap())
}

/// USD (2), AAPL (0); world:bank may go negative; alice, bob, broker:fees may not.
fn market() -> LedgerState {
    let mut state = LedgerState::new();
    define(&mut state, "USD", 2);
    define(&mut state, "AAPL", 0);
    open(&mut state, "world:bank", true);
    open(&mut state, "alice:cash", false);
    open(&mut state, "bob:cash", false);
    open(&mut state, "broker:fees", false);
    state
}

fn trade(
    buyer: &str,
    seller: &str,
    quantity: &str,
    price: &str,
    fees: Vec<FeeInstruction>,
) -> Command {
    Command::ExecuteTrade(ExecuteTrade {
        lots: Vec::new(),
        open_lots: None,
        settlement_date: None,
        id: TransactionId(Uuid::new_v4()),
        buyer: buyer.parse().unwrap(),
        seller: seller.parse().unwrap(),
        instrument: "AAPL".parse().unwrap(),
        quantity: quantity.parse().unwrap(),
        price: price.parse().unwrap(),
        currency: "USD".parse().unwrap(),
        fees,
        metadata: Metadata::default(),
        guards: Default::default(),
        pending: None,
        effective_at: None,
    })
}

fn fee(payer: &str, account: &str, amount: &str) -> FeeInstruction {
    FeeInstruction {
        payer: payer.parse().unwrap(),
        account: account.parse().unwrap(),
        asset: None,
        amount: amount.parse().unwrap(),
    }
}

#[test]
fn an_asset_is_defined_once() {
    let mut state = market();
    let again = state.decide(&Command::DefineAsset(DefineAsset {
        code: "USD".parse().unwrap(),
        scale: 4u32.try_into().unwrap(),
    }));
    assert_eq!(
        again,
        Err(Rejection::DuplicateAsset {
            asset: "USD".into(),
            scale: 2
        })
    );
    define(&mut state, "EUR", 2);
}

#[test]
fn an_account_code_and_id_are_unique() {
    let mut state = market();
    let duplicate_code = state.decide(&Command::OpenAccount(OpenAccount {
        booking_method: None,
        id: AccountId(Uuid::new_v4()),
        code: "alice:cash".parse().unwrap(),
        allow_negative: false,
        metadata: Metadata::default(),
    }));
    assert_eq!(duplicate_code.unwrap_err().code(), "duplicate_account");
    let id = open(&mut state, "carol:cash", false);
    let duplicate_id = state.decide(&Command::OpenAccount(OpenAccount {
        booking_method: None,
        id,
        code: "dave:cash".parse().unwrap(),
        allow_negative: false,
        metadata: Metadata::default(),
    }));
    assert_eq!(duplicate_id.unwrap_err().code(), "duplicate_account");
}

#[test]
fn a_reserved_code_cannot_be_opened_but_an_old_log_holding_one_still_restores() {
    let mut state = market();
    let tree: AccountCode = "tree".parse().unwrap();
    let refused = state.decide(&Command::OpenAccount(OpenAccount {
        booking_method: None,
        id: AccountId(Uuid::new_v4()),
        code: tree.clone(),
        allow_negative: false,
        metadata: Metadata::default(),
    }));
    assert_eq!(refused.unwrap_err().code(), "validation_error");
    open(&mut state, "tree:oak", false);
    let written_before_the_route = Event::AccountOpened(domain::event::AccountOpened {
        booking_method: None,
        account_id: AccountId(Uuid::new_v4()),
        code: tree.clone(),
        allow_negative: false,
        metadata: Metadata::default(),
    });
    state.apply(&written_before_the_route).unwrap();
    assert!(state.account_by_code(&tree).is_some());
}

#[test]
fn funding_from_an_account_that_may_go_negative() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "100.5")]),
    )
    .unwrap();
    assert_eq!(balance(&state, "alice:cash", "USD"), 10_050);
    assert_eq!(balance(&state, "world:bank", "USD"), -10_050);
    state.check_conservation().unwrap();
}

#[test]
fn overdraft_is_refused_and_changes_nothing() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "10")]),
    )
    .unwrap();
    let before = state.clone();
    let refused = state.decide(&transaction(vec![posting(
        "alice:cash",
        "bob:cash",
        "USD",
        "10.01",
    )]));
    assert_eq!(
        refused,
        Err(Rejection::InsufficientFunds {
            account: "alice:cash".into(),
            asset: "USD".into(),
            balance: "10.00".into(),
            required: "10.01".into(),
            min_balance: None,
        })
    );
    assert_eq!(state, before);
}

#[test]
fn postings_apply_in_order_and_all_or_nothing() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "10")]),
    )
    .unwrap();
    // The second posting would overdraw bob before alice's money reaches him: refused as a whole.
    let refused = state.decide(&transaction(vec![
        posting("bob:cash", "broker:fees", "USD", "5"),
        posting("alice:cash", "bob:cash", "USD", "5"),
    ]));
    assert_eq!(refused.unwrap_err().code(), "insufficient_funds");
    // In the other order it passes.
    run(
        &mut state,
        transaction(vec![
            posting("alice:cash", "bob:cash", "USD", "5"),
            posting("bob:cash", "broker:fees", "USD", "5"),
        ]),
    )
    .unwrap();
    assert_eq!(balance(&state, "alice:cash", "USD"), 500);
    assert_eq!(balance(&state, "bob:cash", "USD"), 0);
    assert_eq!(balance(&state, "broker:fees", "USD"), 500);
}

#[test]
fn two_debits_of_one_account_in_one_transaction_count_together() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "10")]),
    )
    .unwrap();
    let refused = state.decide(&transaction(vec![
        posting("alice:cash", "bob:cash", "USD", "6"),
        posting("alice:cash", "broker:fees", "USD", "6"),
    ]));
    assert_eq!(refused.unwrap_err().code(), "insufficient_funds");
}

#[test]
fn posting_rules() {
    let state = market();
    let cases = [
        (transaction(vec![]), "validation_error"),
        (
            transaction(vec![posting("alice:cash", "alice:cash", "USD", "1")]),
            "validation_error",
        ),
        (
            transaction(vec![posting("world:bank", "nobody:cash", "USD", "1")]),
            "account_not_found",
        ),
        (
            transaction(vec![posting("world:bank", "alice:cash", "EUR", "1")]),
            "asset_not_found",
        ),
        (
            transaction(vec![posting("world:bank", "alice:cash", "USD", "1.001")]),
            "amount_precision",
        ),
        (
            transaction(vec![posting("world:bank", "alice:cash", "AAPL", "0.5")]),
            "amount_precision",
        ),
        (
            transaction(vec![posting(
                "world:bank",
                "alice:cash",
                "USD",
                "79228162514264337593543950335",
            )]),
            "validation_error",
        ),
        (
            transaction(
                (0..65)
                    .map(|_| posting("world:bank", "alice:cash", "USD", "1"))
                    .collect(),
            ),
            "validation_error",
        ),
        (
            Command::PostTransaction(PostTransaction {
                id: TransactionId(Uuid::new_v4()),
                kind: TransactionKind::Transfer,
                postings: vec![
                    posting("world:bank", "alice:cash", "USD", "1"),
                    posting("world:bank", "bob:cash", "USD", "1"),
                ],
                metadata: Metadata::default(),
                guards: Default::default(),
                pending: None,
                effective_at: None,
            }),
            "validation_error",
        ),
    ];
    for (command, code) in cases {
        assert_eq!(
            state.decide(&command).unwrap_err().code(),
            code,
            "{command:?}"
        );
    }
    // 64 postings is the maximum, and allowed.
    let sixty_four = transaction(
        (0..64)
            .map(|_| posting("world:bank", "alice:cash", "USD", "1"))
            .collect(),
    );
    assert!(state.decide(&sixty_four).is_ok());
}

#[test]
fn balances_never_leave_the_balance_type() {
    let mut state = market();
    let max = "792281625142643375935439503.35"; // 2^96 − 1 cents
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", max)]),
    )
    .unwrap();
    let refused = state.decide(&transaction(vec![posting(
        "world:bank",
        "alice:cash",
        "USD",
        "0.01",
    )]));
    assert_eq!(refused.unwrap_err().code(), "balance_overflow");
}

#[test]
fn a_trade_delivers_against_payment_with_fees() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "2000")]),
    )
    .unwrap();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "bob:cash", "AAPL", "10")]),
    )
    .unwrap();
    let event = run(
        &mut state,
        trade(
            "alice:cash",
            "bob:cash",
            "10",
            "189.50",
            vec![fee("alice:cash", "broker:fees", "1.25")],
        ),
    )
    .unwrap();
    let Event::TradeExecuted(trade) = event else {
        panic!("not a trade: {event:?}");
    };
    assert_eq!(trade.notional.to_string(), "1895.00");
    assert_eq!(trade.postings.len(), 3);
    assert_eq!(trade.fees.len(), 1);
    assert_eq!(balance(&state, "alice:cash", "AAPL"), 10);
    assert_eq!(balance(&state, "bob:cash", "AAPL"), 0);
    assert_eq!(
        balance(&state, "alice:cash", "USD"),
        200_000 - 189_500 - 125
    );
    assert_eq!(balance(&state, "bob:cash", "USD"), 189_500);
    assert_eq!(balance(&state, "broker:fees", "USD"), 125);
    state.check_conservation().unwrap();
}

#[test]
fn a_trade_without_fees() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "100")]),
    )
    .unwrap();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "bob:cash", "AAPL", "1")]),
    )
    .unwrap();
    run(
        &mut state,
        trade("alice:cash", "bob:cash", "1", "100", vec![]),
    )
    .unwrap();
    assert_eq!(balance(&state, "alice:cash", "USD"), 0);
}

#[test]
fn an_inexact_notional_is_refused_not_rounded() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "100")]),
    )
    .unwrap();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "bob:cash", "AAPL", "3")]),
    )
    .unwrap();
    let before = state.clone();
    let refused = state.decide(&trade("alice:cash", "bob:cash", "3", "10.333", vec![]));
    assert_eq!(refused.unwrap_err().code(), "amount_precision");
    assert_eq!(state, before);
}

#[test]
fn trade_rules() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "100")]),
    )
    .unwrap();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "bob:cash", "AAPL", "1")]),
    )
    .unwrap();
    let cases = [
        (
            trade("alice:cash", "alice:cash", "1", "1", vec![]),
            "validation_error",
        ),
        (
            trade("alice:cash", "nobody:cash", "1", "1", vec![]),
            "account_not_found",
        ),
        (
            trade("alice:cash", "bob:cash", "2", "1", vec![]),
            "insufficient_funds",
        ),
        (
            trade("alice:cash", "bob:cash", "1", "100.01", vec![]),
            "insufficient_funds",
        ),
        (
            trade(
                "alice:cash",
                "bob:cash",
                "1",
                "99",
                vec![fee("alice:cash", "broker:fees", "1.01")],
            ),
            "insufficient_funds",
        ),
        (
            trade(
                "alice:cash",
                "bob:cash",
                "1",
                "1",
                vec![fee("alice:cash", "alice:cash", "1")],
            ),
            "validation_error",
        ),
        (
            trade(
                "alice:cash",
                "bob:cash",
                "1",
                "1",
                vec![fee("alice:cash", "broker:fees", "0.001")],
            ),
            "amount_precision",
        ),
        (
            trade("alice:cash", "bob:cash", "0.5", "1", vec![]),
            "amount_precision",
        ),
        (
            trade(
                "alice:cash",
                "bob:cash",
                "1",
                "1",
                (0..17)
                    .map(|_| fee("alice:cash", "broker:fees", "0.01"))
                    .collect(),
            ),
            "validation_error",
        ),
    ];
    for (command, code) in cases {
        assert_eq!(
            state.decide(&command).unwrap_err().code(),
            code,
            "{command:?}"
        );
    }
}

#[test]
fn events_survive_encoding() {
    let mut state = market();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "alice:cash", "USD", "2000")]),
    )
    .unwrap();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "bob:cash", "AAPL", "10")]),
    )
    .unwrap();
    let event = run(
        &mut state,
        trade(
            "alice:cash",
            "bob:cash",
            "10",
            "189.5",
            vec![fee("alice:cash", "broker:fees", "1.25")],
        ),
    )
    .unwrap();
    let decoded =
        Event::decode(event.event_type(), event.schema_version(), &event.encode()).unwrap();
    assert_eq!(decoded, event);
    assert!(Event::decode(event.event_type(), 99, &event.encode()).is_err());
    assert!(Event::decode("Nonsense", 1, &event.encode()).is_err());
}

#[test]
fn replaying_events_gives_the_same_state() {
    let mut live = market();
    let mut log = Vec::new();
    for command in [
        transaction(vec![posting("world:bank", "alice:cash", "USD", "2000")]),
        transaction(vec![posting("world:bank", "bob:cash", "AAPL", "10")]),
        trade(
            "alice:cash",
            "bob:cash",
            "10",
            "189.5",
            vec![fee("alice:cash", "broker:fees", "1.25")],
        ),
        transaction(vec![posting("alice:cash", "bob:cash", "USD", "3.33")]),
    ] {
        log.push(run(&mut live, command).unwrap());
    }
    let mut replayed = market();
    for event in &log {
        replayed.apply(event).unwrap();
    }
    assert_eq!(replayed, live);
}

// ------------------------------------------------------------ account lifecycle and limits

fn status(
    state: &mut LedgerState,
    account: &str,
    change: StatusChange,
) -> Result<Event, Rejection> {
    run(
        state,
        Command::ChangeAccountStatus(ChangeAccountStatus {
            account: account.parse().unwrap(),
            change,
            metadata: Metadata::default(),
        }),
    )
}

fn bound(text: Option<&str>) -> BoundChange {
    text.map_or(BoundChange::Unbounded, |t| {
        BoundChange::To(t.parse().unwrap())
    })
}

fn limits(
    state: &mut LedgerState,
    account: &str,
    min: BoundChange,
    max: BoundChange,
) -> Result<Event, Rejection> {
    run(
        state,
        Command::SetAccountLimits(SetAccountLimits {
            account: account.parse().unwrap(),
            asset: "USD".parse().unwrap(),
            min_balance: min,
            max_balance: max,
        }),
    )
}

fn pay(
    state: &mut LedgerState,
    source: &str,
    destination: &str,
    amount: &str,
) -> Result<Event, Rejection> {
    run(
        state,
        transaction(vec![posting(source, destination, "USD", amount)]),
    )
}

fn code<T: std::fmt::Debug>(rejection: Result<T, Rejection>) -> &'static str {
    rejection.expect_err("refused").code()
}

#[test]
fn a_frozen_account_takes_no_postings_until_unfrozen() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "10.00").unwrap();
    status(&mut state, "alice:cash", StatusChange::Freeze).unwrap();
    let before = state.clone();
    assert_eq!(
        code(pay(&mut state, "alice:cash", "bob:cash", "1.00")),
        "account_frozen"
    );
    assert_eq!(
        code(pay(&mut state, "world:bank", "alice:cash", "1.00")),
        "account_frozen"
    );
    assert_eq!(
        code(status(&mut state, "alice:cash", StatusChange::Freeze)),
        "account_frozen"
    );
    assert_eq!(state, before);
    status(&mut state, "alice:cash", StatusChange::Unfreeze).unwrap();
    pay(&mut state, "alice:cash", "bob:cash", "1.00").unwrap();
    assert_eq!(
        code(status(&mut state, "alice:cash", StatusChange::Unfreeze)),
        "account_not_frozen"
    );
}

#[test]
fn only_an_empty_account_closes_and_closed_is_final() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "10.00").unwrap();
    assert_eq!(
        state.decide(&Command::ChangeAccountStatus(ChangeAccountStatus {
            account: "alice:cash".parse().unwrap(),
            change: StatusChange::Close,
            metadata: Metadata::default(),
        })),
        Err(Rejection::AccountNotEmpty {
            account: "alice:cash".into(),
            asset: "USD".into(),
            balance: "10.00".into(),
        })
    );
    pay(&mut state, "alice:cash", "world:bank", "10.00").unwrap();
    status(&mut state, "alice:cash", StatusChange::Freeze).unwrap();
    status(&mut state, "alice:cash", StatusChange::Close).unwrap();
    let before = state.clone();
    for change in [
        StatusChange::Freeze,
        StatusChange::Unfreeze,
        StatusChange::Close,
    ] {
        assert_eq!(
            code(status(&mut state, "alice:cash", change)),
            "account_closed"
        );
    }
    assert_eq!(
        code(pay(&mut state, "world:bank", "alice:cash", "1.00")),
        "account_closed"
    );
    assert_eq!(
        code(limits(
            &mut state,
            "alice:cash",
            bound(None),
            BoundChange::Keep
        )),
        "account_closed"
    );
    assert_eq!(state, before);
}

#[test]
fn a_credit_limit_allows_an_overdraft_down_to_it() {
    let mut state = market();
    limits(
        &mut state,
        "alice:cash",
        bound(Some("-500.00")),
        BoundChange::Keep,
    )
    .unwrap();
    pay(&mut state, "alice:cash", "bob:cash", "499.99").unwrap();
    assert_eq!(
        pay(&mut state, "alice:cash", "bob:cash", "0.02"),
        Err(Rejection::InsufficientFunds {
            account: "alice:cash".into(),
            asset: "USD".into(),
            balance: "-499.99".into(),
            required: "0.02".into(),
            min_balance: Some("-500.00".into()),
        })
    );
    pay(&mut state, "alice:cash", "bob:cash", "0.01").unwrap();
    assert_eq!(balance(&state, "alice:cash", "USD"), -50_000);
    // The limit is per asset: AAPL keeps the default minimum of zero.
    assert_eq!(
        code(run(
            &mut state,
            transaction(vec![posting("alice:cash", "bob:cash", "AAPL", "1")])
        )),
        "insufficient_funds"
    );
}

#[test]
fn a_maximum_balance_caps_credits() {
    let mut state = market();
    limits(
        &mut state,
        "bob:cash",
        BoundChange::Keep,
        bound(Some("100")),
    )
    .unwrap();
    pay(&mut state, "world:bank", "bob:cash", "100.00").unwrap();
    assert_eq!(
        pay(&mut state, "world:bank", "bob:cash", "0.01"),
        Err(Rejection::BalanceLimitExceeded {
            account: "bob:cash".into(),
            asset: "USD".into(),
            balance_after: "100.01".into(),
            max_balance: "100.00".into(),
        })
    );
    // Debits are still allowed, and Keep leaves the maximum as it was.
    limits(&mut state, "bob:cash", bound(Some("-1")), BoundChange::Keep).unwrap();
    pay(&mut state, "bob:cash", "world:bank", "101.00").unwrap();
    assert_eq!(
        code(pay(&mut state, "world:bank", "bob:cash", "101.01")),
        "balance_limit_exceeded"
    );
}

#[test]
fn allow_negative_is_an_unbounded_minimum_that_a_limit_can_bound() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "1000000.00").unwrap();
    limits(
        &mut state,
        "world:bank",
        bound(Some("-2000000.00")),
        BoundChange::Keep,
    )
    .unwrap();
    assert_eq!(
        code(pay(&mut state, "world:bank", "alice:cash", "1000000.01")),
        "insufficient_funds"
    );
    limits(&mut state, "world:bank", bound(None), BoundChange::Keep).unwrap();
    pay(&mut state, "world:bank", "alice:cash", "1000000.01").unwrap();
}

#[test]
fn limit_changes_are_checked() {
    let mut state = market();
    assert_eq!(
        code(limits(
            &mut state,
            "alice:cash",
            bound(Some("-0.001")),
            BoundChange::Keep
        )),
        "amount_precision"
    );
    assert_eq!(
        code(limits(
            &mut state,
            "alice:cash",
            bound(Some("10")),
            bound(Some("5"))
        )),
        "validation_error"
    );
    assert_eq!(
        code(limits(
            &mut state,
            "nobody:cash",
            bound(None),
            BoundChange::Keep
        )),
        "account_not_found"
    );
    let event = limits(
        &mut state,
        "alice:cash",
        bound(Some("-5")),
        bound(Some("5")),
    )
    .unwrap();
    let Event::AccountLimitsSet(set) = event else {
        panic!("{event:?}")
    };
    assert_eq!(set.min_balance.unwrap().to_string(), "-5.00");
    assert_eq!(set.max_balance.unwrap().to_string(), "5.00");
}

fn guarded(postings: Vec<PostingInstruction>, guards: Guards) -> Command {
    let Command::PostTransaction(mut c) = transaction(postings) else {
        unreachable!()
    };
    c.guards = guards;
    Command::PostTransaction(c)
}

fn condition(account: &str, op: Comparison, amount: &str) -> Condition {
    Condition {
        account: account.parse().unwrap(),
        asset: "USD".parse().unwrap(),
        balance: BalanceFigure::Available,
        op,
        amount: amount.parse().unwrap(),
    }
}

#[test]
fn conditions_must_all_hold() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "10.00").unwrap();
    let spend = || vec![posting("alice:cash", "bob:cash", "USD", "1.00")];
    let guards = |conditions| Guards {
        conditions,
        expected_versions: Vec::new(),
    };
    let before = state.clone();
    assert_eq!(
        run(
            &mut state,
            guarded(
                spend(),
                guards(vec![
                    condition("alice:cash", Comparison::Gte, "10"),
                    condition("bob:cash", Comparison::Eq, "0.01"),
                ])
            )
        ),
        Err(Rejection::ConditionFailed(Box::new(ConditionFailure {
            index: 1,
            account: "bob:cash".into(),
            asset: "USD".into(),
            figure: "available".into(),
            op: "eq".into(),
            amount: "0.01".into(),
            actual: "0.00".into(),
        })))
    );
    assert_eq!(state, before);
    assert_eq!(
        code(run(
            &mut state,
            guarded(
                spend(),
                guards(vec![condition("alice:cash", Comparison::Lte, "9.99")])
            )
        )),
        "condition_failed"
    );
    assert_eq!(
        code(run(
            &mut state,
            guarded(
                spend(),
                guards(vec![condition("alice:cash", Comparison::Gte, "0.001")])
            )
        )),
        "amount_precision"
    );
    run(
        &mut state,
        guarded(
            spend(),
            guards(vec![
                condition("alice:cash", Comparison::Gte, "10.00"),
                condition("alice:cash", Comparison::Lte, "10"),
                condition("bob:cash", Comparison::Eq, "0"),
                condition("world:bank", Comparison::Lte, "-10"),
            ]),
        ),
    )
    .unwrap();
}

#[test]
fn an_account_version_is_the_position_of_its_last_change() {
    let mut state = market();
    let version = |state: &LedgerState, code: &str| {
        state
            .account_by_code(&code.parse().unwrap())
            .unwrap()
            .version
    };
    let opened = version(&state, "alice:cash");
    pay(&mut state, "world:bank", "alice:cash", "10.00").unwrap();
    assert_eq!(version(&state, "alice:cash"), state.head());
    assert_eq!(version(&state, "bob:cash"), opened + 1);
    let seen = version(&state, "alice:cash");
    let expect = |version| Guards {
        conditions: Vec::new(),
        expected_versions: vec![ExpectedVersion {
            account: "alice:cash".parse().unwrap(),
            version,
        }],
    };
    let spend = || vec![posting("alice:cash", "bob:cash", "USD", "1.00")];
    run(&mut state, guarded(spend(), expect(seen))).unwrap();
    // The same expectation again is stale now: the first spend moved the version.
    assert_eq!(
        run(&mut state, guarded(spend(), expect(seen))),
        Err(Rejection::VersionMismatch {
            account: "alice:cash".into(),
            expected: seen,
            actual: seen + 1,
        })
    );
    status(&mut state, "alice:cash", StatusChange::Freeze).unwrap();
    assert_eq!(version(&state, "alice:cash"), seen + 2);
}

// ------------------------------------------------------------ two-phase transactions

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap()
}

fn hold(
    state: &mut LedgerState,
    source: &str,
    destination: &str,
    amount: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<TransactionId, Rejection> {
    let Command::PostTransaction(mut c) =
        transaction(vec![posting(source, destination, "USD", amount)])
    else {
        unreachable!()
    };
    c.pending = Some(HoldTerms { expires_at });
    let id = c.id;
    run(state, Command::PostTransaction(c)).map(|_| id)
}

fn settle(
    state: &mut LedgerState,
    id: TransactionId,
    settlement: Settlement,
    minutes: i64,
) -> Result<Event, Rejection> {
    run(
        state,
        Command::SettlePending(SettlePending {
            pending_id: id,
            settlement,
            at: at(minutes),
            metadata: Metadata::default(),
            effective_at: None,
        }),
    )
}

fn post(amounts: Option<&[&str]>) -> Settlement {
    Settlement::Post {
        amounts: amounts.map(|a| a.iter().map(|x| x.parse().unwrap()).collect()),
    }
}

fn figures(state: &LedgerState, account: &str) -> (i128, i128, i128, i128) {
    let f = state
        .account_by_code(&account.parse().unwrap())
        .unwrap()
        .figures(&"USD".parse().unwrap());
    (f.posted, f.pending_debits, f.pending_credits, f.available())
}

#[test]
fn a_hold_reserves_and_a_post_moves() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    let id = hold(&mut state, "alice:cash", "bob:cash", "30.00", None).unwrap();
    assert_eq!(figures(&state, "alice:cash"), (10_000, 3_000, 0, 7_000));
    assert_eq!(figures(&state, "bob:cash"), (0, 0, 3_000, 0));
    // What is reserved cannot be spent twice.
    assert_eq!(
        hold(&mut state, "alice:cash", "bob:cash", "70.01", None),
        Err(Rejection::InsufficientFunds {
            account: "alice:cash".into(),
            asset: "USD".into(),
            balance: "70.00".into(),
            required: "70.01".into(),
            min_balance: None,
        })
    );
    assert_eq!(
        code(pay(&mut state, "alice:cash", "bob:cash", "70.01")),
        "insufficient_funds"
    );
    settle(&mut state, id, post(None), 0).unwrap();
    assert_eq!(figures(&state, "alice:cash"), (7_000, 0, 0, 7_000));
    assert_eq!(figures(&state, "bob:cash"), (3_000, 0, 0, 3_000));
    assert_eq!(
        settle(&mut state, id, post(None), 0),
        Err(Rejection::PendingAlreadyPosted {
            transaction_id: id.to_string()
        })
    );
    assert_eq!(
        code(settle(&mut state, id, Settlement::Void, 0)),
        "pending_already_posted"
    );
    state.check_conservation().unwrap();
}

#[test]
fn a_partial_post_releases_the_rest() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    let id = hold(&mut state, "alice:cash", "bob:cash", "30.00", None).unwrap();
    let before = state.clone();
    for (amounts, expected) in [
        (vec!["10", "1"], "validation_error"),
        (vec!["30.01"], "validation_error"),
        (vec!["-1"], "validation_error"),
        (vec!["0.001"], "amount_precision"),
        (vec!["0"], "validation_error"),
    ] {
        assert_eq!(
            code(settle(&mut state, id, post(Some(&amounts)), 0)),
            expected,
            "{amounts:?}"
        );
    }
    assert_eq!(state, before);
    let Event::PendingPosted(posted) = settle(&mut state, id, post(Some(&["10"])), 0).unwrap()
    else {
        panic!()
    };
    assert_eq!(posted.postings[0].amount.to_string(), "10.00");
    assert_eq!(posted.released[0].amount.to_string(), "30.00");
    assert_eq!(figures(&state, "alice:cash"), (9_000, 0, 0, 9_000));
    assert_eq!(figures(&state, "bob:cash"), (1_000, 0, 0, 1_000));
}

#[test]
fn a_void_releases_everything() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    let id = hold(&mut state, "alice:cash", "bob:cash", "30.00", None).unwrap();
    settle(&mut state, id, Settlement::Void, 0).unwrap();
    assert_eq!(figures(&state, "alice:cash"), (10_000, 0, 0, 10_000));
    assert_eq!(figures(&state, "bob:cash"), (0, 0, 0, 0));
    assert_eq!(
        code(settle(&mut state, id, Settlement::Void, 0)),
        "pending_already_voided"
    );
    assert_eq!(
        code(settle(&mut state, id, post(None), 0)),
        "pending_already_voided"
    );
    let unknown = TransactionId(Uuid::from_u128(42));
    assert_eq!(
        code(settle(&mut state, unknown, post(None), 0)),
        "pending_not_found"
    );
    // A posted transaction is not a hold.
    let Event::TransactionPosted(paid) = pay(&mut state, "alice:cash", "bob:cash", "1.00").unwrap()
    else {
        panic!()
    };
    assert_eq!(
        code(settle(&mut state, paid.transaction_id, Settlement::Void, 0)),
        "pending_not_found"
    );
}

#[test]
fn a_hold_expires_at_its_time() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    let id = hold(&mut state, "alice:cash", "bob:cash", "30.00", Some(at(10))).unwrap();
    assert_eq!(state.holds_due(at(9), 10), vec![]);
    assert_eq!(state.holds_due(at(10), 10), vec![id]);
    assert_eq!(
        code(settle(&mut state, id, Settlement::Expire, 9)),
        "validation_error"
    );
    // At its expiry time it can no longer be posted or voided, even before the expiry event.
    assert_eq!(
        code(settle(&mut state, id, post(None), 10)),
        "pending_expired"
    );
    assert_eq!(
        code(settle(&mut state, id, Settlement::Void, 11)),
        "pending_expired"
    );
    settle(&mut state, id, Settlement::Expire, 10).unwrap();
    assert_eq!(figures(&state, "alice:cash"), (10_000, 0, 0, 10_000));
    assert_eq!(state.holds_due(at(100), 10), vec![]);
    assert_eq!(
        code(settle(&mut state, id, post(None), 0)),
        "pending_expired"
    );
    assert_eq!(
        code(settle(&mut state, id, Settlement::Expire, 20)),
        "pending_expired"
    );
}

#[test]
fn holds_meet_statuses_and_bounds() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    // A maximum counts pending credits.
    limits(&mut state, "bob:cash", BoundChange::Keep, bound(Some("50"))).unwrap();
    hold(&mut state, "alice:cash", "bob:cash", "30.00", None).unwrap();
    assert_eq!(
        code(hold(&mut state, "alice:cash", "bob:cash", "20.01", None)),
        "balance_limit_exceeded"
    );
    let second = hold(&mut state, "alice:cash", "bob:cash", "20.00", None).unwrap();
    // Frozen: no new hold and no post, but a void releases.
    status(&mut state, "bob:cash", StatusChange::Freeze).unwrap();
    assert_eq!(
        code(hold(&mut state, "alice:cash", "bob:cash", "1.00", None)),
        "account_frozen"
    );
    assert_eq!(
        code(settle(&mut state, second, post(None), 0)),
        "account_frozen"
    );
    settle(&mut state, second, Settlement::Void, 0).unwrap();
    status(&mut state, "bob:cash", StatusChange::Unfreeze).unwrap();
    pay(&mut state, "alice:cash", "world:bank", "70.00").unwrap();
    // An account with a hold does not close, even with no posted balance.
    hold(&mut state, "world:bank", "broker:fees", "5.00", None).unwrap();
    assert_eq!(
        status(&mut state, "broker:fees", StatusChange::Close),
        Err(Rejection::AccountHasHolds {
            account: "broker:fees".into(),
            asset: "USD".into(),
            pending_debits: "0.00".into(),
            pending_credits: "5.00".into(),
        })
    );
    // Conditions read available (posted less pending debits) or posted.
    let spend = || vec![posting("alice:cash", "world:bank", "USD", "1.00")];
    let on = |figure, op, amount: &str| Guards {
        conditions: vec![Condition {
            account: "alice:cash".parse().unwrap(),
            asset: "USD".parse().unwrap(),
            balance: figure,
            op,
            amount: amount.parse().unwrap(),
        }],
        expected_versions: Vec::new(),
    };
    assert_eq!(
        code(run(
            &mut state,
            guarded(spend(), on(BalanceFigure::Available, Comparison::Gte, "30"))
        )),
        "condition_failed"
    );
    assert_eq!(
        code(run(
            &mut state,
            guarded(spend(), on(BalanceFigure::Posted, Comparison::Eq, "29.99"))
        )),
        "condition_failed"
    );
    run(
        &mut state,
        guarded(
            vec![posting("world:bank", "alice:cash", "USD", "1.00")],
            on(BalanceFigure::Available, Comparison::Eq, "0"),
        ),
    )
    .unwrap();
    state.check_conservation().unwrap();
}

#[test]
fn a_pending_trade_is_posted_whole_or_voided() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "2000.00").unwrap();
    run(
        &mut state,
        transaction(vec![posting("world:bank", "bob:cash", "AAPL", "10")]),
    )
    .unwrap();
    let Command::ExecuteTrade(mut c) = trade("alice:cash", "bob:cash", "10", "189.50", vec![])
    else {
        unreachable!()
    };
    c.pending = Some(HoldTerms { expires_at: None });
    let id = c.id;
    run(&mut state, Command::ExecuteTrade(c)).unwrap();
    assert_eq!(balance(&state, "bob:cash", "AAPL"), 10);
    assert_eq!(
        code(settle(&mut state, id, post(Some(&["5", "947.50"])), 0)),
        "validation_error"
    );
    settle(&mut state, id, post(Some(&["10", "1895.00"])), 0).unwrap();
    assert_eq!(balance(&state, "alice:cash", "AAPL"), 10);
    assert_eq!(balance(&state, "alice:cash", "USD"), 10_500);
}

// ------------------------------------------------------------ reversals

fn original(event: &Event) -> OriginalTransaction {
    let Event::TransactionPosted(t) = event else {
        panic!("{event:?}")
    };
    OriginalTransaction {
        id: t.transaction_id,
        postings: t.postings.clone(),
        is_reversal: t.reverses.is_some(),
        effective_at: chrono::DateTime::UNIX_EPOCH,
    }
}

fn reverse(
    state: &mut LedgerState,
    of: OriginalTransaction,
    force: bool,
) -> Result<Event, Rejection> {
    run(
        state,
        Command::ReverseTransaction(ReverseTransaction {
            id: TransactionId(Uuid::new_v4()),
            original: of,
            force,
            metadata: Metadata::default(),
            effective_at: None,
        }),
    )
}

#[test]
fn a_reversal_swaps_every_posting_once() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    let paid = run(
        &mut state,
        transaction(vec![
            posting("alice:cash", "bob:cash", "USD", "30.00"),
            posting("alice:cash", "broker:fees", "USD", "0.50"),
        ]),
    )
    .unwrap();
    let reversal = reverse(&mut state, original(&paid), false).unwrap();
    let Event::TransactionPosted(r) = &reversal else {
        panic!()
    };
    assert_eq!(r.kind, TransactionKind::Reversal);
    assert_eq!(r.reverses, Some(original(&paid).id));
    assert_eq!(r.postings[0].source.as_str(), "bob:cash");
    assert_eq!(r.postings[0].destination.as_str(), "alice:cash");
    assert_eq!(balance(&state, "alice:cash", "USD"), 10_000);
    assert_eq!(balance(&state, "broker:fees", "USD"), 0);
    assert_eq!(
        state.reversed_by(original(&paid).id),
        Some(r.transaction_id)
    );
    let before = state.clone();
    assert_eq!(
        reverse(&mut state, original(&paid), false),
        Err(Rejection::TransactionAlreadyReversed {
            transaction_id: original(&paid).id.to_string(),
            reversed_by: r.transaction_id.to_string(),
        })
    );
    assert_eq!(
        code(reverse(&mut state, original(&reversal), false)),
        "reversal_not_reversible"
    );
    assert_eq!(state, before);
}

#[test]
fn a_reversal_meets_the_balance_rules_unless_forced() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    let paid = pay(&mut state, "alice:cash", "bob:cash", "100.00").unwrap();
    pay(&mut state, "bob:cash", "world:bank", "60.00").unwrap();
    // Bob no longer holds what the reversal takes back.
    assert_eq!(
        code(reverse(&mut state, original(&paid), false)),
        "insufficient_funds"
    );
    // Forced, the bounds are skipped (and the event says so); statuses never are.
    status(&mut state, "bob:cash", StatusChange::Freeze).unwrap();
    assert_eq!(
        code(reverse(&mut state, original(&paid), true)),
        "account_frozen"
    );
    status(&mut state, "bob:cash", StatusChange::Unfreeze).unwrap();
    let Event::TransactionPosted(forced) = reverse(&mut state, original(&paid), true).unwrap()
    else {
        panic!()
    };
    assert!(forced.forced);
    assert_eq!(balance(&state, "bob:cash", "USD"), -6_000);
    state.check_conservation().unwrap();
}

#[test]
fn pending_and_settled_holds_reverse_by_what_moved() {
    let mut state = market();
    pay(&mut state, "world:bank", "alice:cash", "100.00").unwrap();
    let id = hold(&mut state, "alice:cash", "bob:cash", "30.00", None).unwrap();
    let pending = OriginalTransaction {
        id,
        postings: Vec::new(),
        is_reversal: false,
        effective_at: chrono::DateTime::UNIX_EPOCH,
    };
    assert_eq!(
        code(reverse(&mut state, pending.clone(), false)),
        "validation_error"
    );
    let Event::PendingPosted(posted) = settle(&mut state, id, post(Some(&["10"])), 0).unwrap()
    else {
        panic!()
    };
    reverse(
        &mut state,
        OriginalTransaction {
            postings: posted.postings,
            ..pending.clone()
        },
        false,
    )
    .unwrap();
    assert_eq!(balance(&state, "alice:cash", "USD"), 10_000);
    let voided = hold(&mut state, "alice:cash", "bob:cash", "5.00", None).unwrap();
    settle(&mut state, voided, Settlement::Void, 0).unwrap();
    let nothing = OriginalTransaction {
        id: voided,
        postings: Vec::new(),
        is_reversal: false,
        effective_at: chrono::DateTime::UNIX_EPOCH,
    };
    assert_eq!(
        code(reverse(&mut state, nothing, false)),
        "validation_error"
    );
}

#[test]
fn a_figure_that_does_not_fit_its_asset_is_named_in_the_refusal() {
    let mut state = market();
    let message = |result: Result<Event, Rejection>| result.expect_err("refused").to_string();
    assert_eq!(
        message(limits(
            &mut state,
            "alice:cash",
            bound(Some("-0.001")),
            BoundChange::Keep
        )),
        "min_balance -0.001 has more decimal places than USD allows (2)"
    );
    assert_eq!(
        message(limits(
            &mut state,
            "alice:cash",
            BoundChange::Keep,
            bound(Some("0.125"))
        )),
        "max_balance 0.125 has more decimal places than USD allows (2)"
    );
    let spend = vec![posting("world:bank", "alice:cash", "USD", "1.00")];
    let guards = Guards {
        conditions: vec![condition("alice:cash", Comparison::Gte, "0.001")],
        expected_versions: Vec::new(),
    };
    assert_eq!(
        message(run(&mut state, guarded(spend, guards))),
        "amount 0.001 has more decimal places than USD allows (2)"
    );
}
