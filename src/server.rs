//! Build the actix-web app around an engine factory and run it: request ids and access logs,
//! CORS, the engine watchdog, graceful shutdown on SIGTERM/ctrl-c.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::{ServerHandle, Service};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer};
use futures_util::future::{ready, Either};
use mlx_serve_actors::model::actor::{EngineFactory, ModelHandle};

use crate::config::{EngineFailurePolicy, Settings};
use crate::limits::{Guarded, PeerLimiter};
use crate::pipeline::seams::Seams;
use crate::routes::{self, extract::RequestId};
use crate::state::AppState;

/// A started server.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Stops the server.
    pub handle: ServerHandle,
    /// Shared state (tests inspect it).
    pub state: web::Data<AppState>,
    server: actix_rt::task::JoinHandle<io::Result<()>>,
    fatal: Arc<Mutex<Option<String>>>,
}

impl RunningServer {
    /// Wait until the server stops; an error if it stopped because the engine failed.
    pub async fn wait(self) -> io::Result<()> {
        self.server.await.map_err(io::Error::other)??;
        match self.fatal.lock().ok().and_then(|f| f.clone()) {
            Some(why) => Err(io::Error::other(why)),
            None => Ok(()),
        }
    }
}

/// Start the model thread and the HTTP server; call inside an actix system.
pub async fn start_server(
    settings: Settings,
    factory: EngineFactory,
    seams: Seams,
) -> io::Result<RunningServer> {
    let mut seams = seams;
    // Tool calls are part of the OpenAI contract rather than an optional plug-in: the real
    // parser is used unless the caller brought its own (`[tools] format = "none"` turns it off).
    if seams.tool_parser.is_none() {
        seams.tool_parser = Some(Arc::new(crate::tools::ToolCalling::start(&settings.tools)));
    }
    let seams = crate::metrics::attach(seams, &settings)?;
    if let (Some(cache), Some(to)) = (
        &seams.cache,
        seams.metrics.as_ref().and_then(|m| m.cache_reporter()),
    ) {
        cache.report_to(to);
    }
    let model = ModelHandle::start_with(
        factory.clone(),
        settings.server.queue_size,
        settings.scheduler.policy.engine_policy(),
    );
    let state = web::Data::new(AppState::new(settings, model, factory, seams));
    let s = state.settings.server.clone();
    let cors = Arc::new(s.cors_origins.clone());
    let limiter = PeerLimiter::new(s.max_inflight_per_ip, s.retry_after_s);
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        let cors = cors.clone();
        let limiter = limiter.clone();
        App::new()
            .app_data(app_state.clone())
            .wrap_fn(move |req, srv| {
                // Probes stay answerable while a client is at its limit.
                let exempt = matches!(req.path(), "/health" | "/version" | "/metrics");
                let peer = req.peer_addr().map(|a| a.ip()).filter(|_| !exempt);
                match limiter.enter(peer) {
                    Err(e) => {
                        let resp = routes::error_for(req.request(), e);
                        Either::Left(ready(Ok(req.into_response(resp).map_into_right_body())))
                    }
                    Ok(guard) => {
                        let fut = srv.call(req);
                        Either::Right(async move {
                            let res = fut.await?;
                            Ok(res
                                .map_body(|_, body| Guarded::new(body, guard))
                                .map_into_left_body())
                        })
                    }
                }
            })
            .wrap_fn(move |req, srv| {
                let origin = req.headers().get(header::ORIGIN).cloned();
                let allow = origin.filter(|o| {
                    cors.iter()
                        .any(|c| c == "*" || o.to_str().is_ok_and(|o| o == c))
                });
                if req.method() == Method::OPTIONS && !cors.is_empty() {
                    let mut resp = HttpResponse::NoContent();
                    if let Some(o) = &allow {
                        resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone()))
                            .insert_header((
                                header::ACCESS_CONTROL_ALLOW_METHODS,
                                "GET, POST, OPTIONS",
                            ))
                            .insert_header((
                                header::ACCESS_CONTROL_ALLOW_HEADERS,
                                "authorization, content-type, x-api-key, x-request-id",
                            ))
                            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
                    }
                    let resp = req.into_response(resp.finish()).map_into_right_body();
                    return Either::Left(ready(Ok(resp)));
                }
                let fut = srv.call(req);
                Either::Right(async move {
                    let mut res = fut.await?.map_into_left_body();
                    if let Some(o) = allow {
                        res.headers_mut()
                            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                    }
                    Ok(res)
                })
            })
            .wrap_fn(|req, srv| {
                let rid = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| {
                        !v.is_empty()
                            && v.len() <= 64
                            && v.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    })
                    .map(str::to_owned)
                    .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
                req.extensions_mut().insert(RequestId(rid.clone()));
                let method = req.method().clone();
                let path = req.path().to_owned();
                let t0 = Instant::now();
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await?;
                    if let Ok(v) = HeaderValue::from_str(&rid) {
                        res.headers_mut()
                            .insert(HeaderName::from_static("x-request-id"), v);
                    }
                    tracing::info!(
                        request_id = %rid,
                        %method,
                        %path,
                        status = res.status().as_u16(),
                        latency_ms = t0.elapsed().as_millis() as u64,
                        "request"
                    );
                    Ok(res)
                }
            })
            .wrap_fn(|req, srv| crate::metrics::middleware::watch(srv.call(req)))
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    })
    .on_connect(routes::disconnect::on_connect)
    .workers(s.workers)
    .shutdown_timeout(s.shutdown_grace_s)
    .bind((s.host.as_str(), s.port))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| io::Error::other("the server bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    let fatal = Arc::new(Mutex::new(None));
    actix_rt::spawn(watchdog(state.clone(), handle.clone(), fatal.clone()));
    actix_rt::spawn(crate::metrics::publish_engine_state(state.clone()));
    tracing::info!(%addr, model = %state.settings.model.name, "mlx-serve listening");
    Ok(RunningServer {
        addr,
        handle,
        state,
        server: actix_rt::spawn(server),
        fatal,
    })
}

