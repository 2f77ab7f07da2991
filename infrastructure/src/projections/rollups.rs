//! Roll-up balances: per code prefix of whole segments and asset, the posted balance, pending
//! debits and pending credits summed over every account whose code has that prefix, and per
//! prefix the number of such accounts. The prefixes of `broker:alice:cash` are `` (the whole
//! ledger), `broker`, `broker:alice` and `broker:alice:cash`. Asynchronous: each event adds its
//! changes to the rows of its accounts' prefixes (the tables add up rather than replace), so a
//! read of any prefix is one row per asset, however many accounts are under it.

use domain::event::Posting;
use domain::{AccountCode, AssetCode, Event};
use rust_decimal::Decimal;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};

pub static ROLLUPS: Table = Table {
    name: "rollups",
    columns: &[
        col("prefix", SqlType::Text),
        col("asset", SqlType::Text),
        col("posted_units", SqlType::Numeric),
        col("pending_debits_units", SqlType::Numeric),
        col("pending_credits_units", SqlType::Numeric),
    ],
    on_conflict: OnConflict::Add { key_columns: 2 },
};

pub static ROLLUP_ACCOUNTS: Table = Table {
    name: "rollup_accounts",
    columns: &[
        col("parent", SqlType::Text),
        col("prefix", SqlType::Text),
        col("accounts", SqlType::Int8),
    ],
    on_conflict: OnConflict::Add { key_columns: 2 },
};

pub static PROJECTION: Projection = Projection {
    name: "rollups",
    tables: &[&ROLLUPS, &ROLLUP_ACCOUNTS],
    mode: Mode::Async(project),
    legs: false,
};

/// The prefixes an account's figures count toward: the empty one, then each of its segments'
/// ends, the whole code last.
pub fn prefixes(code: &str) -> impl Iterator<Item = &str> {
    let ends = code.match_indices(':').map(|(i, _)| i).chain([code.len()]);
    std::iter::once("").chain(ends.map(move |end| &code[..end]))
}

/// The prefix one segment shorter (`` for a top segment, and for `` itself).
pub fn parent(prefix: &str) -> &str {
    prefix.rfind(':').map_or("", |end| &prefix[..end])
}

/// Changes to an account's figures in one asset, in smallest units (whole numbers, so that a sum
/// reads the same however its terms are grouped): posted, pending debits, pending credits.
type Figures = [Decimal; 3];

/// One change to an account's figures in one asset.
type Change<'e> = (&'e AccountCode, &'e AssetCode, Figures);

fn project(applied: &Applied<'_>, out: &mut [TableRows]) {
    let [rollups, accounts] = out else {
        return;
    };
    if let Event::AccountOpened(opened) = applied.event {
        for prefix in prefixes(opened.code.as_str()) {
            accounts.push([parent(prefix).into(), prefix.into(), 1i64.into()]);
        }
    }
    for (account, asset, [posted, pending_debits, pending_credits]) in changes(applied.event) {
        for prefix in prefixes(account.as_str()) {
            rollups.push([
                prefix.into(),
                asset.as_str().into(),
                posted.into(),
                pending_debits.into(),
                pending_credits.into(),
            ]);
        }
    }
}

/// What the event does to each account's figures (docs/events.md): a posting moves its amount
/// from the source's balance to the destination's, a pending one reserves it (a pending debit of
/// the source, a pending credit of the destination), and a settlement releases reservations.
fn changes(event: &Event) -> Vec<Change<'_>> {
    /// The changes of one posting: `source` and `destination` name which figure takes the
    /// amount (0 posted, 1 pending debits, 2 pending credits) and its sign. An amount has
    /// exactly its asset's scale (docs/events.md), so its mantissa is its smallest units.
    fn both<'e>(
        changes: &mut Vec<Change<'e>>,
        p: &'e Posting,
        source: (usize, i128),
        destination: (usize, i128),
    ) {
        let figures = |(figure, sign): (usize, i128)| {
            let mut figures = [Decimal::ZERO; 3];
            figures[figure] = Decimal::from_i128_with_scale(sign * p.amount.mantissa(), 0);
            figures
        };
        changes.push((&p.source, &p.asset, figures(source)));
        changes.push((&p.destination, &p.asset, figures(destination)));
    }
    let (plus, minus) = (1, -1);
    let mut changes = Vec::new();
    for p in event.moved() {
        both(&mut changes, p, (0, minus), (0, plus));
    }
    let reserved = if event.is_pending() {
        event.postings()
    } else {
        &[]
    };
    for p in reserved {
        both(&mut changes, p, (1, plus), (2, plus));
    }
    for p in event.released() {
        both(&mut changes, p, (1, minus), (2, minus));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_counts_toward_the_ledger_each_of_its_segments_and_itself() {
        let all: Vec<&str> = prefixes("broker:alice:cash").collect();
        assert_eq!(all, ["", "broker", "broker:alice", "broker:alice:cash"]);
        assert_eq!(prefixes("bank").collect::<Vec<_>>(), ["", "bank"]);
        assert_eq!(parent("broker:alice:cash"), "broker:alice");
        assert_eq!(parent("broker"), "");
        assert_eq!(parent(""), "");
    }
}
