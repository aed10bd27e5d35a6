//! The node's life: register, activate, heartbeat, poll for instructions, reply, leave.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::auth::NodeKey;
use super::error::FlowerError;
use super::fleet::FleetClient;
pub use super::fleet::Transport;
use super::proto;
use super::records::{RecordDict, Value};

/// Flower's `ErrorCode` values (flwr 1.42 `flwr/common/constant.py`), for [`ReplyError::code`].
pub mod error_code {
    /// Unknown error.
    pub const UNKNOWN: i64 = 0;
    /// The ClientApp could not be loaded.
    pub const LOAD_CLIENT_APP_EXCEPTION: i64 = 1;
    /// The ClientApp raised an exception (what flwr replies when the app fails).
    pub const CLIENT_APP_RAISED_EXCEPTION: i64 = 2;
    /// The instruction's content could not be fetched.
    pub const MESSAGE_UNAVAILABLE: i64 = 3;
    /// The reply could not be fetched.
    pub const REPLY_MESSAGE_UNAVAILABLE: i64 = 4;
    /// The node went away.
    pub const NODE_UNAVAILABLE: i64 = 5;
    /// A mod's precondition failed.
    pub const MOD_FAILED_PRECONDITION: i64 = 6;
    /// The FAB is invalid.
    pub const INVALID_FAB: i64 = 7;
    /// The ClientApp crashed.
    pub const CLIENT_APP_CRASHED: i64 = 8;
}

/// One instruction from the ServerApp, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// `train`, `evaluate`, `query` (or a custom type).
    pub message_type: String,
    /// The run it belongs to.
    pub run_id: u64,
    /// The group (stock strategies: the round number as a string).
    pub group_id: String,
    /// The instruction's message id.
    pub message_id: String,
    /// The content.
    pub content: RecordDict,
    /// The run's `override_config` (from get-run), in key order.
    pub run_config: Vec<(String, Value)>,
}

/// A handler's refusal; the node replies with Flower's `Error{code, reason}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// One of [`error_code`].
    pub code: i64,
    /// A human-readable reason (the ServerApp sees it).
    pub reason: String,
}

impl ReplyError {
    /// An error with code [`error_code::CLIENT_APP_RAISED_EXCEPTION`], as flwr sends when a
    /// ClientApp raises.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            code: error_code::CLIENT_APP_RAISED_EXCEPTION,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {}", self.code, self.reason)
    }
}

/// What one handled message cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageStats {
    /// The instruction's type.
    pub message_type: String,
    /// The instruction's group.
    pub group_id: String,
    /// Response bytes of pull-messages and pull-object for this message.
    pub bytes_pulled: usize,
    /// Request bytes of push-messages and push-object for the reply.
    pub bytes_pushed: usize,
    /// Objects pulled.
    pub objects_pulled: usize,
    /// Objects pushed.
    pub objects_pushed: usize,
    /// Wall seconds in the protocol (everything but the handler), from pull to last push.
    pub protocol_seconds: f64,
    /// Wall seconds in [`NodeHandler::handle`].
    pub handler_seconds: f64,
}

/// What a node does with instructions.
pub trait NodeHandler {
    /// Answers one instruction: the reply's content, or an error the ServerApp will see.
    fn handle(&mut self, instruction: &Instruction) -> Result<RecordDict, ReplyError>;

    /// Called after a reply went out (content or error), with what it cost.
    fn after_reply(&mut self, _stats: &MessageStats) {}
}

/// How a node connects.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The SuperLink's Fleet API, `HOST:PORT`.
    pub superlink: String,
    /// Plain HTTP or TLS.
    pub transport: Transport,
    /// A pre-registered private key (node authentication; register-node is skipped). Without
    /// one the node makes a fresh key and registers itself.
    pub auth_key: Option<PathBuf>,
    /// Seconds the SuperLink waits for the next heartbeat (Flower's default: 30); heartbeats go
    /// out at 80% of it.
    pub heartbeat_interval: f64,
    /// Sleep between two empty pulls.
    pub poll_interval: Duration,
    /// Retries of a transient failure (connection, timeout, 5xx) before giving up.
    pub max_retries: u32,
    /// The first retry's wait (doubling after).
    pub retry_backoff: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Print one line per handled message on stderr (errors are always printed).
    pub log_messages: bool,
}

impl NodeConfig {
    /// Plain HTTP to `superlink` (`HOST:PORT`) with a fresh key and Flower's defaults.
    pub fn insecure(superlink: impl Into<String>) -> Self {
        Self {
            superlink: superlink.into(),
            transport: Transport::Insecure,
            auth_key: None,
            heartbeat_interval: 30.0,
            poll_interval: Duration::from_secs(1),
            max_retries: 5,
            retry_backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(60),
            log_messages: true,
        }
    }
}

type StopSignal = Arc<(Mutex<bool>, Condvar)>;

/// A Flower SuperNode speaking the Fleet API to a SuperLink.
pub struct FlowerNode {
    pub(super) client: FleetClient,
    pub(super) config: NodeConfig,
    pub(super) node_id: u64,
    self_registered: bool,
    heartbeat: Option<(JoinHandle<()>, StopSignal)>,
    pub(super) runs: HashMap<u64, Vec<(String, Value)>>,
    closed: bool,
}

