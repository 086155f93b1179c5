//! The admin token: when a node has one, changing what it serves (deploys,
//! name changes) needs `Authorization: Bearer TOKEN`. Calls and reads never do:
//! anyone who can reach the node may call its pure functions.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Shortest token a node accepts: guessing one must be hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

/// The 401 to send, unless no token is configured or the request carries it.
pub fn refusal(token: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let token = token?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant time, so the comparison leaks nothing about how much matched.
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        return None;
    }
    let body = Json(serde_json::json!({
        "error": "unauthorized",
        "message": "this node needs its admin token to deploy or change names: \
                    send `Authorization: Bearer TOKEN` (the CLI reads NEBULA_TOKEN)",
    }));
    let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_bearer_token_passes_when_one_is_set() {
        let token = Some("0123456789abcdef");
        assert!(refusal(None, &HeaderMap::new()).is_none(), "no token configured: open");
        assert!(refusal(token, &with("Bearer 0123456789abcdef")).is_none());
        for wrong in ["", "Bearer ", "Bearer 0123456789abcde", "Bearer 0123456789abcdefX", "0123456789abcdef"] {
            let refused = refusal(token, &with(wrong)).unwrap();
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
            assert_eq!(refused.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        assert!(refusal(token, &HeaderMap::new()).is_some(), "no header at all");
    }
}
