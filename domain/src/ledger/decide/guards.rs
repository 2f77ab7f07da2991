//! A money-moving command's preconditions: conditions on balances and expected versions, checked
//! against the state before the command.

use super::amount_units_signed;
use crate::command::{BalanceFigure, Comparison, Guards, CONDITIONS_MAX, EXPECTED_VERSIONS_MAX};
use crate::error::{ConditionFailure, Rejection};
use crate::ledger::LedgerState;
use crate::money;

impl LedgerState {
    /// Checks a command's conditions and expected versions against the state before it.
    pub(super) fn check_guards(&self, guards: &Guards) -> Result<(), Rejection> {
        if guards.conditions.len() > CONDITIONS_MAX
            || guards.expected_versions.len() > EXPECTED_VERSIONS_MAX
        {
            return Err(Rejection::validation(format!(
                "a command carries at most {CONDITIONS_MAX} conditions and {EXPECTED_VERSIONS_MAX} expected versions"
            )));
        }
        for expected in &guards.expected_versions {
            let account = self.resolve_account(&expected.account)?;
            if account.version != expected.version {
                return Err(Rejection::VersionMismatch {
                    account: account.code.to_string(),
                    expected: expected.version,
                    actual: account.version,
                });
            }
        }
        for (index, condition) in guards.conditions.iter().enumerate() {
            let account = self.resolve_account(&condition.account)?;
            let (asset, scale) = self.resolve_asset(&condition.asset)?;
            let amount = amount_units_signed(condition.amount.get(), asset, scale)?;
            // With no holds, available and posted are the same figure.
            let figures = account.figures(asset);
            let actual = match condition.balance {
                BalanceFigure::Available => figures.available(),
                BalanceFigure::Posted => figures.posted,
            };
            let holds = match condition.op {
                Comparison::Gte => actual >= amount,
                Comparison::Lte => actual <= amount,
                Comparison::Eq => actual == amount,
            };
            if !holds {
                return Err(Rejection::ConditionFailed(Box::new(ConditionFailure {
                    index,
                    account: account.code.to_string(),
                    asset: asset.to_string(),
                    figure: match condition.balance {
                        BalanceFigure::Available => "available",
                        BalanceFigure::Posted => "posted",
                    }
                    .to_owned(),
                    op: condition.op.as_str().to_owned(),
                    amount: money::to_decimal(amount, scale).to_string(),
                    actual: money::to_decimal(actual, scale).to_string(),
                })));
            }
        }
        Ok(())
    }
}
