//! Build the actix-web app around an engine factory and run it: request ids and access logs,
//! CORS, the engine watchdog, graceful shutdown on SIGTERM/ctrl-c.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_http::{error::DispatchError, HttpService, Protocol};
use actix_service::{fn_service, map_config, ServiceFactoryExt as _};
use actix_web::dev::{AppConfig, Extensions, ServerHandle, Service};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::rt::net::TcpStream;
use actix_web::{web, App, HttpMessage, HttpResponse};
use futures_util::future::{ready, Either};
use mlx_serve_actors::model::actor::EngineFactory;
use mlx_serve_actors::model::registry::ReleaseHook;

use crate::config::{EngineFailurePolicy, Settings};
use crate::connection::Connection;
use crate::limits::{Guarded, PeerLimiter};
use crate::pipeline::seams::Seams;
use crate::pipeline::{ModelLoader, Pipeline};
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

/// Start the HTTP server with every table entry built by `factory`; call inside an actix
/// system.
pub async fn start_server(
    settings: Settings,
    factory: EngineFactory,
    seams: Seams,
) -> io::Result<RunningServer> {
    let loader: ModelLoader = Arc::new(move |_, _| factory.clone());
    start_server_with_loader(settings, loader, seams).await
}

/// Hand memory freed by unloaded engines back to the system: MLX keeps freed buffers for
/// reuse, and glibc keeps freed heap in its arenas (the model thread had its own).
fn release_memory() {
    #[cfg(feature = "mlx")]
    // SAFETY: takes no arguments; MLX's allocator locks its own cache.
    unsafe {
        mlx_sys::mlx_clear_cache();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Load the models marked `preload`; one that cannot load is reported, the others still load.
fn preload(state: &AppState) {
    for entry in state.models.iter().filter(|e| e.preload) {
        let started = state.check_pulled(entry).and_then(|()| {
            state
                .registry
                .load(&entry.id)
                .map_err(|e| state.acquire_error(e))
        });
        if let Err(e) = started {
            tracing::error!(model = %entry.id, error = %e, "preloading failed");
        }
    }
}

/// Start the HTTP server; each model's engine is built by `loader` when it is first loaded
/// (at start-up for `preload` entries). Call inside an actix system.
pub async fn start_server_with_loader(
    settings: Settings,
    loader: ModelLoader,
    seams: Seams,
) -> io::Result<RunningServer> {
    start_composed(compose(settings, loader, seams, false)?).await
}

/// The composition root: every seam (tool parser, response cache, metrics) attached and wired to
/// the others, the pipeline built on them and the state around it. With `configured_cache` the
/// `[cache]` actor is started unless `seams` brings a cache (the server; embedders and tests
/// bring their own or none).
fn compose(
    settings: Settings,
    loader: ModelLoader,
    mut seams: Seams,
    configured_cache: bool,
) -> io::Result<web::Data<AppState>> {
    // Tool calls are part of the OpenAI contract rather than an optional plug-in: the real
    // parser is used unless the caller brought its own (`[tools] format = "none"` turns it off).
    if seams.tool_parser.is_none() {
        seams.tool_parser = Some(Arc::new(crate::tools::ToolCalling::new(&settings.tools)));
    }
    if configured_cache {
        seams = crate::pipeline::cache::with_configured_cache(seams, &settings.cache);
    }
    let seams = crate::metrics::attach(seams, &settings)?;
    if let (Some(cache), Some(to)) = (
        &seams.cache,
        seams.metrics.as_ref().and_then(|m| m.cache_reporter()),
    ) {
        cache.report_to(to);
    }
    let hook: ReleaseHook = Arc::new(release_memory);
    let pipeline = Pipeline::new(settings, loader, seams, Some(hook));
    Ok(web::Data::new(AppState::around(pipeline)))
}

/// Serve a composed state. Call inside an actix system.
async fn start_composed(state: web::Data<AppState>) -> io::Result<RunningServer> {
    preload(&state);
    let s = state.settings.server.clone();
    let cors = Arc::new(s.cors_origins.clone());
    let limiter = PeerLimiter::new(s.max_inflight_per_ip, s.retry_after_s);
    let app_state = state.clone();
    let app = move || {
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
    };
    let listeners = listen(&s.host, s.port)?;
    let addr = listeners[0].local_addr()?;
    // actix-web's `HttpServer`, assembled by hand so that connections are `Connection`s.
    let mut builder = actix_server::Server::build()
        .workers(s.workers)
        .shutdown_timeout(s.shutdown_grace_s);
    let shutdown = builder.graceful_shutdown_signal();
    for lst in listeners {
        let (app, shutdown) = (app.clone(), shutdown.clone());
        let local = lst.local_addr()?;
        builder = builder.listen(format!("mlx-serve-{local}"), lst, move || {
            let shutdown = shutdown.clone();
            let http = HttpService::build()
                .client_request_timeout(crate::routes::HEAD_TIMEOUT)
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(local)
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .on_connect_ext(|io: &Connection, ext: &mut Extensions| {
                    routes::disconnect::on_connect(io.stream(), ext)
                })
                .finish(map_config(app(), |_| AppConfig::default()));
            fn_service(|io: TcpStream| async move {
                // Streamed tokens are small writes: send each at once.
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                let conn = Connection::new(io, routes::bare_error_body);
                Ok::<_, DispatchError>((conn, Protocol::Http1, peer))
            })
            .and_then(http)
        })?;
    }
    let server = builder.run();
    let handle = server.handle();
    let fatal = Arc::new(Mutex::new(None));
    actix_rt::spawn(watchdog(state.clone(), handle.clone(), fatal.clone()));
    actix_rt::spawn(crate::metrics::publish_engine_state(state.clone()));
    actix_rt::spawn(sweeper(state.clone()));
    tracing::info!(%addr, models = ?state.model_ids(), "mlx-serve listening");
    Ok(RunningServer {
        addr,
        handle,
        state,
        server: actix_rt::spawn(server),
        fatal,
    })
}

/// Listening sockets for every address `host` resolves to, as actix-web's `bind` makes them.
fn listen(host: &str, port: u16) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol as IpProtocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM,
            Some(IpProtocol::TCP),
        )?;
        #[cfg(not(windows))]
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()).and_then(|()| socket.listen(1024)) {
            Ok(()) => out.push(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    if out.is_empty() {
        return Err(last.unwrap_or_else(|| io::Error::other("the server bound no address")));
    }
    Ok(out)
}

/// Unload idle models whose keep-alive ran out, and release the memory of unloaded ones.
async fn sweeper(state: web::Data<AppState>) {
    loop {
        tokio::time::sleep(SWEEP_PERIOD).await;
        state.registry.sweep();
        for model in state.registry.take_unloaded() {
            crate::pipeline::cache::forget_model(&state, &model).await;
        }
    }
}

const SWEEP_PERIOD: Duration = Duration::from_millis(200);

/// Watch the resident engines: restart one (or stop the server, non-zero exit) when it dies
/// or wedges while serving. A model that failed to load is left failed: its requests get 503
/// with the reason and the other models keep serving; `POST /v1/models/{id}/load` retries it.
async fn watchdog(
    state: web::Data<AppState>,
    handle: ServerHandle,
    fatal: Arc<Mutex<Option<String>>>,
) {
    let s = &state.settings.server;
    let period = Duration::from_secs_f64((s.engine_wedge_timeout_s / 4.0).clamp(0.02, 1.0));
    loop {
        tokio::time::sleep(period).await;
        for entry in &state.models {
            let Some(model) = state.registry.handle(&entry.id) else {
                continue;
            };
            let h = model.health().snapshot(state.wedge_timeout());
            // Only a loaded engine that then died or wedged: load failures stay visible.
            if !(h.wedged || (h.loaded && h.failure.is_some())) {
                continue;
            }
            let why = if h.wedged {
                "the engine is wedged: a step exceeded server.engine_wedge_timeout_s".to_owned()
            } else {
                h.failure.unwrap_or_default()
            };
            let restarts = state.restarts.load(std::sync::atomic::Ordering::Relaxed);
            if s.on_engine_failure == EngineFailurePolicy::Restart
                && restarts < s.max_engine_restarts
            {
                tracing::error!(model = %entry.id, %why, restart = restarts + 1, "restarting the model engine");
                // A wedged thread cannot be killed; its handle is dropped and it exits when it
                // returns.
                let _ = state.registry.restart(&entry.id);
                state
                    .restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            tracing::error!(model = %entry.id, %why, "model engine failed; shutting down");
            if let Ok(mut f) = fatal.lock() {
                *f = Some(format!("model engine failed: {why}"));
            }
            handle.stop(true).await;
            return;
        }
    }
}

/// Run a server until it stops: SIGTERM/ctrl-c (Ok) or a fatal engine failure (Err).
pub fn run_server(settings: Settings, factory: EngineFactory) -> io::Result<()> {
    run_server_with(settings, factory, Seams::default())
}

/// [`run_server`] with cache, tool-parser and metrics seams plugged in.
pub fn run_server_with(settings: Settings, factory: EngineFactory, seams: Seams) -> io::Result<()> {
    let loader: ModelLoader = Arc::new(move |_, _| factory.clone());
    run_server_models(settings, loader, seams)
}

/// Run a server whose models are built by `loader` (one engine factory per table entry).
pub fn run_server_models(settings: Settings, loader: ModelLoader, seams: Seams) -> io::Result<()> {
    actix_rt::System::new().block_on(async move {
        let server = start_composed(compose(settings, loader, seams, true)?).await?;
        server.wait().await
    })
}
