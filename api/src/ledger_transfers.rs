//! The coordinator of transfers between ledgers: it runs the steps that
//! `infrastructure::ledger_transfers` records, through each ledger's own writer. The same `run`
//! serves a request and the recovery loop (`recover`), which finishes every transfer a crash left
//! open: each step's command has an idempotency key derived from the transfer and the step, so a
//! step run twice is applied once, and a hold is settled once whatever happens.
//!
//! Each ledger's writer may be on another node. A step is first looked up in its ledger's
//! idempotency records (what the writer answered, if it has); a step not taken yet is submitted
//! only by a node whose writer of that ledger is not standing by. So the node that writes ledger
//! `a` takes `a`'s steps and the one that writes `b` takes `b`'s, each node's recovery loop
//! carrying every transfer as far as its own ledgers allow, until one of them finishes it.

use std::sync::LazyLock;
use std::time::Duration;

use domain::command::{HoldTerms, SettlePending, Settlement};
use domain::{
    AccountCode, AccountId, AccountRef, AssetCode, Command, Metadata, OpenAccount, PositiveDecimal,
    PostTransaction, PostingInstruction, Rejection, TransactionId, TransactionKind,
};
use infrastructure::db::PgPool;
use infrastructure::ledger_transfers::{
    self as store, settlement_account, step_key, LedgerTransfer, State, StepOutcome as Step,
};
use infrastructure::{Origin, Outcome, WriteItem, WriterStatus};
use uuid::Uuid;

use crate::books::{Book, Books};
use crate::error::ApiError;

/// How often each node's recovery loop looks for transfers left open.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a transfer may sit before the recovery loops take it over from whoever started it
/// (a request still running it is not raced without need; racing is safe, every step being
/// idempotent).
const RECOVERY_GRACE: Duration = Duration::from_secs(2);
/// Transfers the recovery loop takes per round at most.
const RECOVERY_BATCH_MAX: i64 = 100;

/// A test hook: the step after which the process aborts, as a kill -9 there would end it
/// (`LEDGER_TEST_CRASH_AT`, for the crash tests; never set in production).
static CRASH_AT: LazyLock<Option<String>> =
    LazyLock::new(|| std::env::var("LEDGER_TEST_CRASH_AT").ok());

/// The steps, in order, as the crash hook names them.
pub const STEPS: [&str; 6] = [
    "recorded",
    "source_reserved",
    "destination_reserved",
    "decided",
    "source_settled",
    "destination_settled",
];

fn crash_point(step: &str) {
    if CRASH_AT.as_deref() == Some(step) {
        eprintln!("LEDGER_TEST_CRASH_AT={step}: aborting");
        std::process::abort();
    }
}

/// A command of the coordinator's own, under its step's key.
fn item(command: Command, key: String) -> WriteItem {
    WriteItem {
        command,
        fingerprint: key.as_bytes().to_vec(),
        idempotency_key: key,
    }
}

/// What one ledger's writer said to a step: applied (now or before), or refused. An error: not
/// known yet (the writer is on another node, away, busy or in doubt), so the transfer stays open
/// and is run again.
async fn submit(book: &Book, item: WriteItem, origin: &Origin) -> Result<Step, ApiError> {
    let primary = book.primary().unwrap_or(book.reads()).pool();
    if let Some(outcome) = store::step_outcome(primary, &item.idempotency_key).await? {
        return Ok(outcome);
    }
    if book.writer().status() == WriterStatus::Standby {
        return Err(infrastructure::Error::WriterUnavailable(
            "another node writes this ledger; its recovery loop takes this step",
        )
        .into());
    }
    let reply = book.writer().submit(item, origin.clone()).await?;
    Ok(match reply.outcome {
        Outcome::Accepted(_) => Step::Applied,
        Outcome::Rejected(rejection) => Step::Refused(rejection),
    })
}

