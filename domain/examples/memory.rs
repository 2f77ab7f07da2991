//! How many bytes of heap the ledger's state keeps per account: opens N accounts (codes like
//! `user:000123:cash`, as the benchmark's `--accounts` does), gives each a posted balance in one
//! asset, and prints the live heap bytes per account as JSON on stdout.
//!
//! ```text
//! cargo run -p domain --example memory -- 1000000            # decide + apply, as the writer does
//! cargo run -p domain --example memory -- 1000000 restore    # restore_*, as the writer starts
//! ```
//!
//! Live bytes are what the program asked the allocator for and has not given back, counted by a
//! `#[global_allocator]` around the system's; the allocator's own overhead (and so the resident
//! size) is a little more, which `rss_bytes_per_account` shows from `/proc/self/status` where
//! there is one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::{
    AccountCode, AccountId, AssetCode, Command, DefineAsset, LedgerState, Metadata, OpenAccount,
    PostTransaction, PostingInstruction, TransactionId, TransactionKind,
};
use uuid::Uuid;

/// The system's allocator, counting the bytes and the blocks that are live (`alloc_zeroed` is the
/// default one, through `alloc`).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ASSET: &str = "USD";
const WORLD: &str = "bench:world";

fn code(i: usize) -> Result<AccountCode, String> {
    format!("user:{i:06}:cash")
        .parse()
        .map_err(|e| format!("{e}"))
}

fn id(i: usize) -> AccountId {
    AccountId(Uuid::from_u128(
        0x5eed_0000_0000_0000_0000_0000_0000_0000 + i as u128,
    ))
}

/// Opens the accounts and funds them by deciding and applying commands, as the writer does.
fn by_commands(state: &mut LedgerState, n: usize) -> Result<(), String> {
    let asset: AssetCode = ASSET.parse().map_err(|e| format!("{e}"))?;
    let world: AccountCode = WORLD.parse().map_err(|e| format!("{e}"))?;
    let mut run = |command: Command| -> Result<(), String> {
        let event = state.decide(&command).map_err(|e| format!("{e}"))?;
        state.apply(&event).map(drop).map_err(|e| e.0)
    };
    run(Command::DefineAsset(DefineAsset {
        code: asset.clone(),
        scale: 2u32.try_into().map_err(|e| format!("{e}"))?,
    }))?;
    let open = |id, code, allow_negative| {
        Command::OpenAccount(OpenAccount {
            booking_method: None,
            id,
            code,
            allow_negative,
            metadata: Metadata::default(),
        })
    };
    run(open(id(n), world.clone(), true))?;
    for i in 0..n {
        run(open(id(i), code(i)?, false))?;
        run(Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::from_u128(i as u128 + 1)),
            kind: TransactionKind::Transaction,
            postings: vec![PostingInstruction {
                cost: None,
                source: domain::AccountRef::Code(world.clone()),
                destination: domain::AccountRef::Code(code(i)?),
                asset: asset.clone(),
                amount: "1.00".parse().map_err(|e| format!("{e}"))?,
            }],
            metadata: Metadata::default(),
            guards: Default::default(),
            pending: None,
            effective_at: None,
        }))?;
    }
    Ok(())
}

/// Restores the accounts and their balances, as the writer does when it starts.
fn by_restore(state: &mut LedgerState, n: usize) -> Result<(), String> {
    let asset: AssetCode = ASSET.parse().map_err(|e| format!("{e}"))?;
    let world: AccountCode = WORLD.parse().map_err(|e| format!("{e}"))?;
    let scale = 2u32.try_into().map_err(|e| format!("{e}"))?;
    state.restore_asset(asset.clone(), scale).map_err(|e| e.0)?;
    let open = domain::values::AccountStatus::Open;
    state
        .restore_account(id(n), world, true, open, 2)
        .map_err(|e| e.0)?;
    for i in 0..n {
        state
            .restore_account(id(i), code(i)?, false, open, 3 + i as i64)
            .map_err(|e| e.0)?;
        state.restore_balance(id(i), &asset, 100).map_err(|e| e.0)?;
    }
    let total = -100 * i128::try_from(n).map_err(|e| format!("{e}"))?;
    state
        .restore_balance(id(n), &asset, total)
        .map_err(|e| e.0)?;
    state.check_conservation().map_err(|e| e.0)
}

/// The resident size in bytes, where `/proc/self/status` tells it.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next().map(|a| a.replace('_', "").parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: memory [ACCOUNTS] [commands|restore]: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = args.next().unwrap_or_else(|| "commands".to_owned());
    let (bytes_before, blocks_before) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
    );
    let rss_before = resident_bytes();
    let mut state = LedgerState::new();
    let built = match path.as_str() {
        "commands" => by_commands(&mut state, n),
        "restore" => by_restore(&mut state, n),
        other => Err(format!("unknown path {other}: commands or restore")),
    };
    if let Err(e) = built {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - bytes_before;
    let blocks = LIVE_BLOCKS.load(Ordering::Relaxed) - blocks_before;
    let rss = resident_bytes()
        .zip(rss_before)
        .map(|(after, before)| after.saturating_sub(before));
    let accounts = state.account_count();
    let per_account = |x: f64| (x / accounts as f64 * 10.0).round() / 10.0;
    println!(
        "{}",
        serde_json::json!({
            "path": path,
            "accounts": accounts,
            "live_heap_bytes": bytes,
            "heap_bytes_per_account": per_account(bytes as f64),
            "heap_blocks_per_account": per_account(blocks as f64),
            "rss_bytes_per_account": rss.map(|r| per_account(r as f64)),
        })
    );
    drop(state);
    ExitCode::SUCCESS
}
