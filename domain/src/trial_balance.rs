//! The trial balance: every account's posted balance in every asset where it is not zero, as of
//! an effective time (and as known at a position), with the sum per asset, which is zero. A close
//! records its digest, and `docs/events.md` specifies the digest well enough to recompute it:
//!
//! SHA-256 over `ledger:trial-balance:v1\n`, then one line per row in order of account code,
//! then asset code (bytewise): `{account}\t{asset}\t{balance}\n`, the balance in the asset's
//! scale (`-12.50`), hex in lower case.

mod closes;

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::chain::to_hex_slice;
use crate::money;
use crate::values::{AccountCode, AssetCode, Scale};

pub use closes::{CloseChecked, CloseProblem, ClosesRecomputation, ClosesReport};

const DOMAIN: &[u8] = b"ledger:trial-balance:v1\n";

/// One account's balance in one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBalanceRow {
    pub account: AccountCode,
    pub asset: AssetCode,
    /// At the asset's scale.
    pub balance: Decimal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrialBalance {
    /// Ordered by account code, then asset code; no zero balance.
    rows: Vec<TrialBalanceRow>,
}

impl TrialBalance {
    /// The trial balance of balances in smallest units, by (account, asset): the zero ones left
    /// out, the rest in order.
    pub fn from_units(
        balances: impl IntoIterator<Item = ((AccountCode, AssetCode), (i128, Scale))>,
    ) -> Self {
        let ordered: BTreeMap<(String, String), TrialBalanceRow> = balances
            .into_iter()
            .filter(|(_, (units, _))| *units != 0)
            .map(|((account, asset), (units, scale))| {
                let key = (account.to_string(), asset.to_string());
                let balance = money::to_decimal(units, scale);
                (
                    key,
                    TrialBalanceRow {
                        account,
                        asset,
                        balance,
                    },
                )
            })
            .collect();
        Self {
            rows: ordered.into_values().collect(),
        }
    }

    pub fn rows(&self) -> &[TrialBalanceRow] {
        &self.rows
    }

    /// The sum per asset: zero for every asset of a sound ledger (asserted by the readers).
    pub fn totals(&self) -> BTreeMap<&AssetCode, Decimal> {
        let mut totals: BTreeMap<&AssetCode, Decimal> = BTreeMap::new();
        for row in &self.rows {
            *totals.entry(&row.asset).or_default() += row.balance;
        }
        totals
    }

    /// The digest a close records (see the module's notes).
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        for row in &self.rows {
            hasher.update(format!("{}\t{}\t{}\n", row.account, row.asset, row.balance));
        }
        to_hex_slice(&hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: &str, asset: &str, units: i128) -> ((AccountCode, AssetCode), (i128, Scale)) {
        (
            (account.parse().unwrap(), asset.parse().unwrap()),
            (units, 2u32.try_into().unwrap()),
        )
    }

    #[test]
    fn rows_are_ordered_without_zeros_and_the_digest_is_of_their_lines() {
        let tb = TrialBalance::from_units([
            row("world", "USD", -1250),
            row("alice", "USD", 1250),
            row("bob", "USD", 0),
        ]);
        let lines: Vec<String> = tb
            .rows()
            .iter()
            .map(|r| format!("{}\t{}\t{}", r.account, r.asset, r.balance))
            .collect();
        assert_eq!(lines, ["alice\tUSD\t12.50", "world\tUSD\t-12.50"]);
        let expected =
            Sha256::digest(b"ledger:trial-balance:v1\nalice\tUSD\t12.50\nworld\tUSD\t-12.50\n");
        assert_eq!(tb.digest(), to_hex_slice(&expected));
        assert!(tb.totals().values().all(|t| t.is_zero()));
        // The examples of docs/events.md ("The trial balance and its digest").
        assert_eq!(
            tb.digest(),
            "6c4186cf836740925f2a4411874f698ba7adb3a0b585c1cc4a01f92f31622634"
        );
        assert_eq!(
            TrialBalance::default().digest(),
            "722c6eee90b618e969bb68635430635f0be3a4efbe32bb7d482bf74092ccc5b9"
        );
    }
}
