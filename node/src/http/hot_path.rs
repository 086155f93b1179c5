//! The hot route, `GET /api/{module}/{input}` with plain path segments and no
//! query, dispatched before axum's router: matching the route, decoding and
//! extracting its parameters took a cached call a fifth of its instructions
//! (`scripts/bench-http-instructions`). Everything else goes through the
//! router, which gives the same answers (the tests compare both) and every
//! error. A layer added to the router does not see hot calls: add it here too.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use futures::future::Either;
use nebula_protocol::LimitOverrides;
use tower_service::Service;

use super::calls::{Calls, IfNoneMatch};

/// The node's HTTP service: the hot route, then the router.
#[derive(Clone)]
pub struct HotPath {
    calls: Calls,
    router: Router,
}

impl HotPath {
    pub fn new(calls: Calls, router: Router) -> Self {
        HotPath { calls, router }
    }
}

type HotCall = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<Request> for HotPath {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<HotCall, <Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let Some((module, input)) = plain_call(&request) else {
            return Either::Right(self.router.call(request));
        };
        let (module, input) = (module.to_owned(), input.as_bytes().to_vec());
        let if_none_match = IfNoneMatch::of(request.headers());
        let calls = self.calls.clone();
        Either::Left(Box::pin(async move {
            Ok(calls.answer(&module, input, &LimitOverrides::default(), &if_none_match).await)
        }))
    }
}

/// `(module, input)` of a `GET /api/{module}/{input}` the router would hand
/// over unchanged: two non-empty segments without `%` escapes, no query.
fn plain_call(request: &Request) -> Option<(&str, &str)> {
    if request.method() != Method::GET || request.uri().query().is_some() {
        return None;
    }
    let (module, input) = request.uri().path().strip_prefix("/api/")?.split_once('/')?;
    let plain = |segment: &str| !segment.is_empty() && !segment.contains(['/', '%']);
    (plain(module) && plain(input)).then_some((module, input))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Request {
        Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn only_plain_calls_skip_the_router() {
        assert_eq!(plain_call(&get("/api/fibonacci/90")), Some(("fibonacci", "90")));
        assert_eq!(plain_call(&get("http://node:8080/api/3f2a/x-y.z")), Some(("3f2a", "x-y.z")));
        for routed in [
            "/api/fibonacci",
            "/api/fibonacci/",
            "/api//90",
            "/api/f/9/0",
            "/api/f/%39",
            "/api/f/9?fuel=1",
            "/",
            "/apix/f/9",
        ] {
            assert_eq!(plain_call(&get(routed)), None, "{routed}");
        }
        let post = Request::builder().method(Method::POST).uri("/api/f/9").body(axum::body::Body::empty()).unwrap();
        assert_eq!(plain_call(&post), None);
    }
}