/// Runs a transfer's remaining steps; its state after them. An error leaves it open, for a
/// retry or the recovery loop.
pub async fn run(
    books: &Books,
    registry: &PgPool,
    mut transfer: LedgerTransfer,
    origin: &Origin,
) -> Result<LedgerTransfer, ApiError> {
    let source = books
        .get(&transfer.request.source_ledger.parse().map_err(corrupt)?)
        .await?;
    let destination = books
        .get(
            &transfer
                .request
                .destination_ledger
                .parse()
                .map_err(corrupt)?,
        )
        .await?;
    if transfer.state == State::Reserving {
        crash_point("recorded");
        let refusal = reserve(&transfer, &source, &destination, origin).await?;
        crash_point("destination_reserved");
        let refusal = refusal.map(|(rejection, ledger)| {
            let problem = ApiError::Rejected(rejection).problem();
            (serde_json::to_string(&problem).unwrap_or_default(), ledger)
        });
        transfer = store::decide(
            registry,
            transfer.id,
            refusal.as_ref().map(|(p, l)| (p.as_str(), l.as_str())),
        )
        .await?;
        crash_point("decided");
    }
    if matches!(transfer.state, State::Posting | State::Voiding) {
        let post = transfer.state == State::Posting;
        settle(&transfer, &source, transfer.source_hold, post, origin).await?;
        crash_point("source_settled");
        settle(
            &transfer,
            &destination,
            transfer.destination_hold,
            post,
            origin,
        )
        .await?;
        crash_point("destination_settled");
        transfer = store::finish(registry, transfer.id).await?;
    }
    Ok(transfer)
}

fn corrupt(e: domain::ValueError) -> ApiError {
    infrastructure::Error::Corrupt(format!("ledger transfer: {e}")).into()
}

/// Opens the settlement accounts and reserves both holds, the destination only once the source
/// is reserved. The refusal that decides a void, with the ledger that refused; `None`: both
/// reserved.
async fn reserve(
    transfer: &LedgerTransfer,
    source: &Book,
    destination: &Book,
    origin: &Origin,
) -> Result<Option<(Rejection, String)>, ApiError> {
    let request = &transfer.request;
    let source_settlement = settlement_account(&request.destination_ledger);
    let destination_settlement = settlement_account(&request.source_ledger);
    open_settlement(source, &source_settlement, origin).await?;
    open_settlement(destination, &destination_settlement, origin).await?;
    let legs = [
        (
            source,
            transfer.source_hold,
            request.source.as_str(),
            source_settlement.as_str(),
        ),
        (
            destination,
            transfer.destination_hold,
            destination_settlement.as_str(),
            request.destination.as_str(),
        ),
    ];
    for (i, (book, hold, from, to)) in legs.into_iter().enumerate() {
        let command = hold_command(
            TransactionId(hold),
            request,
            from,
            to,
            hold_metadata(transfer)?,
        )?;
        let key = step_key(transfer.id, &format!("reserve-{}", book.name()));
        if let Step::Refused(rejection) = submit(book, item(command, key), origin).await? {
            return Ok(Some((rejection, book.name().to_string())));
        }
        if i == 0 {
            crash_point("source_reserved");
        }
    }
    Ok(None)
}

/// One side's hold of a transfer: `amount` of `asset` from `from` to `to`, reserved. It never
/// expires on its own: only the transfer's decision settles it.
fn hold_command(
    id: TransactionId,
    request: &store::Request,
    from: &str,
    to: &str,
    metadata: Metadata,
) -> Result<Command, ApiError> {
    Ok(Command::PostTransaction(PostTransaction {
        id,
        kind: TransactionKind::Transfer,
        postings: vec![PostingInstruction {
            cost: None,
            source: account(from)?,
            destination: account(to)?,
            asset: request.asset.parse::<AssetCode>().map_err(corrupt)?,
            amount: request.amount.parse::<PositiveDecimal>().map_err(corrupt)?,
        }],
        metadata,
        guards: Default::default(),
        pending: Some(HoldTerms { expires_at: None }),
        effective_at: None,
    }))
}

fn account(code: &str) -> Result<AccountRef, ApiError> {
    Ok(AccountRef::Code(
        code.parse::<AccountCode>().map_err(corrupt)?,
    ))
}

