//! One error type for every handler, mapped to a status and a human sentence in one place:
//! an HTML page for browsers, `{error: {code, message}}` for the JSON API.

use askama::Template;
use axum::{
    Json,
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde_json::json;

/// What went wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("sign in first")]
    SignedOut,
    /// Signed out on the way to a page: after sign-in the person lands on it.
    #[error("sign in first")]
    SignedOutAt(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    /// A failed sign-in: status, headline and explanation for the page.
    #[error("{title}: {message}")]
    SignIn {
        status: StatusCode,
        title: String,
        message: String,
    },
    #[error("{0}")]
    Unavailable(String),
    /// Too much work in flight: the client should try again shortly.
    #[error("{0}")]
    Busy(String),
    /// Anything unexpected: logged in full, shown as a generic sentence.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> AppError {
        AppError::Internal(format!("database: {e}"))
    }
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::SignedOut | AppError::SignedOutAt(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::SignIn { status, .. } => *status,
            AppError::Unavailable(_) => StatusCode::BAD_GATEWAY,
            AppError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AppError::NotFound => "not_found",
            AppError::SignedOut | AppError::SignedOutAt(_) => "unauthenticated",
            AppError::Forbidden(_) => "forbidden",
            AppError::BadRequest(_) => "bad_request",
            AppError::SignIn { .. } => "sign_in_failed",
            AppError::Unavailable(_) => "bitbucket_unavailable",
            AppError::Busy(_) => "busy",
            AppError::Internal(_) => "internal",
        }
    }

    /// The sentence a user sees; internal details stay in the log.
    fn public_message(&self) -> String {
        match self {
            AppError::NotFound => "There is nothing here, or it is not yours.".into(),
            AppError::SignedOut | AppError::SignedOutAt(_) => {
                "Sign in with Bitbucket first.".into()
            }
            AppError::SignIn { message, .. } => message.clone(),
            AppError::Internal(_) => {
                "Something went wrong on our side. It has been logged; please try again.".into()
            }
            other => other.to_string(),
        }
    }

    fn log(&self) {
        if let AppError::Internal(detail) = self {
            tracing::error!(%detail, "request failed");
        }
    }
}

#[derive(Clone, Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub(crate) user: Option<crate::ids::CurrentUser>,
    title: String,
    message: String,
    retry: Option<&'static str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        match &self {
            AppError::SignedOut => return Redirect::to("/").into_response(),
            AppError::SignedOutAt(next) => {
                let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
                return Redirect::to(&format!("/?next={next}")).into_response();
            }
            _ => {}
        }
        let (title, retry) = match &self {
            AppError::SignIn { title, .. } => (title.clone(), Some("/auth/login")),
            AppError::NotFound => ("Not found".to_owned(), None),
            AppError::Unavailable(_) => ("Bitbucket could not be reached".to_owned(), None),
            AppError::BadRequest(_) => ("That did not work".to_owned(), None),
            AppError::Forbidden(_) => ("Not allowed".to_owned(), None),
            AppError::Busy(_) => ("Busy".to_owned(), None),
            _ => ("Something went wrong".to_owned(), None),
        };
        let page = ErrorPage {
            user: None,
            title,
            message: self.public_message(),
            retry,
        };
        let body = page
            .render()
            .unwrap_or_else(|_| "Something went wrong.".to_owned());
        let mut response = (self.status(), Html(body)).into_response();
        // Kept so `with_signed_in_header` can render it again with the user's header.
        response.extensions_mut().insert(page);
        response
    }
}

/// The same errors for the JSON API.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> ApiError {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.log();
        let body = json!({"error": {"code": self.0.code(), "message": self.0.public_message()}});
        (self.0.status(), Json(body)).into_response()
    }
}
