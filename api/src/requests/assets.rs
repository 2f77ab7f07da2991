//! Defining an asset.

use chrono::{DateTime, Utc};
use domain::{AssetCode, Command, DefineAsset, Scale};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::write::CommandRequest;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineAssetRequest {
    /// 1 to 16 of `A-Z 0-9 _`.
    #[schema(value_type = String, example = "USD")]
    pub code: AssetCode,
    /// Decimal places, 0 to 18.
    #[schema(value_type = u32, minimum = 0, maximum = 18, example = 2)]
    pub scale: Scale,
}

impl CommandRequest for DefineAssetRequest {
    const ROUTE: &'static str = "POST /v1/assets";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::DefineAsset(DefineAsset {
            code: self.code.clone(),
            scale: self.scale,
        }))
    }
}
