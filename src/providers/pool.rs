//! One provider's upstream connections, kept between calls. An HTTP/1.1 connection is
//! driven by the task that makes the call: polled while the request goes out and while
//! the reply body is read, then put back once the reply is read in full, so a call hands
//! nothing to a connection task and back. HTTP/2 (by ALPN) multiplexes calls on one
//! connection, which runs as its own task. Idle connections past the few most recently
//! used are closed soon after a burst (`IdleLimits`). Only sends and keeps: timeouts and
//! what a failure means are the caller's (`providers::http`).

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tower::Service as _;

use super::connect::{Connector, Moves, UpstreamIo};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type H1Connection = http1::Connection<UpstreamIo, Full<Bytes>>;

/// Why a request got no reply head.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened (the connector's error: refused, TLS, proxy, timed out).
    Connect(BoxError),
    /// The connection failed while the request was sent or the reply head awaited.
    Send(hyper::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Connect(_) => f.write_str("connection failed"),
            SendError::Send(_) => f.write_str("the request could not be sent"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => Some(&**e),
            SendError::Send(e) => Some(e),
        }
    }
}

/// Where a connection goes: requests only reuse a connection to the same place.
#[derive(Debug, Clone)]
struct Origin {
    scheme: Option<Scheme>,
    authority: Option<Authority>,
}

/// Byte for byte, not `Authority`'s comparison without case, which costs a pass per byte
/// on every idle connection a checkout looks at: a provider's URIs are all built from
/// its one base URL, and a host written in another case would only open a connection
/// of its own, never reuse a wrong one.
impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        self.authority.as_ref().map(Authority::as_str)
            == other.authority.as_ref().map(Authority::as_str)
            && self.scheme == other.scheme
    }
}

impl Origin {
    fn of(uri: &Uri) -> Origin {
        Origin {
            scheme: uri.scheme().cloned(),
            authority: uri.authority().cloned(),
        }
    }
}

/// How many idle HTTP/1.1 connections a pool keeps, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct IdleLimits {
    /// The most recently used ones, kept up to `idle_for`.
    pub keep: usize,
    /// Any other is closed once unused this long: the connections a burst opened beyond
    /// `keep` (each holds its buffers, ≈ 35 KB) do not outlive it by much.
    pub surplus_for: Duration,
    /// No idle connection is reused after this long.
    pub idle_for: Duration,
    /// Nor more kept at once.
    pub max: usize,
}

/// The connections of one provider (`UpstreamClient`): idle HTTP/1.1 connections, most
/// recently used last, and the shared HTTP/2 connection if the upstream chose HTTP/2.
pub struct Pool {
    connector: Connector,
    limits: IdleLimits,
    idle: Mutex<VecDeque<Idle>>,
    /// A sweeper task is waiting to close surplus idle connections (`sweep_later`);
    /// changed with `idle` locked.
    sweeping: AtomicBool,
    h2: Mutex<Option<(Origin, http2::SendRequest<Full<Bytes>>)>>,
    /// An HTTP/2 connection was ever kept in `h2`: until then a call does not lock it.
    /// Read by every call on both request threads, written once, so its cache line is
    /// not moved between their cores per call as the lock's would be.
    had_h2: AtomicBool,
    /// The `Host` header of the first origin asked for (a provider has one), set once and
    /// read without a lock; another origin's is built per call.
    host: OnceLock<(Origin, HeaderValue)>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.lock_idle().len())
            .finish()
    }
}

struct Idle {
    conn: Box<H1>,
    since: Instant,
    /// `conn.home`, kept beside it: a checkout looks for its own thread's connections
    /// without reading the boxes of the other thread's, last written on another core.
    home: Option<ThreadId>,
}

