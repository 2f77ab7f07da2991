//! The decision rules, one by one, without a database.

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
        id: TransactionId(Uuid::new_v4()),
        buyer: buyer.parse().unwrap(),
        seller: seller.parse().unwrap(),
        instrument: "AAPL".parse().unwrap(),
        quantity: quantity.parse().unwrap(),
        price: price.parse().unwrap(),
        currency: "USD".parse().unwrap(),
        fees,
        metadata: Metadata::default(),
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
        id: AccountId(Uuid::new_v4()),
        code: "alice:cash".parse().unwrap(),
        allow_negative: false,
        metadata: Metadata::default(),
    }));
    assert_eq!(duplicate_code.unwrap_err().code(), "duplicate_account");
    let id = open(&mut state, "carol:cash", false);
    let duplicate_id = state.decide(&Command::OpenAccount(OpenAccount {
        id,
        code: "dave:cash".parse().unwrap(),
        allow_negative: false,
        metadata: Metadata::default(),
    }));
    assert_eq!(duplicate_id.unwrap_err().code(), "duplicate_account");
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
        Event::decode(event.event_type(), event.schema_version(), event.encode()).unwrap();
    assert_eq!(decoded, event);
    assert!(Event::decode(event.event_type(), 99, event.encode()).is_err());
    assert!(Event::decode("Nonsense", 1, event.encode()).is_err());
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