/// What each hold carries: the transfer's id, so that both sides pair up in the logs, and the
/// client's metadata.
fn hold_metadata(transfer: &LedgerTransfer) -> Result<Metadata, ApiError> {
    let text = format!(
        r#"{{"ledger_transfer":"{}","metadata":{}}}"#,
        transfer.id, transfer.request.metadata
    );
    Metadata::parse(&text).map_err(corrupt)
}

/// Opens the settlement account of a pair in one ledger if it is not there yet. It may go
/// negative: it is what the ledger owes to, or is owed by, the other.
async fn open_settlement(book: &Book, code: &str, origin: &Origin) -> Result<(), ApiError> {
    let command = Command::OpenAccount(OpenAccount {
        booking_method: None,
        id: AccountId(Uuid::now_v7()),
        code: code.parse::<AccountCode>().map_err(corrupt)?,
        allow_negative: true,
        metadata: Metadata::default(),
    });
    let key = format!("{}settlement:{code}", infrastructure::INTERNAL_KEY_PREFIX);
    match submit(book, item(command, key), origin).await? {
        Step::Applied | Step::Refused(Rejection::DuplicateAccount { .. }) => Ok(()),
        Step::Refused(other) => Err(ApiError::Rejected(other)),
    }
}

/// Posts or voids one hold as decided. A hold that is already so settled, or (for a void) that
/// was never made, is done. A post refused for a reason that may pass (a frozen account) leaves
/// the transfer open; each later attempt has a key of its own, since the refusal is stored under
/// the one before, and the hold itself is what makes a second post impossible.
async fn settle(
    transfer: &LedgerTransfer,
    book: &Book,
    hold: Uuid,
    post: bool,
    origin: &Origin,
) -> Result<(), ApiError> {
    let settlement = if post {
        Settlement::Post { amounts: None }
    } else {
        Settlement::Void
    };
    let command = |metadata| {
        Command::SettlePending(SettlePending {
            pending_id: TransactionId(hold),
            settlement: settlement.clone(),
            at: chrono::Utc::now(),
            metadata,
            effective_at: None,
        })
    };
    let step = if post { "post" } else { "void" };
    let mut attempt = 0u32;
    loop {
        let key = match attempt {
            0 => step_key(transfer.id, &format!("{step}-{}", book.name())),
            n => step_key(
                transfer.id,
                &format!("{step}-{}-{}-{n}", book.name(), Uuid::now_v7()),
            ),
        };
        let metadata = hold_metadata(transfer)?;
        match submit(book, item(command(metadata), key), origin).await? {
            Step::Applied => return Ok(()),
            Step::Refused(Rejection::PendingAlreadyPosted { .. }) if post => return Ok(()),
            Step::Refused(
                Rejection::PendingAlreadyVoided { .. } | Rejection::PendingNotFound { .. },
            ) if !post => return Ok(()),
            Step::Refused(rejection) if attempt == 0 => {
                // The first key's answer is stored: a new attempt needs a key of its own.
                tracing::warn!(transfer = %transfer.id, ledger = %book.name(), code = rejection.code(), "a ledger transfer's hold could not be settled as decided; retrying");
                attempt += 1;
            }
            Step::Refused(rejection) => {
                tracing::warn!(transfer = %transfer.id, ledger = %book.name(), code = rejection.code(), "a ledger transfer's hold is still not settled; the recovery loop retries");
                return Err(ApiError::Rejected(rejection));
            }
        }
    }
}

/// What a dry run of a transfer finds: refused by a ledger (the transfer would be voided), or
/// posted in both, with what each ledger's accounts would become.
pub enum DryRunOutcome {
    Refused(Rejection, String),
    Posted(Vec<(String, Vec<infrastructure::AccountChange>)>),
}

