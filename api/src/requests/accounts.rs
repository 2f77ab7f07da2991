//! Opening an account, changing its status and setting its limits.

use chrono::{DateTime, Utc};
use domain::command::{
    BoundChange, ChangeAccountStatus, SetAccountLimits, SetBookingMethod, StatusChange,
};
use domain::values::SignedDecimal;
use domain::{
    AccountCode, AccountId, AccountRef, AssetCode, BookingMethod, Command, Metadata, OpenAccount,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::write::CommandRequest;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountRequest {
    /// Segments of `a-z 0-9 _ -` joined by `:`, at most 128 bytes.
    #[schema(value_type = String, example = "alice:cash")]
    pub code: AccountCode,
    /// Whether balances may go below zero (accounts that model the outside world).
    #[serde(default)]
    pub allow_negative: bool,
    /// A JSON object of at most 4 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// How its disposals close lots: `fifo` (the default), `lifo`, `hifo` or `average`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "fifo")]
    pub booking_method: Option<BookingMethod>,
}

impl CommandRequest for OpenAccountRequest {
    const ROUTE: &'static str = "POST /v1/accounts";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::OpenAccount(OpenAccount {
            booking_method: self.booking_method,
            id: AccountId(Uuid::now_v7()),
            code: self.code.clone(),
            allow_negative: self.allow_negative,
            metadata: self.metadata.clone(),
        }))
    }
}

/// An account's booking method from now on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingMethodRequest {
    /// `fifo`, `lifo`, `hifo` or `average`: how its later disposals close lots.
    #[schema(value_type = String, example = "hifo")]
    pub booking_method: BookingMethod,
    /// Why, for the record: a JSON object of at most 4 KiB, kept in the event.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

/// A change of booking method as submitted, with the account from the path.
#[derive(Debug, Serialize)]
pub struct BookingMethodCommand {
    pub account: AccountRef,
    #[serde(flatten)]
    pub request: BookingMethodRequest,
}

impl CommandRequest for BookingMethodCommand {
    const ROUTE: &'static str = "PUT /v1/accounts/{id_or_code}/booking-method";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::SetBookingMethod(SetBookingMethod {
            account: self.account.clone(),
            booking_method: self.request.booking_method,
            metadata: self.request.metadata.clone(),
        }))
    }
}

/// Freeze, unfreeze or close an account (the change is the route's).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountStatusRequest {
    /// Why, for the record: a JSON object of at most 4 KiB, kept in the event.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

/// A status change as submitted: the account and the change come from the path, so they are part
/// of the idempotency fingerprint.
#[derive(Debug, Serialize)]
pub struct AccountStatusCommand {
    pub account: AccountRef,
    pub change: StatusChange,
    #[serde(flatten)]
    pub request: AccountStatusRequest,
}

impl CommandRequest for AccountStatusCommand {
    const ROUTE: &'static str = "POST /v1/accounts/{id_or_code}/{action}";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::ChangeAccountStatus(ChangeAccountStatus {
            account: self.account.clone(),
            change: self.change,
            metadata: self.request.metadata.clone(),
        }))
    }
}

/// An account's bounds in one asset. An absent field keeps its bound; `null` removes it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountLimitsRequest {
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    /// The lowest balance allowed (a credit limit when negative); `null`: unbounded. Without one,
    /// the minimum is zero, or unbounded for an account opened with `allow_negative`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "-500.00")]
    pub min_balance: Option<Option<SignedDecimal>>,
    /// The highest balance allowed; `null`: unbounded (the default).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "10000.00")]
    pub max_balance: Option<Option<SignedDecimal>>,
}

/// A limits change as submitted, with the account from the path.
#[derive(Debug, Serialize)]
pub struct AccountLimitsCommand {
    pub account: AccountRef,
    #[serde(flatten)]
    pub request: AccountLimitsRequest,
}

impl CommandRequest for AccountLimitsCommand {
    const ROUTE: &'static str = "PATCH /v1/accounts/{id_or_code}/limits";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::SetAccountLimits(SetAccountLimits {
            account: self.account.clone(),
            asset: self.request.asset.clone(),
            min_balance: bound_change(self.request.min_balance),
            max_balance: bound_change(self.request.max_balance),
        }))
    }
}

/// A field that is present, even as `null`: `Some(None)`; an absent one stays `None` (default).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn bound_change(bound: Option<Option<SignedDecimal>>) -> BoundChange {
    match bound {
        None => BoundChange::Keep,
        Some(None) => BoundChange::Unbounded,
        Some(Some(value)) => BoundChange::To(value),
    }
}
