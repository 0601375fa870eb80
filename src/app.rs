//! The top floor: the router with its middleware, and serving with graceful shutdown.

use std::time::Duration;

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use tower_sessions::{
    Expiry, SessionManagerLayer,
    cookie::{SameSite, time::Duration as CookieDuration},
};

pub use crate::state::{AppState, Tuning};
use crate::{
    account, freshness, identity, mcp, mcp_auth, pages, repositories, search, signin, worker,
    workspaces,
};

/// A ready-to-serve application: connected, migrated, with its background tasks defined.
pub struct App {
    pub state: AppState,
}

impl App {
    /// Prepares the data dir, connects and migrates the database, builds the clients.
    pub async fn new(config: crate::config::Config, tuning: Tuning) -> anyhow::Result<App> {
        Ok(App {
            state: AppState::build(config, tuning).await?,
        })
    }

    /// The router with all middleware.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let sessions = SessionManagerLayer::new(state.sessions.clone())
            .with_name("codelayer_session")
            .with_http_only(true)
            // Lax, not Strict: the return from bitbucket.org is a cross-site navigation.
            .with_same_site(SameSite::Lax)
            .with_secure(state.config.is_https())
            .with_expiry(Expiry::OnInactivity(CookieDuration::days(7)));
        Router::new()
            .route("/", get(pages::home))
            .route("/account", get(account::page))
            .route("/account/tokens", post(account::create_form))
            .route("/account/tokens/{id}/revoke", post(account::revoke_form))
            .route("/account/grants/{id}/revoke", post(account::revoke_grant_form))
            .route(
                "/account/disconnect",
                get(account::confirm_disconnect).post(account::disconnect_form),
            )
            .route(
                "/api/v1/account/tokens",
                get(account::api_list).post(account::api_create),
            )
            .route("/api/v1/account/tokens/{id}", axum::routing::delete(account::api_revoke))
            .route("/api/v1/account/grants", get(account::api_grants))
            .route(
                "/api/v1/account/grants/{id}",
                axum::routing::delete(account::api_revoke_grant),
            )
            .route("/api/v1/account/disconnect", post(account::api_disconnect))
            .route("/static/app.css", get(pages::stylesheet))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/auth/login", get(signin::login))
            .route("/auth/callback", get(signin::callback))
            .route("/auth/logout", post(signin::logout))
            .route("/workspaces", get(workspaces::page))
            .route("/workspaces/refresh", post(workspaces::refresh_form))
            .route("/workspaces/{id}/link", post(workspaces::link_form))
            .route(
                "/workspaces/{id}/disconnect",
                get(workspaces::confirm_disconnect).post(workspaces::disconnect_form),
            )
            .route("/repositories", get(repositories::page))
            .route("/repositories/index", post(repositories::index_form))
            .route("/repositories/{id}/sync", post(repositories::sync_form))
            .route("/static/app.js", get(pages::script))
            .route("/static/code.js", get(pages::code_js))
            .route("/static/site.js", get(pages::site_js))
            .route("/static/vendor/highlight.min.js", get(pages::highlight_js))
            .route("/search", get(search::pages::page))
            .route("/search/help", get(pages::search_help))
            .route("/repos/{id}/blob/{*path}", get(search::pages::blob))
            .route("/api/v1/search", get(search::pages::api))
            .route("/api/v1/symbols", get(search::symbols::api))
            .route("/api/v1/repositories/index", post(repositories::api_index))
            .route("/api/v1/repositories/{id}/sync", post(repositories::api_sync))
            .route("/api/v1/workspaces", get(workspaces::api_list))
            .route("/api/v1/workspaces/refresh", post(workspaces::api_refresh))
            .route("/api/v1/workspaces/{id}/link", post(workspaces::api_link))
            .route("/api/v1/workspaces/{id}/disconnect", post(workspaces::api_disconnect))
            .route("/api/v1/repositories", get(repositories::api_list))
            .nest_service(
                "/mcp",
                tower::ServiceBuilder::new()
                    .layer(middleware::from_fn_with_state(state.clone(), mcp::authenticate))
                    .service(mcp::service(state.clone())),
            )
            .merge(mcp_auth::routes())
            .fallback(|| async { crate::error::AppError::NotFound })
            .layer(middleware::from_fn_with_state(state.clone(), identity::csrf_guard))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                identity::with_signed_in_header,
            ))
            .layer(sessions)
            .layer(middleware::map_response(security_headers))
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                // Path only: the callback's query string carries the OAuth code.
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }))
            .with_state(state)
    }

    /// Serves on `listener` until `shutdown` completes, with the background tasks running.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = self.router();
        let sessions = self.state.sessions.clone();
        let state = self.state.clone();
        let cleanup = tokio::spawn(async move {
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                if let Err(e) = tower_sessions::ExpiredDeletion::delete_expired(&sessions).await {
                    tracing::warn!(error = %e, "deleting expired sessions failed");
                }
                if let Err(e) = mcp_auth::grants::delete_expired(&state).await {
                    tracing::warn!(error = %e, "deleting expired MCP tokens failed");
                }
            }
        });
        repositories::resume_interrupted(&self.state).await?;
        if self.state.oauth.is_some() {
            signin::check_api_url(&self.state.config.api_url);
        }
        let workers = worker::start(&self.state, self.state.config.workers);
        let schedule = tokio::spawn(repositories::resync_on_schedule(self.state.clone()));
        let freshness = freshness::start(&self.state);
        tracing::info!(
            address = %listener.local_addr()?,
            public_url = %self.state.config.public_url,
            libgit2 = %libgit2_version(),
            "codelayer is listening"
        );
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        cleanup.abort();
        schedule.abort();
        for f in freshness {
            f.abort();
        }
        for w in workers {
            w.abort();
        }
        tracing::info!("codelayer stopped");
        Ok(())
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.db.is_ready().await {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
    }
}

/// Headers every response carries; a handler may set a stricter Referrer-Policy itself.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    response
}

/// The linked libgit2's version, logged at start-up (security fixes arrive there).
pub fn libgit2_version() -> String {
    let v = git2::Version::get();
    let (major, minor, patch) = v.libgit2_version();
    format!("{major}.{minor}.{patch}")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
