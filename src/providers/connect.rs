//! How one provider's connections are opened: TCP with TCP_NODELAY, TLS by rustls with
//! the Mozilla roots for `https`, through the provider's HTTP proxy when it has one (a
//! CONNECT tunnel for `https` upstreams, a plain connection to the proxy carrying
//! absolute-form requests for `http` ones), all under one limit, `timeouts.connect`.
//! It only opens connections: `providers::pool` keeps and reuses them. The TCP socket
//! under each one can move to another request thread's I/O driver (`Moves`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Future;
use http::uri::Scheme;
use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::BuildError;
use crate::config::ProviderConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connecting = Pin<Box<dyn Future<Output = Result<UpstreamIo, BoxError>> + Send>>;
type TcpConnecting = Pin<Box<dyn Future<Output = Result<Tcp, BoxError>> + Send>>;

/// The connector of one provider's pool (`UpstreamClient`).
#[derive(Clone)]
pub struct Connector {
    route: Route,
    /// Over TCP, the proxy's CONNECT and TLS together.
    limit: Duration,
}

#[derive(Clone)]
enum Route {
    Direct(HttpsConnector<TcpConnector>),
    Proxied {
        /// `https` upstreams: TLS with the upstream inside a CONNECT tunnel (boxed: it
        /// is the larger variant, and only proxied providers pay for it).
        tunnel: Box<HttpsConnector<Tunnel<TcpConnector>>>,
        /// `http` upstreams: a connection to the proxy itself.
        plain: TcpConnector,
        proxy: Uri,
    },
}

impl Connector {
    /// The connector for `config`: its proxy, if any, and its connect limit.
    pub fn new(config: &ProviderConfig) -> Result<Connector, BuildError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let tcp = TcpConnector(http);
        let route = match &config.proxy {
            None => Route::Direct(tls(tcp)?),
            Some(proxy) => {
                let mut tunnel = Tunnel::new(proxy.uri.clone(), tcp.clone());
                if let Some(auth) = &proxy.authorization {
                    let auth = HeaderValue::from_str(auth.expose())
                        .map_err(|_| BuildError::field("proxy", "not a valid header value"))?;
                    tunnel = tunnel.with_auth(auth);
                }
                Route::Proxied {
                    tunnel: Box::new(tls(tunnel)?),
                    plain: tcp,
                    proxy: proxy.uri.clone(),
                }
            }
        };
        Ok(Connector {
            route,
            limit: config.timeouts.connect,
        })
    }
}

impl Connector {
    /// A direct connector for `config` that trusts `root` alone (tests: an upstream
    /// with a certificate of their own).
    #[cfg(test)]
    pub(crate) fn trusting(
        config: &ProviderConfig,
        root: rustls::pki_types::CertificateDer<'static>,
    ) -> Connector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(TcpConnector(http));
        Connector {
            route: Route::Direct(https),
            limit: config.timeouts.connect,
        }
    }
}

/// `inner` with TLS for `https` (HTTP/1.1 or HTTP/2 by ALPN), plain for `http`.
fn tls<C>(inner: C) -> Result<HttpsConnector<C>, BuildError> {
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(BuildError::Tls)?
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(inner))
}

impl tower::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Every inner connector is always ready (so is hyper's `HttpConnector`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let connecting: Connecting = match &mut self.route {
            Route::Direct(https) => {
                let connecting = https.call(uri);
                Box::pin(async move { Ok(UpstreamIo::new(connecting.await?, false)) })
            }
            Route::Proxied { tunnel, .. } if uri.scheme() == Some(&Scheme::HTTPS) => {
                let connecting = tunnel.call(uri);
                Box::pin(async move { Ok(UpstreamIo::new(connecting.await?, false)) })
            }
            Route::Proxied { plain, proxy, .. } => {
                let connecting = plain.call(proxy.clone());
                Box::pin(async move {
                    Ok(UpstreamIo::new(
                        MaybeHttpsStream::Http(connecting.await?),
                        true,
                    ))
                })
            }
        };
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected,
                // Read back as a connect timeout by `transport_failure`.
                Err(_) => Err(
                    Box::new(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                        as BoxError,
                ),
            }
        })
    }
}

/// hyper's TCP connector, its sockets wrapped in `Tcp`.
#[derive(Clone)]
struct TcpConnector(HttpConnector);

impl tower::Service<Uri> for TcpConnector {
    type Response = Tcp;
    type Error = BoxError;
    type Future = TcpConnecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> TcpConnecting {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            Ok(Tcp {
                stream: Some(connecting.await?),
                moves: Moves::default(),
            })
        })
    }
}

/// Asks an open connection's socket to move to the I/O driver of the thread that reads
/// or writes it next: set by the pool when a call on another request thread takes the
/// connection, so that its readiness wakes the thread that now uses it.
#[derive(Debug, Clone, Default)]
pub struct Moves(Arc<AtomicBool>);

impl Moves {
    /// The socket's next read or write registers it with the runtime that makes it.
    pub fn ask(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The TCP connection under an upstream connection (and its TLS).
struct Tcp {
    /// `None` only after a move failed (the connection then fails its calls).
    stream: Option<TokioIo<TcpStream>>,
    moves: Moves,
}

impl Tcp {
    /// The stream, registered with the current runtime's I/O driver first if asked
    /// (`Moves`). Inlined: it runs on every read and write of a call.
    #[inline]
    fn stream(&mut self) -> io::Result<Pin<&mut TokioIo<TcpStream>>> {
        if self.moves.0.load(Ordering::Relaxed) {
            self.move_here();
        }
        match &mut self.stream {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Deregisters the socket from its old driver and registers it with this one; if
    /// either fails, or the socket already holds a close or bytes no request asked for,
    /// the connection is closed (its calls fail, and the pool drops it). The check is
    /// made here because a new registration knows nothing of what arrived before it: the
    /// pool's one poll for a close (`Pool::checkout`) would not see it.
    #[cold]
    #[inline(never)]
    fn move_here(&mut self) {
        self.moves.0.store(false, Ordering::Relaxed);
        self.stream = self.stream.take().and_then(|stream| {
            let std = stream.into_inner().into_std().ok()?;
            // Non-blocking (as `into_std` leaves it): only "nothing yet" keeps it.
            match std.peek(&mut [0; 1]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => return None,
            }
            // Always reached from a poll on a runtime; `from_std` would panic off one.
            tokio::runtime::Handle::try_current().ok()?;
            TcpStream::from_std(std).ok().map(TokioIo::new)
        });
    }
}

impl Connection for Tcp {
    fn connected(&self) -> Connected {
        match &self.stream {
            Some(stream) => stream.connected(),
            None => Connected::new(),
        }
    }
}

impl Read for Tcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Write for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(Write::is_write_vectored)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => stream.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// An open connection to an upstream, or to the proxy that forwards `http` requests to it.
pub struct UpstreamIo {
    io: MaybeHttpsStream<Tcp>,
    /// Requests on it go in absolute form (`POST http://host/path`), to a proxy.
    to_proxy: bool,
}

impl UpstreamIo {
    fn new(io: MaybeHttpsStream<Tcp>, to_proxy: bool) -> UpstreamIo {
        UpstreamIo { io, to_proxy }
    }

    /// Moves its socket to another runtime's I/O driver (`Moves`).
    pub fn moves(&self) -> Moves {
        match &self.io {
            MaybeHttpsStream::Http(tcp) => tcp.moves.clone(),
            MaybeHttpsStream::Https(tls) => tls.inner().get_ref().0.inner().moves.clone(),
        }
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.to_proxy)
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