impl Pool {
    /// An empty pool opening connections through `connector`, keeping idle ones within
    /// `limits`.
    pub fn new(connector: Connector, limits: IdleLimits) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            limits,
            idle: Mutex::new(VecDeque::new()),
            sweeping: AtomicBool::new(false),
            h2: Mutex::new(None),
            had_h2: AtomicBool::new(false),
            host: OnceLock::new(),
        })
    }

    fn lock_idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // A panic while holding it cannot leave the queue half-changed.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_h2(&self) -> MutexGuard<'_, Option<(Origin, http2::SendRequest<Full<Bytes>>)>> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Idle HTTP/1.1 connections kept now.
    pub fn idle(&self) -> usize {
        self.lock_idle().len()
    }

    /// Sends `request` (its URI absolute) on a kept connection to its origin, or a new
    /// one, and returns the reply once its head has come. A kept connection the upstream
    /// closed meanwhile is dropped for the next; a request that a kept connection could
    /// not start (it closed as the request went out, nothing was written; an HTTP/2 one
    /// closed or is going away) is sent again on another, as hyper's pooled client does.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let origin = Origin::of(request.uri());
        let mut resent = false;
        loop {
            if let Some(h2) = self.h2_for(&origin) {
                match self.send_h2(h2, request).await {
                    Ok(response) => return Ok(response),
                    // The connection closed, or is going away (the upstream's GOAWAY, its
                    // calls in flight still finishing), before the request went out: it is
                    // sent once more, on a new connection.
                    Err(mut e) => match e.take_message() {
                        Some(unsent) if !resent && e.error().is_canceled() => {
                            self.forget_h2(&origin);
                            (request, resent) = (unsent, true);
                            continue;
                        }
                        _ => return Err(SendError::Send(e.into_error())),
                    },
                }
            }
            let (conn, kept) = match self.checkout(&origin).await {
                Some(conn) => (conn, true),
                // Boxed: opening a connection (TLS, a proxy's tunnel, either handshake)
                // is a future of kilobytes that a call on a kept connection never runs,
                // and every future that awaits this one would otherwise be that large.
                None => match Box::pin(self.connect(&origin, request.uri())).await? {
                    Opened::H1(conn) => (conn, false),
                    Opened::H2(h2) => {
                        return self
                            .send_h2(h2, request)
                            .await
                            .map_err(|e| SendError::Send(e.into_error()))
                    }
                },
            };
            match self.send_h1(conn, request).await {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if kept && e.error().is_canceled() => request = unsent,
                    _ => return Err(SendError::Send(e.into_error())),
                },
            }
        }
    }

    /// Forgets the HTTP/2 connection to `origin` (one a request could not start on): the
    /// next call opens another. Its calls in flight go on until they end.
    fn forget_h2(&self, origin: &Origin) {
        let mut h2 = self.lock_h2();
        if matches!(&*h2, Some((o, _)) if o == origin) {
            *h2 = None;
        }
    }

    fn h2_for(&self, origin: &Origin) -> Option<http2::SendRequest<Full<Bytes>>> {
        if !self.had_h2.load(Ordering::Acquire) {
            return None;
        }
        let mut h2 = self.lock_h2();
        match &*h2 {
            Some((o, sender)) if o == origin && !sender.is_closed() => Some(sender.clone()),
            Some((o, _)) if o == origin => {
                *h2 = None;
                None
            }
            _ => None,
        }
    }

    /// An idle connection to `origin` that is still open: this thread's most recently
    /// used one, or else another thread's least recently used one, moved to this thread
    /// (`Moves`) rather than a new one opened: a provider then keeps as many connections
    /// as it had calls in flight at once, not that many per request thread.
    async fn checkout(&self, origin: &Origin) -> Option<Box<H1>> {
        let home = home();
        loop {
            let conn = {
                let mut idle = self.lock_idle();
                let at = idle
                    .iter()
                    .rposition(|i| i.home == home && &i.conn.origin == origin)
                    // The other threads reuse their most recent ones first.
                    .or_else(|| idle.iter().position(|i| &i.conn.origin == origin))?;
                idle.remove(at)?
            };
            if conn.since.elapsed() >= self.limits.idle_for {
                // Older ones are before it: the next checkin prunes them.
                continue;
            }
            let mut conn = conn.conn;
            if conn.home != home {
                conn.moves.ask();
                conn.home = home;
            }
            // One poll reads what came while it was idle: a close, or bytes no request
            // asked for (both end it).
            if poll_fn(|cx| Poll::Ready(conn.alive(cx))).await {
                return Some(conn);
            }
        }
    }

    fn checkin(self: &Arc<Self>, conn: Box<H1>) {
        let mut idle = self.lock_idle();
        let now = Instant::now();
        let mut closed = self.prune(&mut idle, now);
        if idle.len() >= self.limits.max {
            closed.extend(idle.pop_front());
        }
        let home = conn.home;
        idle.push_back(Idle {
            conn,
            since: now,
            home,
        });
        // Armed with `idle` locked, so a sweeper that is just stopping is not missed.
        let arm = idle.len() > self.limits.keep && !self.sweeping.load(Ordering::Relaxed);
        if arm {
            self.sweeping.store(true, Ordering::Relaxed);
        }
        drop(idle);
        drop(closed);
        if arm {
            self.sweep_later();
        }
    }

    /// Takes out the idle connections past their time: any after `idle_for`, those
    /// beyond the `keep` most recent after `surplus_for`. Oldest first, as they are kept.
    fn prune(&self, idle: &mut VecDeque<Idle>, now: Instant) -> Vec<Idle> {
        let IdleLimits {
            keep,
            surplus_for,
            idle_for,
            ..
        } = self.limits;
        let mut closed = Vec::new();
        while let Some(oldest) = idle.front() {
            let unused = now.duration_since(oldest.since);
            if unused < idle_for && (idle.len() <= keep || unused < surplus_for) {
                break;
            }
            closed.extend(idle.pop_front());
        }
        closed
    }

    /// When the oldest surplus idle connection is due to close, or `None` (and the
    /// sweeper stops) when there is no surplus.
    fn next_sweep(&self) -> Option<Instant> {
        let idle = self.lock_idle();
        match idle.front() {
            Some(oldest) if idle.len() > self.limits.keep => {
                Some(oldest.since + self.limits.surplus_for)
            }
            _ => {
                self.sweeping.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// Closes surplus idle connections when they are due, while there are any: a pool
    /// no call uses any more (a provider whose traffic stopped) lets them go too. Not
    /// tracked for shutdown: it only closes idle connections, and ends with its runtime
    /// or its pool.
    fn sweep_later(self: &Arc<Self>) {
        /// The sweeper's pool. Dropped before the sweeper stopped by itself (its runtime
        /// shutting down), it lets a later checkin arm another.
        struct Sweeper(Option<Weak<Pool>>);
        impl Drop for Sweeper {
            fn drop(&mut self) {
                if let Some(pool) = self.0.take().and_then(|p| p.upgrade()) {
                    pool.sweeping.store(false, Ordering::Relaxed);
                }
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Relaxed);
            return;
        };
        let mut sweeper = Sweeper(Some(Arc::downgrade(self)));
        runtime.spawn(async move {
            while let Some(pool) = sweeper.0.as_ref().and_then(Weak::upgrade) {
                let Some(at) = pool.next_sweep() else {
                    // Stopped with the pool locked: nothing for `Drop` to undo.
                    sweeper.0.take();
                    return;
                };
                drop(pool);
                tokio::time::sleep_until(at).await;
                if let Some(pool) = sweeper.0.as_ref().and_then(Weak::upgrade) {
                    let closed = pool.prune(&mut pool.lock_idle(), Instant::now());
                    drop(closed);
                }
            }
        });
    }

    async fn connect(&self, origin: &Origin, uri: &Uri) -> Result<Opened, SendError> {
        let io = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let connected = io.connected();
        let moves = io.moves();
        if connected.is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| SendError::Connect(Box::new(e)))?;
            // HTTP/2 multiplexes every call on this one connection: it runs on its own.
            hyper::rt::Executor::execute(&TokioExecutor::new(), async move {
                let _ = conn.await;
            });
            *self.lock_h2() = Some((origin.clone(), sender.clone()));
            self.had_h2.store(true, Ordering::Release);
            return Ok(Opened::H2(sender));
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        // Boxed: hyper's connection state is large, and it moves between the pool and
        // the reply bodies that drive it.
        Ok(Opened::H1(Box::new(H1 {
            sender,
            conn,
            drive: Drive::new(),
            origin: origin.clone(),
            to_proxy: connected.is_proxied(),
            home: home(),
            moves,
        })))
    }

    async fn send_h2(
        &self,
        mut sender: http2::SendRequest<Full<Bytes>>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>>
    {
        *request.version_mut() = Version::HTTP_2;
        let response = sender.try_send_request(request).await?;
        Ok(response.map(|body| UpstreamBody {
            body,
            conn: None,
            pool: Weak::new(),
            ended: false,
        }))
    }

    /// Sends on an HTTP/1.1 connection, polling it until the reply head comes.
    async fn send_h1(
        self: &Arc<Self>,
        mut conn: Box<H1>,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, hyper::client::conn::TrySendError<Request<Full<Bytes>>>>
    {
        if !request.headers().contains_key(HOST) {
            if let Some(host) = self.host(&conn.origin) {
                request.headers_mut().insert(HOST, host);
            }
        }
        if !conn.to_proxy {
            // Origin form (`/v1/chat/completions`); a proxy takes the absolute form.
            let path = request
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *request.uri_mut() = Uri::from(path);
        }
        let mut sending = std::pin::pin!(conn.sender.try_send_request(request));
        let mut closed = false;
        let head = poll_fn(|cx| {
            let H1 { conn: c, drive, .. } = &mut *conn;
            drive.poll(cx, |cx| {
                if !closed {
                    closed = Pin::new(&mut *c).poll(cx).is_ready();
                }
                sending.as_mut().poll(cx)
            })
        })
        .await;
        match head {
            Ok(response) => {
                let conn = (!closed).then_some(conn);
                Ok(response.map(|body| UpstreamBody {
                    body,
                    conn,
                    pool: Arc::downgrade(self),
                    ended: false,
                }))
            }
            Err(e) => Err(e),
        }
    }

    /// The `Host` header for `origin`: the pool's first origin's built once, any other's
    /// per call.
    fn host(&self, origin: &Origin) -> Option<HeaderValue> {
        if let Some((o, value)) = self.host.get() {
            if o == origin {
                return Some(value.clone());
            }
        }
        let authority = origin.authority.as_ref()?;
        let default_port = match origin.scheme.as_ref().map(Scheme::as_str) {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        let value = match authority.port_u16() {
            Some(port) if Some(port) != default_port => {
                HeaderValue::from_str(&format!("{}:{port}", authority.host())).ok()?
            }
            _ => HeaderValue::from_str(authority.host()).ok()?,
        };
        let _ = self.host.set((origin.clone(), value.clone()));
        Some(value)
    }
}

enum Opened {
    H1(Box<H1>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// An HTTP/1.1 connection and its sending half, driven by whoever holds it.
struct H1 {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: H1Connection,
    drive: Arc<Drive>,
    origin: Origin,
    /// Requests on it go to a proxy, in absolute form.
    to_proxy: bool,
    /// The request thread whose runtime drives its socket (`home`).
    home: Option<ThreadId>,
    /// Moves its socket to the runtime of a call on another thread that takes it.
    moves: Moves,
}

/// The thread a connection opened now belongs to. Under a current-thread runtime (the
/// request threads, `server::threads`) only that thread's runtime reads its socket's
/// readiness, so the connection is reused on that thread first: used from another as it
/// is, each wake-up would cross threads and wait for the owner's driver, so another
/// thread takes it only when it has none of its own, and moves its socket to its own
/// driver first (`Moves`). Under the multi-thread runtime every worker shares one
/// driver: `None`, reused by any.
fn home() -> Option<ThreadId> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
            Some(std::thread::current().id())
        }
        _ => None,
    }
}

impl H1 {
    /// Polls the idle connection once: true if it is open and ready for a request.
    fn alive(&mut self, cx: &mut Context<'_>) -> bool {
        let H1 { conn, drive, .. } = self;
        match drive.poll(cx, |cx| Pin::new(&mut *conn).poll(cx)) {
            Poll::Ready(_) => false,
            Poll::Pending => self.sender.is_ready(),
        }
    }
}

/// A reply body from the pool. Reading it drives its HTTP/1.1 connection; once it has
/// been read to its end the connection goes back to the pool (dropped before, the
/// connection is closed, unless what is left of the reply had already arrived).
pub struct UpstreamBody {
    body: Incoming,
    /// The connection that carries it (HTTP/1.1 only), until the reply is read.
    conn: Option<Box<H1>>,
    pool: Weak<Pool>,
    ended: bool,
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("ended", &self.ended)
            .finish()
    }
}

impl UpstreamBody {
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let UpstreamBody { body, conn, .. } = self;
        let frame = match conn {
            Some(h1) => {
                let H1 { conn: c, drive, .. } = &mut **h1;
                let mut closed = false;
                let frame = drive.poll(cx, |cx| {
                    if !closed {
                        closed = Pin::new(&mut *c).poll(cx).is_ready();
                    }
                    Pin::new(&mut *body).poll_frame(cx)
                });
                if closed {
                    *conn = None;
                }
                frame
            }
            None => Pin::new(&mut *body).poll_frame(cx),
        };
        if matches!(frame, Poll::Ready(None)) {
            self.ended = true;
            self.release(cx);
        }
        frame
    }

    /// The reply is read: one more poll lets the connection finish the exchange and
    /// wait for the next request; then it goes back to the pool if it is ready for one.
    fn release(&mut self, cx: &mut Context<'_>) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if let Some(pool) = self.pool.upgrade() {
            if conn.alive(cx) {
                pool.checkin(conn);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.get_mut().poll_body(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.ended || self.conn.is_none() {
            return;
        }
        // Dropped before its end (a stream whose last event came before the body's
        // end): if the rest has already arrived, read it, and the connection is kept.
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..4 {
            match self.poll_body(&mut cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                _ => return,
            }
        }
    }
}

const POLLING: u8 = 1;
const WOKEN: u8 = 2;

/// The waker a connection and its reply body are polled with. hyper's dispatcher and
/// the body it fills hand each other data through wakers: polled by one task, each
/// hand-off would wake the task that is running, and a task woken while it runs goes
/// back on the scheduler's queue (with another worker unparked to steal it) instead of
/// going on. Wakes that come while the connection is being polled are noted and it is
/// polled again at once; wakes at any other time (the socket became ready) wake the task.
struct Drive {
    state: AtomicU8,
    task: AtomicWaker,
    /// This `Drive` as a `Waker`, made once.
    waker: Waker,
}

impl Drive {
    fn new() -> Arc<Drive> {
        Arc::new_cyclic(|me: &Weak<Drive>| Drive {
            state: AtomicU8::new(0),
            task: AtomicWaker::new(),
            waker: Waker::from(Arc::new(DriveWaker(me.clone()))),
        })
    }

    /// Runs `f` with this waker until it is ready, or until nothing woke it meanwhile.
    fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.task.register(cx.waker());
        let mut inner = Context::from_waker(&self.waker);
        // Bounded: a connection that keeps waking itself (hyper yields after 16 rounds
        // of work) is left to the scheduler after a while.
        for _ in 0..32 {
            self.state.store(POLLING, Ordering::SeqCst);
            let out = f(&mut inner);
            let left = self.state.swap(0, Ordering::SeqCst);
            if out.is_ready() || left & WOKEN == 0 {
                return out;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn wake(&self) {
        if self.state.fetch_or(WOKEN, Ordering::SeqCst) & POLLING == 0 {
            self.task.wake();
        }
    }
}

/// The `Waker` side of `Drive` (weak: `Drive` holds its own waker).
struct DriveWaker(Weak<Drive>);

impl Wake for DriveWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(drive) = self.0.upgrade() {
            drive.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    /// What the test upstream does after each reply on a connection.
    #[derive(Clone, Copy)]
    enum After {
        KeepOpen,
        /// Says `connection: close` in the reply, then closes.
        Close,
        /// Says nothing of closing, then closes 50 ms later: an upstream whose
        /// keep-alive time is shorter than the pool's.
        CloseUnsaid,
    }

    /// A minimal HTTP/1.1 upstream: answers each request on a connection with `reply`,
    /// and reports each accepted connection on the channel.
    async fn upstream(reply: &'static str, after: After) -> (String, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (accepted, accepts) = mpsc::unbounded_channel();
        // The test's own upstream; nothing to drain at shutdown.
        #[allow(clippy::disallowed_methods)]
        tokio::task::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = accepted.send(());
                #[allow(clippy::disallowed_methods)]
                tokio::task::spawn(answer(socket, reply, after));
            }
        });
        (addr, accepts)
    }

    async fn answer(mut socket: TcpStream, reply: &'static str, after: After) {
        let mut read = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // Requests here have no body: a head ends each one.
            while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                read.drain(..end + 4);
                let close = match after {
                    After::KeepOpen | After::CloseUnsaid => "",
                    After::Close => "connection: close\r\n",
                };
                // Head and body in one write: they arrive together.
                let whole = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{close}\r\n{reply}",
                    reply.len()
                );
                if socket.write_all(whole.as_bytes()).await.is_err() {
                    return;
                }
                match after {
                    After::KeepOpen => {}
                    After::Close => return,
                    After::CloseUnsaid => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
            }
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn pool_for(addr: &str) -> Arc<Pool> {
        let toml = format!(
            "[providers.p]\ntier = \"local\"\nbase_url = \"http://{addr}/v1\"\ncatalog = false\n"
        );
        let config = Config::from_toml(&toml, &|_| None).unwrap();
        let connector = Connector::new(&config.providers[0]).unwrap();
        Pool::new(connector, LIMITS)
    }

    const LIMITS: IdleLimits = IdleLimits {
        keep: 2,
        surplus_for: Duration::from_secs(5),
        idle_for: Duration::from_secs(90),
        max: 4,
    };

    fn get(addr: &str) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = Uri::try_from(format!("http://{addr}/v1/ping")).unwrap();
        request
    }

    async fn call(pool: &Arc<Pool>, addr: &str) -> Bytes {
        let response = pool.send(get(addr)).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_connection_read_to_its_end_is_reused() {
        let (addr, mut accepts) = upstream("pong", After::KeepOpen).await;
        let pool = pool_for(&addr);
        for _ in 0..3 {
            assert_eq!(call(&pool, &addr).await, "pong");
            assert_eq!(pool.idle(), 1);
        }
        accepts.recv().await.unwrap();
        assert!(
            accepts.try_recv().is_err(),
            "one connection for three calls"
        );
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closes_is_not_kept() {
        let (addr, mut accepts) = upstream("pong", After::Close).await;
        let pool = pool_for(&addr);
        assert_eq!(call(&pool, &addr).await, "pong");
        assert_eq!(pool.idle(), 0);
        assert_eq!(call(&pool, &addr).await, "pong");
        accepts.recv().await.unwrap();
        accepts.recv().await.unwrap();
    }

    /// A body dropped before its end whose rest is already read (it came with the head)
    /// leaves its connection kept; one whose rest has not come closes it.
    #[tokio::test]
    async fn a_body_dropped_early_keeps_its_connection_only_if_nothing_is_left_to_read() {
        let (addr, mut accepts) = upstream("the whole reply", After::KeepOpen).await;
        let pool = pool_for(&addr);
        let response = pool.send(get(&addr)).await.unwrap();
        drop(response.into_body());
        assert_eq!(pool.idle(), 1);
        assert_eq!(call(&pool, &addr).await, "the whole reply");
        accepts.recv().await.unwrap();
        assert!(accepts.try_recv().is_err(), "the connection was kept");

        // Declares more than it sends: the rest never comes.
        let (addr, _accepts) =
            upstream_raw(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort").await;
        let pool = pool_for(&addr);
        let response = pool.send(get(&addr)).await.unwrap();
        drop(response.into_body());
        assert_eq!(pool.idle(), 0);
    }

    /// An upstream that answers its first request with `bytes` and then only reads.
    async fn upstream_raw(bytes: &'static [u8]) -> (String, mpsc::UnboundedReceiver<()>) {
        listen(move |mut socket| async move {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(bytes).await;
            while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await
    }

    /// A test upstream on 127.0.0.1:0 that runs `each` on every connection it accepts
    /// (in a task of its own), and reports each accepted connection on the channel.
    async fn listen<F, Fut>(each: F) -> (String, mpsc::UnboundedReceiver<()>)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (accepted, accepts) = mpsc::unbounded_channel();
        #[allow(clippy::disallowed_methods)]
        tokio::task::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = accepted.send(());
                #[allow(clippy::disallowed_methods)]
                tokio::task::spawn(each(socket));
            }
        });
        (addr, accepts)
    }

    /// One call on a thread of its own with a current-thread runtime, as request threads
    /// are; the runtime ends with its thread.
    fn call_on_a_thread(pool: &Arc<Pool>, addr: &str) -> Result<Bytes, SendError> {
        send_on_a_thread(pool, get(addr))
    }

    /// `call_on_a_thread` with its request given.
    fn send_on_a_thread(
        pool: &Arc<Pool>,
        request: Request<Full<Bytes>>,
    ) -> Result<Bytes, SendError> {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let response = pool.send(request).await?;
                Ok(response.into_body().collect().await.unwrap().to_bytes())
            })
        })
        .join()
        .unwrap()
    }

    /// A request thread with no idle connection of its own takes another thread's
    /// rather than opening one, and moves its socket to its own runtime: the connection
    /// still works once the runtime that opened it is gone.
    #[test]
    fn another_thread_takes_an_idle_connection_and_moves_it() {
        let upstream_runtime = tokio::runtime::Runtime::new().unwrap();
        let (addr, mut accepts) = upstream_runtime.block_on(upstream("pong", After::KeepOpen));
        let pool = pool_for(&addr);
        for _ in 0..3 {
            assert_eq!(call_on_a_thread(&pool, &addr).unwrap(), "pong");
            assert_eq!(pool.idle(), 1);
        }
        upstream_runtime.block_on(accepts.recv()).unwrap();
        assert!(
            accepts.try_recv().is_err(),
            "one connection for three threads"
        );
    }

    /// A connection the upstream closed while it sat idle is not taken by another
    /// thread: the close is seen before the socket moves, so the call opens a new one
    /// instead of failing on the dead one.
    #[test]
    fn a_connection_closed_while_idle_is_not_moved_to_another_thread() {
        let upstream_runtime = tokio::runtime::Runtime::new().unwrap();
        let (addr, mut accepts) = upstream_runtime.block_on(upstream("pong", After::CloseUnsaid));
        let pool = pool_for(&addr);
        assert_eq!(call_on_a_thread(&pool, &addr).unwrap(), "pong");
        assert_eq!(pool.idle(), 1);
        // The upstream's close reaches this end while the connection is idle.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(call_on_a_thread(&pool, &addr).unwrap(), "pong");
        upstream_runtime.block_on(accepts.recv()).unwrap();
        upstream_runtime.block_on(accepts.recv()).unwrap();
    }

    /// What a hostile or broken upstream does to a connection once its first reply is
    /// sent and the connection sits idle.
    #[derive(Clone, Copy, Debug)]
    enum Idly {
        /// Sends bytes no request asked for (a second, unasked reply).
        Talks,
        /// Shuts its sending half (FIN) but keeps reading: half-closed.
        HalfCloses,
    }

    /// An upstream that answers each connection's first request with "pong", then does
    /// `idly`, then answers nothing more on it.
    async fn upstream_idly(idly: Idly) -> (String, mpsc::UnboundedReceiver<()>) {
        listen(move |mut socket| async move {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong";
            let _ = socket.write_all(reply).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            match idly {
                Idly::Talks => {
                    let unasked = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra";
                    let _ = socket.write_all(unasked).await;
                }
                Idly::HalfCloses => {
                    let _ = socket.shutdown().await;
                }
            }
            while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await
    }

    /// An idle connection the upstream talked on or half-closed is not used again, on
    /// the thread that opened it or on another: the next call opens a new connection and
    /// gets its reply, not the unasked bytes and not an error.
    #[test]
    fn an_idle_connection_the_upstream_spoiled_is_not_reused() {
        let upstream_runtime = tokio::runtime::Runtime::new().unwrap();
        for idly in [Idly::Talks, Idly::HalfCloses] {
            // Same thread: one runtime makes both calls.
            let (addr, mut accepts) = upstream_runtime.block_on(upstream_idly(idly));
            let pool = pool_for(&addr);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                assert_eq!(call(&pool, &addr).await, "pong", "{idly:?}");
                assert_eq!(pool.idle(), 1, "{idly:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                let second = pool.send(get(&addr)).await;
                let body = match second {
                    Ok(r) => r.into_body().collect().await.map(|b| b.to_bytes()),
                    Err(e) => panic!("{idly:?}: same thread: {e:?}"),
                };
                assert_eq!(body.unwrap(), "pong", "{idly:?}: same thread");
            });
            upstream_runtime.block_on(accepts.recv()).unwrap();
            upstream_runtime.block_on(accepts.recv()).unwrap();

            // Another thread takes it.
            let (addr, mut accepts) = upstream_runtime.block_on(upstream_idly(idly));
            let pool = pool_for(&addr);
            assert_eq!(call_on_a_thread(&pool, &addr).unwrap(), "pong");
            assert_eq!(pool.idle(), 1);
            std::thread::sleep(Duration::from_millis(200));
            match call_on_a_thread(&pool, &addr) {
                Ok(body) => assert_eq!(body, "pong", "{idly:?}: moved"),
                Err(e) => panic!("{idly:?}: moved: {e:?}"),
            }
            upstream_runtime.block_on(accepts.recv()).unwrap();
            upstream_runtime.block_on(accepts.recv()).unwrap();
        }
    }

    /// An upstream whose reply carries a second, unasked reply right behind it (in the
    /// same write): the connection is not kept, so the next call never gets the unasked
    /// reply as its own.
    #[tokio::test]
    async fn a_reply_followed_by_unasked_bytes_does_not_answer_the_next_call() {
        let (addr, mut accepts) = upstream_raw(
            b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npongHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra",
        )
        .await;
        let pool = pool_for(&addr);
        assert_eq!(call(&pool, &addr).await, "pong");
        assert_eq!(pool.idle(), 0, "the connection is not kept");
        assert_eq!(call(&pool, &addr).await, "pong");
        accepts.recv().await.unwrap();
        accepts.recv().await.unwrap();
    }

    mod tls {
        //! Upstreams over TLS, HTTP/1.1 and HTTP/2 by ALPN, with a certificate of a test
        //! CA the pool's connector trusts (`Connector::trusting`).

        use super::*;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUbDWb/9mX5Tt+0IVJNSjvfQWr18swCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOYmF6YWFyIHRlc3QgQ0EwIBcNMjYxMjAxMTQ1MzMyWhgPMjEy
NjExMDcxNDUzMzJaMBkxFzAVBgNVBAMMDmJhemFhciB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAExp7XdO82xcLQZb9dTCZ0vqb3sBny/eBmoUk1sIG6
DngJCCUfI6z4UEdYTa/FlfKcesRQfxXyuVj/i29gEh8jRaNjMGEwHQYDVR0OBBYE
FFhn/as4ufdaSX02CtnDkqhZmef/MB8GA1UdIwQYMBaAFFhn/as4ufdaSX02CtnD
kqhZmef/MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoGCCqGSM49
BAMCA0gAMEUCIQDYmGc6dftWDSTzQQr43/6Cnm8V7uQX5qrYdhggjKVhYAIgOzPm
soJSoT3nTaA6OFkAGSLtzIbzx9eEOS1NjM1H158=
-----END CERTIFICATE-----";
        /// For `localhost` and 127.0.0.1, signed by `CA`, valid until 2126.
        const LEAF: &str = "-----BEGIN CERTIFICATE-----
MIIBvjCCAWSgAwIBAgIUWX7uaq3K/j+fCCXtGvcYX9sBbEUwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOYmF6YWFyIHRlc3QgQ0EwIBcNMjYxMjAxMTQ1MzMyWhgPMjEy
NjExMDcxNDUzMzJaMBQxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEG
CCqGSM49AwEHA0IABCXvxckJhkW+BO5DDvQYnMFcsUhnLRhjOsv3MSXpsWOfnNzf
vGFUo8HqPqk3diyR+UksLhEB6MOCi1Itg+PSMMOjgYwwgYkwGgYDVR0RBBMwEYIJ
bG9jYWxob3N0hwR/AAABMAkGA1UdEwQCMAAwCwYDVR0PBAQDAgeAMBMGA1UdJQQM
MAoGCCsGAQUFBwMBMB0GA1UdDgQWBBQXyjHuBLAxqDGmWyYBTP1JDdYsyTAfBgNV
HSMEGDAWgBRYZ/2rOLn3Wkl9NgrZw5KoWZnn/zAKBggqhkjOPQQDAgNIADBFAiEA
peMdrbUHbW9S+2+RHLAQkLi0wbHy8vUFGbhyk/tz264CIDn37PqdXVOrJyRX7j7L
xP7uQ7g92n2dKS4UOaYcL2sd
-----END CERTIFICATE-----";
        const LEAF_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNkz4MczhfVTT/KBZ
2w5qIZ2ibOFC7VfAvGdvtYbaPTWhRANCAAQl78XJCYZFvgTuQw70GJzBXLFIZy0Y
YzrL9zEl6bFjn5zc37xhVKPB6j6pN3YskflJLC4RAejDgotSLYPj0jDD
-----END PRIVATE KEY-----";

        fn acceptor(alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
            let cert = CertificateDer::from_pem_slice(LEAF.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(LEAF_KEY.as_bytes()).unwrap();
            let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
            config.alpn_protocols = vec![alpn.to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        }

        fn tls_pool(addr: &str) -> Arc<Pool> {
            let toml = format!(
                "[providers.p]\ntier = \"local\"\nbase_url = \"https://{addr}/v1\"\ncatalog = false\n"
            );
            let config = Config::from_toml(&toml, &|_| None).unwrap();
            let root = CertificateDer::from_pem_slice(CA.as_bytes()).unwrap();
            Pool::new(Connector::trusting(&config.providers[0], root), LIMITS)
        }

        fn get_tls(addr: &str) -> Request<Full<Bytes>> {
            let mut request = Request::new(Full::new(Bytes::new()));
            *request.uri_mut() = Uri::try_from(format!("https://{addr}/v1/ping")).unwrap();
            request
        }

        /// Whether the first request on each connection is held back (`slow`) while the
        /// upstream says it is going away (HTTP/2's GOAWAY); every other one is "pong".
        type Hold = Option<mpsc::UnboundedSender<()>>;

        /// A TLS upstream speaking HTTP/1.1 or HTTP/2 (by ALPN) with keep-alive. With
        /// `hold`, each connection's first request is reported on it, the connection
        /// starts its graceful shutdown (GOAWAY), and the reply, "slow", comes 300 ms
        /// later.
        async fn tls_upstream(h2: bool, hold: Hold) -> (String, mpsc::UnboundedReceiver<()>) {
            let acceptor = acceptor(if h2 { b"h2" } else { b"http/1.1" });
            listen(move |socket| {
                let (acceptor, hold) = (acceptor.clone(), hold.clone());
                async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let (going, gone) = tokio::sync::oneshot::channel::<()>();
                    let going = Arc::new(Mutex::new(Some(going)));
                    let service = service_fn(move |_req| {
                        let first = going.lock().unwrap().take();
                        let hold = hold.clone();
                        async move {
                            let body = match (first, hold) {
                                (Some(going), Some(hold)) => {
                                    let _ = hold.send(());
                                    let _ = going.send(());
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                    "slow"
                                }
                                _ => "pong",
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let io = TokioIo::new(tls);
                    if h2 {
                        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service);
                        let mut conn = std::pin::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            _ = gone => conn.as_mut().graceful_shutdown(),
                        }
                        let _ = conn.await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                }
            })
            .await
        }

        /// A TLS connection (HTTP/1.1) moves to the thread that takes it, as a plain
        /// one does: one connection serves three threads, each gone before the next.
        #[test]
        fn a_tls_connection_moves_between_threads() {
            let upstream_runtime = tokio::runtime::Runtime::new().unwrap();
            let (addr, mut accepts) = upstream_runtime.block_on(tls_upstream(false, None));
            let pool = tls_pool(&addr);
            for _ in 0..3 {
                assert_eq!(send_on_a_thread(&pool, get_tls(&addr)).unwrap(), "pong");
                assert_eq!(pool.idle(), 1);
            }
            upstream_runtime.block_on(accepts.recv()).unwrap();
            assert!(
                accepts.try_recv().is_err(),
                "one connection for three threads"
            );
        }

        /// An HTTP/2 upstream: calls share one connection; once it says it is going
        /// away (GOAWAY, with a call still in flight on it), a new call goes on a new
        /// connection and is answered, and the call in flight finishes.
        #[tokio::test]
        async fn an_http2_upstream_going_away_does_not_fail_the_next_call() {
            let (held, mut holds) = mpsc::unbounded_channel();
            let (addr, mut accepts) = tls_upstream(true, Some(held)).await;
            let pool = tls_pool(&addr);
            let slow = {
                let (pool, addr) = (pool.clone(), addr.clone());
                #[allow(clippy::disallowed_methods)]
                tokio::task::spawn(async move {
                    let response = pool.send(get_tls(&addr)).await.unwrap();
                    response.into_body().collect().await.unwrap().to_bytes()
                })
            };
            holds.recv().await.unwrap();
            // The GOAWAY reaches the client while the first call waits for its reply.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let next = match pool.send(get_tls(&addr)).await {
                Ok(response) => response.into_body().collect().await.unwrap().to_bytes(),
                Err(e) => panic!("the call after GOAWAY failed: {e:?}"),
            };
            assert_eq!(next, "slow", "the new connection's first call is held too");
            assert_eq!(slow.await.unwrap(), "slow");
            accepts.recv().await.unwrap();
            accepts.recv().await.unwrap();
        }
    }

    /// After a burst, the idle connections past the most recent `keep` close once unused
    /// for `surplus_for`, without a call to the pool; the kept ones stay.
    #[tokio::test]
    async fn a_bursts_surplus_connections_close_after_a_while() {
        let (addr, mut accepts) = upstream("pong", After::KeepOpen).await;
        let pool = pool_for(&addr);
        // Four calls at once: four connections.
        let burst = futures_util::future::join_all((0..4).map(|_| call(&pool, &addr))).await;
        assert!(burst.iter().all(|reply| reply == "pong"));
        assert_eq!(pool.idle(), 4);
        tokio::time::pause();
        tokio::time::advance(LIMITS.surplus_for / 2).await;
        assert_eq!(pool.idle(), 4, "not yet");
        tokio::time::advance(LIMITS.surplus_for).await;
        // The sweeper runs once this task yields.
        for _ in 0..8 {
            if pool.idle() == LIMITS.keep {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.idle(), LIMITS.keep);
        tokio::time::resume();
        // The kept ones are reused.
        assert_eq!(call(&pool, &addr).await, "pong");
        for _ in 0..4 {
            accepts.recv().await.unwrap();
        }
        assert!(accepts.try_recv().is_err(), "no new connection");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = pool_for(&addr);
        match pool.send(get(&addr)).await {
            Err(SendError::Connect(_)) => {}
            other => panic!("expected a connect error, got {other:?}"),
        }
    }

    /// The host header names the origin (with its port when not the scheme's default).
    #[tokio::test]
    async fn the_host_header_is_built_once_per_origin() {
        let (addr, _accepts) = upstream("pong", After::KeepOpen).await;
        let pool = pool_for(&addr);
        let origin = Origin::of(&Uri::try_from(format!("http://{addr}/v1")).unwrap());
        assert_eq!(pool.host(&origin).unwrap(), addr.as_str());
        let default = Origin::of(&Uri::from_static("https://api.example.com/v1"));
        assert_eq!(pool.host(&default).unwrap(), "api.example.com");
    }
}