/// Watch the engine: restart it or stop the server (non-zero exit) when it dies or wedges.
async fn watchdog(
    state: web::Data<AppState>,
    handle: ServerHandle,
    fatal: Arc<Mutex<Option<String>>>,
) {
    let s = &state.settings.server;
    let period = Duration::from_secs_f64((s.engine_wedge_timeout_s / 4.0).clamp(0.02, 1.0));
    loop {
        tokio::time::sleep(period).await;
        let h = state.health();
        if !(h.wedged || h.failure.is_some()) {
            continue;
        }
        let why = if h.wedged {
            "the engine is wedged: a step exceeded server.engine_wedge_timeout_s".to_owned()
        } else {
            h.failure.unwrap_or_default()
        };
        let restarts = state.restarts.load(std::sync::atomic::Ordering::Relaxed);
        if s.on_engine_failure == EngineFailurePolicy::Restart && restarts < s.max_engine_restarts {
            tracing::error!(%why, restart = restarts + 1, "restarting the model engine");
            // A wedged thread cannot be killed; its handle is dropped and it exits when it returns.
            state.replace_model(ModelHandle::start_with(
                state.factory.clone(),
                s.queue_size,
                state.settings.scheduler.policy.engine_policy(),
            ));
            continue;
        }
        tracing::error!(%why, "model engine failed; shutting down");
        if let Ok(mut f) = fatal.lock() {
            *f = Some(format!("model engine failed: {why}"));
        }
        handle.stop(true).await;
        return;
    }
}

/// Run a server until it stops: SIGTERM/ctrl-c (Ok) or a fatal engine failure (Err).
pub fn run_server(settings: Settings, factory: EngineFactory) -> io::Result<()> {
    run_server_with(settings, factory, Seams::default())
}

/// [`run_server`] with cache, tool-parser and metrics seams plugged in.
pub fn run_server_with(settings: Settings, factory: EngineFactory, seams: Seams) -> io::Result<()> {
    actix_rt::System::new().block_on(async move {
        let seams = crate::pipeline::cache::with_configured_cache(seams, &settings.cache);
        let server = start_server(settings, factory, seams).await?;
        server.wait().await
    })
}
