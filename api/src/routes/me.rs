//! Who is calling: the key behind the request and what it may do. Any valid key may ask, so a
//! client such as the console can offer only what the key's scopes allow.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::routes::admin::{KeyView, ScopeName};
use crate::state::AppState;
use infrastructure::api_keys::Scope;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// `api_key` (then a request without one gets no scopes: sign in), or `none` on a server
    /// started with `--insecure-no-auth`.
    pub authentication: String,
    /// The key, when there is one (never its secret).
    pub key: Option<KeyView>,
    /// What the caller may do: the key's scopes, with those `admin` implies (every scope
    /// without authentication).
    pub scopes: Vec<ScopeName>,
}

/// The caller's key and what it may do: any valid key may ask, whatever its scopes. Without an
/// `Authorization` header it answers with no key and no scopes (and `authentication` says
/// whether a key is needed); a wrong key is a 401 as everywhere.
#[utoipa::path(get, path = "/v1/me", tag = "admin", responses((status = 200, body = MeView)))]
async fn me(caller: Caller) -> Json<MeView> {
    let scopes = Scope::ALL
        .into_iter()
        .filter(|&s| caller.allows(s))
        .map(ScopeName::from)
        .collect();
    let (authentication, key) = match caller {
        Caller::Anyone => ("none", None),
        Caller::Nobody => ("api_key", None),
        Caller::Key(key) => ("api_key", Some(KeyView::from(key))),
    };
    Json(MeView {
        authentication: authentication.to_owned(),
        key,
        scopes,
    })
}
