//! The Fleet API client: one `POST {base}/v1/fleet/<rpc>` per call, protobuf in and out, signed
//! headers, retries with exponential backoff on connection failures and 5xx answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

use super::auth::NodeKey;
use super::error::FlowerError;

/// How to reach the SuperLink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP (`flower-superlink --insecure`).
    Insecure,
    /// HTTPS, verifying the server against these PEM root certificates (the CA).
    Tls {
        /// A PEM file with one or more CA certificates.
        root_certificates: PathBuf,
    },
}

/// The largest response body accepted (a 5 MiB chunk plus headroom).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The Flower release this node speaks. It announces itself as this version of Flower's
/// SuperNode with the headers Flower's own SuperNode sends (`flwr-package-name`,
/// `flwr-package-version`, `flwr-component-name`). A SuperLink 1.42 only logs a major.minor
/// mismatch (its Fleet API is built with `reject_incompatible=False`, "temporary" in Flower's
/// code); one that rejects it answers with an HTTP error, and one that reports it in the
/// `flwr-version-incompatibility-message` header makes every call fail with
/// [`FlowerError::Protocol`] naming the mismatch: the node exits with the message, it does not
/// hang.
pub const FLOWER_VERSION: &str = "1.42.0";

/// A signed Fleet API client (cheap to clone: clones share connections).
#[derive(Clone)]
pub struct FleetClient {
    agent: ureq::Agent,
    base: String,
    key: NodeKey,
    max_retries: u32,
    backoff: Duration,
    flower_version: String,
}

/// A decoded response and the bytes that went over the wire for it.
#[derive(Debug, Clone)]
pub struct Exchange<T> {
    /// The response.
    pub response: T,
    /// Request body bytes sent (last attempt).
    pub sent: usize,
    /// Response body bytes received.
    pub received: usize,
}

impl FleetClient {
    /// A client for `superlink` (`HOST:PORT`) that signs with `key`, gives every request
    /// `request_timeout` and retries transient failures `max_retries` times, first after
    /// `backoff`, then doubling.
    pub fn new(
        superlink: &str,
        transport: &Transport,
        key: NodeKey,
        request_timeout: Duration,
        max_retries: u32,
        backoff: Duration,
    ) -> Result<Self, FlowerError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(request_timeout))
            .proxy(None);
        let scheme = match transport {
            Transport::Insecure => "http",
            Transport::Tls { root_certificates } => {
                let pem = std::fs::read(root_certificates).map_err(|source| FlowerError::Io {
                    path: root_certificates.clone(),
                    source,
                })?;
                let mut certs = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    if let Ok(PemItem::Certificate(c)) = item {
                        certs.push(c);
                    }
                }
                if certs.is_empty() {
                    return Err(FlowerError::Key(format!(
                        "{}: no PEM certificate",
                        root_certificates.display()
                    )));
                }
                let tls = TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(certs)))
                    .build();
                config = config.tls_config(tls);
                "https"
            }
        };
        Ok(Self {
            agent: config.build().into(),
            base: format!("{scheme}://{superlink}/v1/fleet/"),
            key,
            max_retries,
            backoff,
            flower_version: FLOWER_VERSION.to_string(),
        })
    }

    /// The same client with another retry count.
    pub fn with_max_retries(&self, max_retries: u32) -> Self {
        Self {
            max_retries,
            ..self.clone()
        }
    }

    /// The same client announcing another Flower version (tests of the SuperLink's version
    /// check; a real node keeps [`FLOWER_VERSION`]).
    pub fn with_flower_version(&self, version: impl Into<String>) -> Self {
        Self {
            flower_version: version.into(),
            ..self.clone()
        }
    }

    /// The node's key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// Calls `rpc` (kebab case, e.g. `pull-messages`), retrying transient failures.
    pub fn call<Req: Message, Resp: Message + Default>(
        &self,
        rpc: &str,
        request: &Req,
    ) -> Result<Resp, FlowerError> {
        self.exchange(rpc, request).map(|e| e.response)
    }

    /// Like [`FleetClient::call`], with the byte counts.
    pub fn exchange<Req: Message, Resp: Message + Default>(
        &self,
        rpc: &str,
        request: &Req,
    ) -> Result<Exchange<Resp>, FlowerError> {
        let body = request.encode_to_vec();
        let mut wait = self.backoff;
        let mut attempt = 0;
        loop {
            match self.once(rpc, &body) {
                Ok(bytes) => {
                    let response = Resp::decode(bytes.as_slice())
                        .map_err(|e| FlowerError::decode(format!("{rpc} response"), e))?;
                    return Ok(Exchange {
                        response,
                        sent: body.len(),
                        received: bytes.len(),
                    });
                }
                Err((e, transient)) if transient && attempt < self.max_retries => {
                    attempt += 1;
                    eprintln!(
                        "flower: {e}; retry {attempt}/{} in {:.1} s",
                        self.max_retries,
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                    wait = wait.saturating_mul(2).min(MAX_BACKOFF);
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One attempt: the response body of a 200, or the error and whether it is transient.
    fn once(&self, rpc: &str, body: &[u8]) -> Result<Vec<u8>, (FlowerError, bool)> {
        let headers = self.key.auth_headers().map_err(|e| (e, false))?;
        let mut request = self
            .agent
            .post(format!("{}{rpc}", self.base))
            .header("content-type", "application/protobuf")
            .header("accept", "application/protobuf")
            .header("flwr-package-name", "flwr")
            .header("flwr-package-version", self.flower_version.as_str())
            .header("flwr-component-name", "SuperNode");
        for (name, value) in &headers {
            request = request.header(*name, value.as_str());
        }
        let transport = |e: ureq::Error| {
            let transient = matches!(
                e,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::HostNotFound
                    | ureq::Error::Protocol(_)
            );
            let error = FlowerError::Transport {
                rpc: rpc.to_string(),
                message: e.to_string(),
            };
            (error, transient)
        };
        let mut response = request.send(body).map_err(transport)?;
        if let Some(message) = response
            .headers()
            .get("flwr-version-incompatibility-message")
            .and_then(|v| v.to_str().ok())
        {
            let error = FlowerError::Protocol(format!(
                "{rpc}: the SuperLink reports a Flower version mismatch (this node speaks \
                 Flower {}): {message}",
                self.flower_version
            ));
            return Err((error, false));
        }
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(transport)?;
        if status == 200 {
            return Ok(bytes);
        }
        let text: String = String::from_utf8_lossy(&bytes).chars().take(400).collect();
        let (rpc, body) = (rpc.to_string(), text);
        Err(match status {
            401 | 412 => (FlowerError::Auth { rpc, status, body }, false),
            500.. => (FlowerError::Http { rpc, status, body }, true),
            _ => (FlowerError::Http { rpc, status, body }, false),
        })
    }
}
