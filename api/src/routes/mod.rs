//! The routes. Each module builds its part with `utoipa_axum`, so the OpenAPI document is made
//! from the very handlers that serve the requests: a route cannot be served and left undocumented.

mod accounts;
mod admin;
mod assets;
mod audit;
mod balances;
mod events;
mod ledger_transfers;
mod ledgers;
mod me;
mod ops;
mod periods;
mod positions;
mod prices;
mod schemas;
mod stream;
mod transactions;
mod webhooks;
pub mod write;

/// The batch request's parts, for tests that feed them arbitrary input.
pub use transactions::{BatchCommand, BatchRequest};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ledger",
        description = "An event-sourced financial transaction ledger. Amounts are decimal strings; \
every write needs an `Idempotency-Key` header and answers with the `position` of its event \
(`Ledger-Position` header); every read reports the position it reflects and accepts `min_position`. \
Errors are RFC 9457 problem documents with a stable `code`. Every `/v1` route needs \
`Authorization: Bearer <API key>` with the route's scope: `read` for GET, `write` for commands, \
`audit` for `/v1/audit`, `admin` for `/v1/admin` (API keys, webhook subscriptions), limits, forced reversals and closing or reopening periods (401 `unauthorized`, \
403 `forbidden`, 429 `too_many_auth_failures` after repeated failures from one address)."
    ),
    tags(
        (name = "ledgers"), (name = "assets"), (name = "accounts"), (name = "transactions"), (name = "trades"),
        (name = "events"), (name = "periods"), (name = "audit"), (name = "admin"), (name = "operations")
    ),
    components(schemas(crate::dry_run::DryRunView))
)]
struct ApiDoc;

fn openapi_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(assets::router())
        .merge(balances::router())
        .merge(accounts::router())
        .merge(transactions::router())
        .merge(events::router())
        .merge(ledgers::router())
        .merge(ledger_transfers::router())
        .merge(periods::router())
        .merge(positions::router())
        .merge(prices::router())
        .merge(schemas::router())
        .merge(stream::router())
        .merge(audit::router())
        .merge(admin::router())
        .merge(me::router())
        .merge(webhooks::router())
        .merge(ops::router())
}

/// Declares the API-key scheme, requires it on every `/v1` route, and documents the answers
/// every such route may give before its handler runs: 401, 403 and 429.
fn require_api_key(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `lk_` and 64 hexadecimal digits"))
                    .build(),
            ),
        );
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for operation in operations_mut(item) {
            let mut security = vec![SecurityRequirement::new("api_key", Vec::<String>::new())];
            // `/v1/me` also answers without a key (with no scopes): the empty requirement says
            // authentication is optional there.
            if path == crate::auth::WHOAMI_PATH {
                security.push(SecurityRequirement::default());
            }
            operation.security = Some(security);
            let responses = &mut operation.responses.responses;
            for (status, description) in [
                ("401", "unauthorized: no API key, or a malformed, unknown or revoked one"),
                ("403", "forbidden: the API key lacks the scope"),
                ("429", "too_many_auth_failures: too many failed authentications from this address (`Retry-After`)"),
            ] {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem(description).into());
            }
        }
    }
}

/// Every operation of a path, whatever its method.
fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = openapi_router().into_openapi();
    require_api_key(&mut doc);
    problems_as_problem_json(&mut doc);
    optional_action_bodies(&mut doc);
    dry_runs(&mut doc);
    ledger_scoped_paths(&mut doc);
    doc
}

/// The write routes, each of which takes `?dry_run=true` (see `crate::dry_run`).
const WRITE_PATHS: [(&str, &str); 12] = [
    ("post", "/v1/transactions"),
    ("post", "/v1/transfers"),
    ("post", "/v1/trades"),
    ("post", "/v1/transactions/batch"),
    ("post", "/v1/transactions/{id}/{action}"),
    ("post", "/v1/assets"),
    ("post", "/v1/accounts"),
    ("post", "/v1/accounts/{id_or_code}/{action}"),
    ("patch", "/v1/accounts/{id_or_code}/limits"),
    ("put", "/v1/accounts/{id_or_code}/booking-method"),
    ("post", "/v1/ledger-transfers"),
    ("post", "/v1/prices"),
];

/// Documents `?dry_run=true` on every write route, and its `200` answer (`DryRunView`; the batch
/// answers its own `BatchResponse`, which says when it is a dry run). The refusals are the real
/// write's, already documented.
fn dry_runs(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, Required, ResponseBuilder, Type};
    for (method, path) in WRITE_PATHS {
        let Some(item) = doc.paths.paths.get_mut(path) else {
            continue;
        };
        let operation = match method {
            "patch" => item.patch.as_mut(),
            "put" => item.put.as_mut(),
            _ => item.post.as_mut(),
        };
        let Some(operation) = operation else {
            continue;
        };
        let parameter = ParameterBuilder::new()
            .name("dry_run")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(
                "`true`: decide the write exactly as it would be decided now and answer what it \
                 would answer, with every touched account's balances before and after, but \
                 write nothing and use up no idempotency key. An accepted dry run is `200` \
                 without `Ledger-Position`; a refusal is the real write's problem document, \
                 marked `dry_run`.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::Boolean)))
            .build();
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(parameter);
        if path == "/v1/transactions/batch" {
            continue;
        }
        let response = ResponseBuilder::new()
            .description("A dry run (`?dry_run=true`) that would be accepted: nothing was written")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("DryRunView")))
                    .build(),
            )
            .build();
        operation
            .responses
            .responses
            .entry("200".to_owned())
            .or_insert_with(|| response.into());
    }
}