impl FlowerNode {
    /// Loads or creates the key, registers (unless `auth_key` is set), activates and starts
    /// the heartbeat thread.
    pub fn connect(config: NodeConfig) -> Result<Self, FlowerError> {
        let key = match &config.auth_key {
            Some(path) => NodeKey::from_file(path)?,
            None => NodeKey::generate()?,
        };
        let client = FleetClient::new(
            &config.superlink,
            &config.transport,
            key,
            config.request_timeout,
            config.max_retries,
            config.retry_backoff,
        )?;
        let public_key = client.key().public_key_pem().as_bytes().to_vec();
        let self_registered = config.auth_key.is_none();
        if self_registered {
            let request = proto::RegisterNodeFleetRequest {
                public_key: public_key.clone(),
            };
            client.call::<_, proto::RegisterNodeFleetResponse>("register-node", &request)?;
        }
        let request = proto::ActivateNodeRequest {
            public_key,
            heartbeat_interval: config.heartbeat_interval,
        };
        let activated: proto::ActivateNodeResponse = client.call("activate-node", &request)?;
        let node_id = activated.node_id;
        let mut node = Self {
            client,
            config,
            node_id,
            self_registered,
            heartbeat: None,
            runs: HashMap::new(),
            closed: false,
        };
        node.start_heartbeat();
        Ok(node)
    }

    /// The id the SuperLink gave this node.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    fn start_heartbeat(&mut self) {
        let stop: StopSignal = Arc::new((Mutex::new(false), Condvar::new()));
        let (client, node_id) = (self.client.clone(), self.node_id);
        let interval = self.config.heartbeat_interval.max(1.0);
        let every = Duration::from_secs_f64(interval * 0.8);
        let signal = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (lock, cvar) = &*signal;
            let mut next = Instant::now() + every;
            loop {
                let Ok(mut stopped) = lock.lock() else { return };
                while !*stopped && Instant::now() < next {
                    let left = next.saturating_duration_since(Instant::now());
                    stopped = match cvar.wait_timeout(stopped, left) {
                        Ok((guard, _)) => guard,
                        Err(_) => return,
                    };
                }
                if *stopped {
                    return;
                }
                drop(stopped);
                let request = proto::SendNodeHeartbeatRequest {
                    node: Some(proto::Node { node_id }),
                    heartbeat_interval: interval,
                };
                match client.call::<_, proto::SendNodeHeartbeatResponse>(
                    "send-node-heartbeat",
                    &request,
                ) {
                    Ok(r) if !r.success => {
                        eprintln!("flower: node {node_id}: the SuperLink refused a heartbeat")
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("flower: node {node_id}: heartbeat failed: {e}"),
                }
                next = Instant::now() + every;
            }
        });
        self.heartbeat = Some((handle, stop));
    }

    fn stop_heartbeat(&mut self) {
        if let Some((handle, stop)) = self.heartbeat.take() {
            let (lock, cvar) = &*stop;
            if let Ok(mut stopped) = lock.lock() {
                *stopped = true;
            }
            cvar.notify_all();
            let _ = handle.join();
        }
    }

    /// Polls for instructions and answers each with `handler` until `stop` is set.
    ///
    /// Per message: get-run on a new run, pull and verify every object, confirm, handle, push
    /// the reply. A handler error or undecodable content becomes an error reply and the loop
    /// goes on; a failure to reach the SuperLink (after retries) or an auth failure ends it.
    pub fn run<H: NodeHandler>(
        &mut self,
        handler: &mut H,
        stop: &AtomicBool,
    ) -> Result<(), FlowerError> {
        while !stop.load(Ordering::Relaxed) {
            let request = proto::PullMessagesRequest {
                node: Some(proto::Node {
                    node_id: self.node_id,
                }),
                message_ids: Vec::new(),
            };
            let started = Instant::now();
            let pulled = self
                .client
                .exchange::<_, proto::PullMessagesResponse>("pull-messages", &request)?;
            let bytes = pulled.received;
            let mut response = pulled.response;
            if response.messages_list.is_empty() {
                self.sleep(stop);
                continue;
            }
            let message = response.messages_list.swap_remove(0);
            let tree = response.message_object_trees.into_iter().next();
            match self.answer(handler, message, tree, started, bytes) {
                Ok(()) => {}
                Err(e @ FlowerError::Auth { .. }) => return Err(e),
                Err(e) => eprintln!("flower: node {}: message failed: {e}", self.node_id),
            }
        }
        Ok(())
    }

    fn sleep(&self, stop: &AtomicBool) {
        let until = Instant::now() + self.config.poll_interval;
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// Leaves the federation: stops the heartbeat, deactivates, and unregisters a
    /// self-registered node.
    pub fn shutdown(mut self) -> Result<(), FlowerError> {
        self.close(&self.client.clone())
    }

    fn close(&mut self, client: &FleetClient) -> Result<(), FlowerError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.stop_heartbeat();
        let node_id = self.node_id;
        client.call::<_, proto::DeactivateNodeResponse>(
            "deactivate-node",
            &proto::DeactivateNodeRequest { node_id },
        )?;
        if self.self_registered {
            client.call::<_, proto::UnregisterNodeFleetResponse>(
                "unregister-node",
                &proto::UnregisterNodeFleetRequest { node_id },
            )?;
        }
        Ok(())
    }
}

impl Drop for FlowerNode {
    fn drop(&mut self) {
        if !self.closed {
            // Best effort, without retries: the process may be going down.
            let client = self.client.with_max_retries(0);
            if let Err(e) = self.close(&client) {
                eprintln!("flower: node {}: leaving failed: {e}", self.node_id);
            }
        }
    }
}
