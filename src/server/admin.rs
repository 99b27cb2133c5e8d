//! The admin API, for the master key only: create, list and revoke virtual keys
//! (`/admin/keys`) and define teams (`/admin/teams`). A new key is returned once;
//! only its hash is stored.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::body::JsonBody;
use super::state::AppState;
use super::PathParam;
use crate::api::ApiError;
use crate::billing::keys::{self, NewKey, NewTeam};
use crate::billing::ledger::{Ledger, LedgerError};

fn admin<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a Ledger, ApiError> {
    let runtime = state.runtime();
    let caller = state.authenticate(headers, &runtime)?;
    if !caller.admin {
        return Err(ApiError::Forbidden(
            "The admin API needs the master key.".into(),
        ));
    }
    state
        .billing
        .connected()
        .map(|b| &b.ledger)
        .ok_or_else(|| ApiError::Unavailable {
            message: "the ledger is not connected".into(),
            retry_after: None,
        })
}

fn store_error(e: LedgerError) -> ApiError {
    match e {
        LedgerError::Invalid(m) => ApiError::bad_request(m),
        other => {
            tracing::warn!("Key store failed: {other}");
            ApiError::Unavailable {
                message: "the key store could not answer; try again".into(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            }
        }
    }
}

async fn refreshed(state: &AppState, ledger: &Ledger) -> Result<(), ApiError> {
    state
        .billing
        .keys
        .refresh(ledger)
        .await
        .map_err(store_error)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))
}

/// `POST /admin/keys`: the response carries the key, once.
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = async {
        let ledger = admin(&state, &headers)?;
        let settings: NewKey = parse(&body)?;
        let (id, key) =
            keys::create_for(&state.runtime().config, ledger, &settings, state.now_ms())
                .await
                .map_err(store_error)?;
        refreshed(&state, ledger).await?;
        Ok::<_, ApiError>(
            (
                StatusCode::CREATED,
                Json(json!({"id": id, "key": key, "settings": settings})),
            )
                .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /admin/keys`: every key's settings, never the key.
pub async fn list_keys(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let result = async {
        let ledger = admin(&state, &headers)?;
        let list = keys::list(ledger).await.map_err(store_error)?;
        Ok::<_, ApiError>(Json(json!({"keys": list})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /admin/keys/{id}`: revokes at once on this replica, within the refresh period elsewhere.
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathParam(id): PathParam,
) -> Response {
    let result = async {
        let ledger = admin(&state, &headers)?;
        if !keys::revoke(ledger, &id).await.map_err(store_error)? {
            return Err(ApiError::NotFound {
                message: format!("No key `{id}`."),
                param: None,
                code: Some("key_not_found"),
            });
        }
        refreshed(&state, ledger).await?;
        Ok(Json(json!({"id": id, "revoked": true})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /admin/teams`: creates or replaces a team's limits.
pub async fn upsert_team(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Response {
    let result = async {
        let ledger = admin(&state, &headers)?;
        let team: NewTeam = parse(&body)?;
        keys::upsert_team(ledger, &team, state.now_ms())
            .await
            .map_err(store_error)?;
        refreshed(&state, ledger).await?;
        Ok::<_, ApiError>((StatusCode::CREATED, Json(json!({"team": team}))).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /admin/teams`.
pub async fn list_teams(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let result = async {
        let ledger = admin(&state, &headers)?;
        let teams = keys::list_teams(ledger).await.map_err(store_error)?;
        Ok::<_, ApiError>(Json(json!({"teams": teams})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `DELETE /admin/teams/{name}`.
pub async fn delete_team(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    PathParam(name): PathParam,
) -> Response {
    let result = async {
        let ledger = admin(&state, &headers)?;
        if !keys::delete_team(ledger, &name)
            .await
            .map_err(store_error)?
        {
            return Err(ApiError::NotFound {
                message: format!("No team `{name}`."),
                param: None,
                code: Some("team_not_found"),
            });
        }
        refreshed(&state, ledger).await?;
        Ok(Json(json!({"name": name, "deleted": true})).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
