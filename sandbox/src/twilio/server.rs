//! Accept loop serving the axum router over HTTP/1.1, one task per connection, so a handler can
//! close its own connection without answering (the drop faults).

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// Per-connection handle put into every request's extensions.
#[derive(Clone, Default)]
pub(crate) struct ConnCtx {
    close: Arc<Notify>,
}

impl ConnCtx {
    /// Closes the connection without a response; never returns (the request future is dropped
    /// together with the connection).
    pub async fn drop_connection(&self) -> ! {
        self.close.notify_one();
        std::future::pending().await
    }
}

/// Serves until `shutdown` changes or its sender is dropped.
pub(crate) async fn serve(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let ctx = ConnCtx::default();
        let close = ctx.close.clone();
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ctx.clone());
            app.clone().oneshot(req.map(Body::new))
        });
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            // Dropping `conn` closes the socket, whatever state the exchange is in.
            tokio::select! {
                _ = conn => {}
                _ = close.notified() => {}
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}
