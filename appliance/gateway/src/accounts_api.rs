//! Staff account management for operators (`vbank accounts …`) on the gateway's admin listener, for the operator
//! certificate only. Answers never carry a password hash.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vbank_accounts::{Account, AccountError, Accounts, Role};
use vbank_config::Service;
use vbank_tls::AccessPolicy;
use zeroize::Zeroizing;

fn shown(a: &Account) -> Value {
    json!({"name": a.name, "role": a.role, "businesses": a.businesses, "disabled": a.disabled,
           "locked_until": a.locked_until, "failures": a.failures})
}

fn answer(r: Result<Account, AccountError>) -> Response {
    match r {
        Ok(a) => Json(shown(&a)).into_response(),
        Err(e) => {
            let status = match e {
                AccountError::Exists(_) => StatusCode::CONFLICT,
                AccountError::NotFound(_) => StatusCode::NOT_FOUND,
                AccountError::Policy(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, Json(json!({"error": e.to_string()}))).into_response()
        }
    }
}

async fn list(State(a): State<Accounts>) -> Response {
    match a.list().await {
        Ok(all) => Json(json!({"accounts": all.iter().map(shown).collect::<Vec<_>>()})).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

#[derive(Deserialize)]
struct CreateIn {
    name: String,
    role: String,
    #[serde(default)]
    businesses: Vec<String>,
    password: String,
}

async fn create(State(a): State<Accounts>, Json(r): Json<CreateIn>) -> Response {
    let Some(role) = Role::from_name(&r.role) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "role: teller or supervisor"}))).into_response();
    };
    let log_name = r.name.clone();
    let out = a.create(&r.name, role, r.businesses.into_iter().collect(), Zeroizing::new(r.password)).await;
    if out.is_ok() {
        log::info!("account {log_name} created ({})", r.role);
    }
    answer(out)
}

#[derive(Deserialize)]
struct ChangeIn {
    #[serde(default)]
    businesses: Option<Vec<String>>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    unlock: bool,
    #[serde(default)]
    password: Option<String>,
}

async fn change(State(a): State<Accounts>, Path(name): Path<String>, Json(r): Json<ChangeIn>) -> Response {
    let mut last =
        a.list().await.map_err(|e| e.to_string()).and_then(|all| {
            all.into_iter().find(|x| x.name == name).ok_or_else(|| format!("no account named {name:?}"))
        });
    if let Err(e) = &last {
        return (StatusCode::NOT_FOUND, Json(json!({"error": e}))).into_response();
    }
    if let Some(b) = r.businesses {
        last = Ok(match a.permit(&name, b.into_iter().collect()).await {
            Ok(x) => x,
            Err(e) => return answer(Err(e)),
        });
    }
    if let Some(d) = r.disabled {
        last = Ok(match a.set_disabled(&name, d).await {
            Ok(x) => x,
            Err(e) => return answer(Err(e)),
        });
    }
    if r.unlock {
        last = Ok(match a.unlock(&name).await {
            Ok(x) => x,
            Err(e) => return answer(Err(e)),
        });
    }
    if let Some(p) = r.password {
        last = Ok(match a.set_password(&name, Zeroizing::new(p)).await {
            Ok(x) => x,
            Err(e) => return answer(Err(e)),
        });
    }
    log::info!("account {name} changed");
    Json(shown(&last.expect("checked above"))).into_response()
}

/// `/v1/accounts` for the operator certificate.
pub fn router(accounts: Accounts) -> Router {
    let policy = Arc::new(AccessPolicy::new().allow("/v1/accounts", &[Service::Cli]));
    Router::new()
        .route("/v1/accounts", axum::routing::get(list).post(create))
        .route("/v1/accounts/{name}", axum::routing::post(change))
        .layer(axum::middleware::from_fn_with_state(policy, vbank_service::require_peer))
        .with_state(accounts)
}