/// Every route of a book is also served under `/v1/ledgers/{ledger}` (see `books`): documented
/// there too, with the ledger as a path parameter, so that clients and Schemathesis see both.
fn ledger_scoped_paths(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    let scoped: Vec<(String, utoipa::openapi::PathItem)> = doc
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let rest = path.strip_prefix("/v1/")?;
            let first = rest.split('/').next()?;
            crate::books::BOOK_ROUTES
                .contains(&first)
                .then(|| (format!("/v1/ledgers/{{ledger}}/{rest}"), item.clone()))
        })
        .collect();
    for (path, mut item) in scoped {
        for operation in operations_mut(&mut item) {
            operation.operation_id = operation
                .operation_id
                .as_ref()
                .map(|id| format!("{id}_in_ledger"));
            let ledger = ParameterBuilder::new()
                .name("ledger")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The ledger's name; 404 `ledger_not_found` for one that does not exist or that the key may not use"))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[a-z0-9][a-z0-9_-]{0,62}$")),
                ))
                .example(Some(serde_json::json!("default")))
                .build();
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .insert(0, ledger);
            operation
                .responses
                .responses
                .entry("404".to_owned())
                .or_insert_with(|| {
                    utoipa::openapi::ResponseBuilder::new()
                        .description("ledger_not_found, or the route's own 404")
                        .content(
                            "application/problem+json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                                .build(),
                        )
                        .build()
                        .into()
                });
        }
        doc.paths.paths.insert(path, item);
    }
}

/// The routes whose handlers read their body with `ActionBody`, which takes an empty body as `{}`.
const ACTION_PATHS: [&str; 3] = [
    "/v1/transactions/{id}/{action}",
    "/v1/accounts/{id_or_code}/{action}",
    "/v1/trades/{id}/settle",
];

/// Says that the body of an action is optional. utoipa marks a body optional only when its type
/// is an `Option`, and then documents it as nullable, which would invite a `null` body: the
/// schema stays the request's, and only `required` changes.
fn optional_action_bodies(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::Required;
    for path in ACTION_PATHS {
        let body = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut())
            .and_then(|operation| operation.request_body.as_mut());
        if let Some(body) = body {
            body.required = Some(Required::False);
        }
    }
}

/// Errors are served as `application/problem+json` (RFC 9457); the route annotations name only
/// the `Problem` body, which utoipa documents as `application/json`. This says what is served,
/// for every route at once.
fn problems_as_problem_json(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    const PROBLEM: &str = "#/components/schemas/Problem";
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            for response in operation.responses.responses.values_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                let is_problem = response.content.get("application/json").is_some_and(
                    |c| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location == PROBLEM),
                );
                if let Some(content) = is_problem
                    .then(|| response.content.shift_remove("application/json"))
                    .flatten()
                {
                    response
                        .content
                        .insert("application/problem+json".to_owned(), content);
                }
            }
        }
    }
}

/// A page of `limit` views of `rows`, which were asked for with `limit + 1` so that one more
/// than the page says whether another follows; and the key of the last view when one does.
pub(crate) fn keyed_page<R, V: TryFrom<R, Error = ApiError>, K>(
    rows: Vec<R>,
    limit: i64,
    key: impl Fn(&V) -> K,
) -> Result<(Vec<V>, Option<K>), ApiError> {
    let more = rows.len() as i64 > limit;
    let items = rows
        .into_iter()
        .take(limit as usize)
        .map(V::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next = more.then(|| items.last().map(&key)).flatten();
    Ok((items, next))
}

/// Load shedding: at most `requests_in_flight_max` `/v1` requests are handled at once, so the
/// latency of those admitted stays bounded; the rest are refused at once with 503 `overloaded`
/// and `Retry-After`. Health checks and metrics are always answered.
async fn admit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    match state.requests().clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::Infrastructure(infrastructure::Error::Overloaded).into_response(),
    }
}

/// The application: every route, request metrics, and problem documents for unknown routes.
pub fn app(state: AppState) -> Router {
    let (router, _) = openapi_router().split_for_parts();
    router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // The JSON extractor enforces the configured limit itself; this turns off axum's default
        // so that there is one limit, not two.
        .layer(DefaultBodyLimit::disable())
        // Writes that reach a node which is not the writer go to the writer, once authenticated.
        .layer(axum::middleware::from_fn_with_state(
            state.books().clone(),
            crate::books::forward_writes,
        ))
        // Authentication runs inside admission: its lookups count against the bound on requests
        // in flight.
        .layer(axum::middleware::from_fn_with_state(
            state.auth().clone(),
            crate::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .layer(axum::middleware::from_fn_with_state(
            state.http_metrics().clone(),
            crate::http_metrics::track,
        ))
        .with_state(state)
}
