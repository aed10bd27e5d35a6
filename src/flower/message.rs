//! One instruction, end to end: pull and verify its objects, decode, hand it to the handler,
//! build and push the reply.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::FlowerError;
use super::node::{FlowerNode, Instruction, MessageStats, NodeHandler, ReplyError, error_code};
use super::objects::{decode_message_content, encode_reply, object_id, tree_ids};
use super::proto;
use super::records::{RecordDict, scalars_to_values};

/// The most objects one message may consist of.
const MAX_OBJECTS: usize = 100_000;
/// Tries of an object that is found but not yet available.
const MAX_UNAVAILABLE_TRIES: u32 = 20;

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl FlowerNode {
    fn node(&self) -> Option<proto::Node> {
        Some(proto::Node {
            node_id: self.node_id,
        })
    }

    /// Handles one pulled message (see [`FlowerNode::run`]).
    pub(super) fn answer<H: NodeHandler>(
        &mut self,
        handler: &mut H,
        message: proto::Message,
        tree: Option<proto::ObjectTree>,
        started: Instant,
        pulled_bytes: usize,
    ) -> Result<(), FlowerError> {
        let metadata = message
            .metadata
            .ok_or_else(|| FlowerError::Protocol("pull-messages: a message without metadata".into()))?;
        let mut stats = MessageStats {
            message_type: metadata.message_type.clone(),
            group_id: metadata.group_id.clone(),
            bytes_pulled: pulled_bytes,
            ..MessageStats::default()
        };
        let run_config = self.run_config(metadata.run_id)?;
        let content = match tree {
            Some(tree) => self.pull_content(&metadata, &tree, &mut stats),
            None => Err(FlowerError::Protocol(
                "pull-messages: a message without its object tree".into(),
            )),
        };
        let mut handler_seconds = 0.0;
        let reply: Result<RecordDict, ReplyError> = match content {
            Ok(content) => {
                let instruction = Instruction {
                    message_type: metadata.message_type.clone(),
                    run_id: metadata.run_id,
                    group_id: metadata.group_id.clone(),
                    message_id: metadata.message_id.clone(),
                    content,
                    run_config,
                };
                let t = Instant::now();
                let reply = handler.handle(&instruction);
                handler_seconds = t.elapsed().as_secs_f64();
                reply
            }
            Err(e @ (FlowerError::Auth { .. } | FlowerError::Transport { .. })) => return Err(e),
            Err(e @ FlowerError::Http { .. }) => return Err(e),
            Err(e) => {
                eprintln!("flower: node {}: bad instruction: {e}", self.node_id);
                let code = match e {
                    FlowerError::MissingObject(_) | FlowerError::ObjectId { .. } => {
                        error_code::MESSAGE_UNAVAILABLE
                    }
                    _ => error_code::CLIENT_APP_RAISED_EXCEPTION,
                };
                Err(ReplyError {
                    code,
                    reason: format!("fedvlm node could not decode the instruction: {e}"),
                })
            }
        };
        stats.handler_seconds = handler_seconds;
        if let Err(e) = &reply {
            eprintln!(
                "flower: node {}: replying {} with {e}",
                self.node_id, metadata.message_type
            );
        }
        if !self.push_reply(&metadata, reply, handler_seconds, &mut stats)? {
            return Ok(());
        }
        stats.protocol_seconds = (started.elapsed().as_secs_f64() - handler_seconds).max(0.0);
        if self.config.log_messages {
            eprintln!(
                "flower: node {} run {} {} group {:?}: replied; pulled {} objects / {} B, pushed {} / {} B, protocol {:.3} s, handler {:.3} s",
                self.node_id,
                metadata.run_id,
                stats.message_type,
                stats.group_id,
                stats.objects_pulled,
                stats.bytes_pulled,
                stats.objects_pushed,
                stats.bytes_pushed,
                stats.protocol_seconds,
                stats.handler_seconds
            );
        }
        handler.after_reply(&stats);
        Ok(())
    }

    /// The run's override config, fetched with get-run the first time.
    fn run_config(&mut self, run_id: u64) -> Result<Vec<(String, crate::flower::Value)>, FlowerError> {
        if let Some(config) = self.runs.get(&run_id) {
            return Ok(config.clone());
        }
        let request = proto::GetRunRequest {
            node: self.node(),
            run_id,
        };
        let response: proto::GetRunResponse = self.client.call("get-run", &request)?;
        let config = response
            .run
            .map(|run| scalars_to_values(&run.override_config))
            .unwrap_or_default();
        self.runs.insert(run_id, config.clone());
        Ok(config)
    }

    /// Pulls and verifies every object of `tree`, confirms receipt, decodes the content.
    fn pull_content(
        &self,
        metadata: &proto::Metadata,
        tree: &proto::ObjectTree,
        stats: &mut MessageStats,
    ) -> Result<RecordDict, FlowerError> {
        if tree.object_id != metadata.message_id {
            return Err(FlowerError::Protocol(format!(
                "the object tree's root {} is not the message {}",
                tree.object_id, metadata.message_id
            )));
        }
        let ids = tree_ids(tree);
        if ids.len() > MAX_OBJECTS {
            return Err(FlowerError::Protocol(format!(
                "a message of {} objects",
                ids.len()
            )));
        }
        let mut objects = HashMap::with_capacity(ids.len());
        for id in ids {
            let bytes = self.pull_object(metadata.run_id, &id, stats)?;
            objects.insert(id, bytes);
        }
        let request = proto::ConfirmMessageReceivedRequest {
            node: self.node(),
            run_id: metadata.run_id,
            message_object_id: metadata.message_id.clone(),
        };
        self.client
            .call::<_, proto::ConfirmMessageReceivedResponse>("confirm-message-received", &request)?;
        decode_message_content(&metadata.message_id, &objects)
    }

    fn pull_object(
        &self,
        run_id: u64,
        id: &str,
        stats: &mut MessageStats,
    ) -> Result<Vec<u8>, FlowerError> {
        let request = proto::PullObjectRequest {
            node: self.node(),
            run_id,
            object_id: id.to_string(),
        };
        let mut wait = self.config.retry_backoff.max(Duration::from_millis(50));
        for _ in 0..MAX_UNAVAILABLE_TRIES {
            let pulled = self
                .client
                .exchange::<_, proto::PullObjectResponse>("pull-object", &request)?;
            stats.bytes_pulled += pulled.received;
            let response = pulled.response;
            if !response.object_found {
                return Err(FlowerError::MissingObject(id.to_string()));
            }
            if response.object_available {
                let found = object_id(&response.object_content);
                if found != id {
                    return Err(FlowerError::ObjectId {
                        expected: id.to_string(),
                        found,
                    });
                }
                stats.objects_pulled += 1;
                return Ok(response.object_content);
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        Err(FlowerError::MissingObject(format!(
            "{id} (found but never available)"
        )))
    }

    /// Builds and pushes the reply; `Ok(false)` when it was skipped (TTL expired).
    fn push_reply(
        &self,
        ins: &proto::Metadata,
        reply: Result<RecordDict, ReplyError>,
        clientapp_runtime: f64,
        stats: &mut MessageStats,
    ) -> Result<bool, FlowerError> {
        let now = now_unix();
        let ttl = ins.created_at + ins.ttl - now;
        if ttl.is_nan() || ttl <= 0.0 {
            eprintln!(
                "flower: node {}: the {} instruction {} expired (ttl {ttl:.1} s); no reply",
                self.node_id, ins.message_type, ins.message_id
            );
            return Ok(false);
        }
        let metadata = proto::Metadata {
            run_id: ins.run_id,
            message_id: String::new(),
            src_node_id: self.node_id,
            dst_node_id: ins.src_node_id,
            reply_to_message_id: ins.message_id.clone(),
            group_id: ins.group_id.clone(),
            ttl,
            message_type: ins.message_type.clone(),
            created_at: now,
            src_task_id: None,
            dst_task_id: ins.src_task_id,
        };
        let error;
        let content = match &reply {
            Ok(dict) => Ok(dict),
            Err(e) => {
                error = proto::Error {
                    code: e.code,
                    reason: e.reason.clone(),
                };
                Err(&error)
            }
        };
        let (message, encoded) = encode_reply(metadata, content)?;
        let request = proto::PushMessagesRequest {
            node: self.node(),
            messages_list: vec![message],
            message_object_trees: vec![encoded.tree.clone()],
            clientapp_runtime_list: vec![clientapp_runtime],
        };
        let pushed = self
            .client
            .exchange::<_, proto::PushMessagesResponse>("push-messages", &request)?;
        stats.bytes_pushed += pushed.sent;
        let wanted: HashSet<&str> = pushed
            .response
            .objects_to_push
            .iter()
            .map(String::as_str)
            .collect();
        if let Some(unknown) = wanted
            .iter()
            .find(|id| !encoded.objects.iter().any(|(o, _)| o == *id))
        {
            return Err(FlowerError::Protocol(format!(
                "push-messages asked for {unknown}, which the reply does not contain"
            )));
        }
        for (id, bytes) in encoded.objects.iter().filter(|(id, _)| wanted.contains(id.as_str())) {
            let request = proto::PushObjectRequest {
                node: self.node(),
                run_id: ins.run_id,
                object_id: id.clone(),
                object_content: bytes.clone(),
                session_id: pushed.response.session_id.clone(),
            };
            let sent = self
                .client
                .exchange::<_, proto::PushObjectResponse>("push-object", &request)?;
            stats.bytes_pushed += sent.sent;
            stats.objects_pushed += 1;
            if !sent.response.stored {
                return Err(FlowerError::Protocol(format!(
                    "push-object: the SuperLink did not store {id}"
                )));
            }
        }
        Ok(true)
    }
}
