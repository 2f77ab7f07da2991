//! Defining an asset: once per code, with its scale fixed for good.

use crate::command::DefineAsset;
use crate::error::Rejection;
use crate::event::{AssetDefined, Event};
use crate::ledger::LedgerState;

impl LedgerState {
    pub(super) fn decide_define_asset(&self, c: &DefineAsset) -> Result<Event, Rejection> {
        if let Some(existing) = self.assets.scale(&c.code) {
            return Err(Rejection::DuplicateAsset {
                asset: c.code.to_string(),
                scale: existing.get(),
            });
        }
        Ok(Event::AssetDefined(AssetDefined {
            asset: c.code.clone(),
            scale: c.scale,
        }))
    }
}