/// Dry-runs a transfer's steps in each ledger, source first, as `run` takes them: the settlement
/// account opened if it is not there, the hold, and its post. Nothing is recorded anywhere.
pub async fn dry_run(
    books: &Books,
    request: &store::Request,
    origin: &Origin,
) -> Result<DryRunOutcome, ApiError> {
    let source = books
        .get(&request.source_ledger.parse().map_err(corrupt)?)
        .await?;
    let destination = books
        .get(&request.destination_ledger.parse().map_err(corrupt)?)
        .await?;
    let source_settlement = settlement_account(&request.destination_ledger);
    let destination_settlement = settlement_account(&request.source_ledger);
    let sides = [
        (
            &source,
            source_settlement.as_str(),
            request.source.as_str(),
            source_settlement.as_str(),
        ),
        (
            &destination,
            destination_settlement.as_str(),
            destination_settlement.as_str(),
            request.destination.as_str(),
        ),
    ];
    let mut balances = Vec::new();
    for (book, settlement, from, to) in sides {
        let items = dry_run_items(request, settlement, from, to)?;
        let answer = book.writer().dry_run(items, false, origin.clone()).await?;
        let mut replies = answer.replies.into_iter().map(|r| r.map(|r| r.outcome));
        match replies.next() {
            Some(Ok(
                Outcome::Accepted(_) | Outcome::Rejected(Rejection::DuplicateAccount { .. }),
            )) => {}
            Some(Ok(Outcome::Rejected(other))) => return Err(ApiError::Rejected(other)),
            Some(Err(e)) => return Err(e.into()),
            None => return Err(infrastructure::Error::CommitFailed.into()),
        }
        for reply in replies {
            match reply? {
                Outcome::Accepted(_) => {}
                Outcome::Rejected(r) => {
                    return Ok(DryRunOutcome::Refused(r, book.name().to_string()))
                }
            }
        }
        balances.push((book.name().to_string(), answer.balances));
    }
    Ok(DryRunOutcome::Posted(balances))
}

/// One ledger's steps of a transfer, as `open_settlement`, `reserve` and `settle` submit them.
fn dry_run_items(
    request: &store::Request,
    settlement: &str,
    from: &str,
    to: &str,
) -> Result<Vec<WriteItem>, ApiError> {
    let hold = TransactionId(Uuid::now_v7());
    let metadata = Metadata::parse(&format!(
        r#"{{"ledger_transfer":"{}","metadata":{}}}"#,
        Uuid::nil(),
        request.metadata
    ))
    .map_err(corrupt)?;
    let open = Command::OpenAccount(OpenAccount {
        booking_method: None,
        id: AccountId(Uuid::now_v7()),
        code: settlement.parse::<AccountCode>().map_err(corrupt)?,
        allow_negative: true,
        metadata: Metadata::default(),
    });
    let reserve = hold_command(hold, request, from, to, metadata.clone())?;
    let post = Command::SettlePending(SettlePending {
        pending_id: hold,
        settlement: Settlement::Post { amounts: None },
        at: chrono::Utc::now(),
        metadata,
        effective_at: None,
    });
    let open_key = format!(
        "{}settlement:{settlement}",
        infrastructure::INTERNAL_KEY_PREFIX
    );
    let step = |name: &str| store::step_key(hold.0, name);
    Ok(vec![
        item(open, open_key),
        item(reserve, step("dry-run-reserve")),
        item(post, step("dry-run-post")),
    ])
}

/// The recovery loop, on every node: it carries every transfer left open for longer than
/// `RECOVERY_GRACE` as far as this node's writers allow (see the module's note). Runs until the
/// process ends.
pub async fn recover(books: Books) {
    loop {
        tokio::time::sleep(RECOVERY_INTERVAL).await;
        let older_than =
            chrono::Utc::now() - chrono::Duration::from_std(RECOVERY_GRACE).unwrap_or_default();
        let open = match store::open_before(books.registry(), older_than, RECOVERY_BATCH_MAX).await
        {
            Ok(open) => open,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look for open ledger transfers");
                continue;
            }
        };
        for transfer in open {
            let id = transfer.id;
            let origin = Origin {
                request_id: None,
                api_key_id: transfer.api_key_id,
            };
            match run(&books, books.registry(), transfer, &origin).await {
                Ok(done) if !done.state.is_open() => {
                    tracing::info!(transfer = %id, state = done.state.as_str(), "recovered a ledger transfer")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(transfer = %id, error = %e, "a ledger transfer is still open")
                }
            }
        }
    }
}
