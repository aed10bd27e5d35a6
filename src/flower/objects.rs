//! Flower's content-addressed objects ("inflatables").
//!
//! A message travels as a tree of objects, each the bytes `"<Type> <child ids> <body length>"`,
//! a NUL byte, then the body; its id is the hex sha256 of those bytes:
//! `Message` → `RecordDict` → `ArrayRecord` / `ConfigRecord` / `MetricRecord`, and
//! `ArrayRecord` → `Array` → `ArrayChunk` (slices of at most [`CHUNK_SIZE`] bytes of a `.npy`
//! file). JSON bodies are written like Python's `json.dumps`, so ids match what flwr computes
//! for the same content.

use std::collections::HashMap;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::error::FlowerError;
use super::npy::{decode_npy, encode_npy};
use super::proto;
use super::records::{ArrayRecord, ConfigRecord, MetricRecord, NdArray, Record, RecordDict};

mod json;

/// The largest slice of an array's `.npy` bytes in one `ArrayChunk` (5 MiB, as in flwr).
pub const CHUNK_SIZE: usize = 5 * 1024 * 1024;

/// The most bytes one array may reassemble to (2 GiB): repeated chunk indices cannot make the
/// node allocate more.
pub const MAX_ARRAY_BYTES: usize = 1 << 31;

/// The object id of an object's full bytes (head, NUL, body): lowercase hex sha256.
pub fn object_id(object_bytes: &[u8]) -> String {
    let digest = Sha256::digest(object_bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The bytes of an object: head, NUL, body.
pub fn make_object(type_name: &str, children: &[String], body: &[u8]) -> Vec<u8> {
    let head = format!("{type_name} {} {}", children.join(","), body.len());
    let mut out = Vec::with_capacity(head.len() + 1 + body.len());
    out.extend_from_slice(head.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

/// An object split into its type, child ids and body.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedObject<'a> {
    /// The type name, e.g. `ArrayRecord`.
    pub type_name: &'a str,
    /// The child ids in head order.
    pub children: Vec<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Splits an object into head and body, checking the head's form and the body length.
pub fn parse_object(bytes: &[u8]) -> Result<ParsedObject<'_>, FlowerError> {
    let what = "object head";
    let nul = bytes
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| FlowerError::decode(what, "no NUL after the head"))?;
    let head = std::str::from_utf8(&bytes[..nul]).map_err(|e| FlowerError::decode(what, e))?;
    let body = &bytes[nul + 1..];
    let mut parts = head.split(' ');
    let (Some(type_name), Some(children), Some(len), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(FlowerError::decode(what, format!("`{head}` is not 3 fields")));
    };
    let len: usize = len
        .parse()
        .map_err(|_| FlowerError::decode(what, format!("bad body length `{len}`")))?;
    if len != body.len() {
        return Err(FlowerError::decode(
            what,
            format!("head says {len} body bytes, found {}", body.len()),
        ));
    }
    let children = if children.is_empty() {
        Vec::new()
    } else {
        children.split(',').collect()
    };
    Ok(ParsedObject {
        type_name,
        children,
        body,
    })
}

/// Looks up `id`, checks that its bytes hash to it and that its type is `type_name`.
fn fetch<'a>(
    id: &str,
    type_name: &str,
    objects: &'a HashMap<String, Vec<u8>>,
) -> Result<ParsedObject<'a>, FlowerError> {
    let bytes = objects
        .get(id)
        .ok_or_else(|| FlowerError::MissingObject(id.to_string()))?;
    let found = object_id(bytes);
    if found != id {
        return Err(FlowerError::ObjectId {
            expected: id.to_string(),
            found,
        });
    }
    let parsed = parse_object(bytes)?;
    if parsed.type_name != type_name {
        return Err(FlowerError::decode(
            format!("object {id}"),
            format!("expected a {type_name}, found a {}", parsed.type_name),
        ));
    }
    Ok(parsed)
}

/// Checks that every id a JSON body refers to is one of the head's children, and back.
fn check_children(what: &str, head: &[&str], refs: &[&str]) -> Result<(), FlowerError> {
    let missing = refs.iter().find(|r| !head.contains(r));
    let extra = head.iter().find(|h| !refs.contains(h));
    match (missing, extra) {
        (None, None) => Ok(()),
        (Some(r), _) => Err(FlowerError::decode(
            what,
            format!("refers to {r}, which its head does not list"),
        )),
        (_, Some(h)) => Err(FlowerError::decode(
            what,
            format!("head lists {h}, which its body does not use"),
        )),
    }
}

/// Rebuilds the content of the message object `message_object_id` from pulled objects, checking
/// every id against its bytes, every type name, child list and length, and every chunk index.
pub fn decode_message_content(
    message_object_id: &str,
    objects: &HashMap<String, Vec<u8>>,
) -> Result<RecordDict, FlowerError> {
    let message = fetch(message_object_id, "Message", objects)?;
    proto::Message::decode(message.body)
        .map_err(|e| FlowerError::decode("Message object body", e))?;
    let [rd_id] = message.children.as_slice() else {
        return Err(FlowerError::decode(
            "Message object",
            format!(
                "has {} children, a message with content has 1",
                message.children.len()
            ),
        ));
    };
    let rd = fetch(rd_id, "RecordDict", objects)?;
    let refs = json::parse_str_map(rd.body, "RecordDict body")?;
    let ids: Vec<&str> = refs.iter().map(|(_, v)| v.as_str()).collect();
    check_children("RecordDict", &rd.children, &ids)?;
    let mut records = Vec::with_capacity(refs.len());
    for (name, id) in &refs {
        let bytes = objects
            .get(id)
            .ok_or_else(|| FlowerError::MissingObject(id.clone()))?;
        let record = match parse_object(bytes)?.type_name {
            "ArrayRecord" => Record::Arrays(decode_array_record(id, objects)?),
            "ConfigRecord" => {
                let body = fetch(id, "ConfigRecord", objects)?.body;
                let p = proto::ConfigRecord::decode(body)
                    .map_err(|e| FlowerError::decode("ConfigRecord body", e))?;
                Record::Config(ConfigRecord::from_proto(p)?)
            }
            "MetricRecord" => {
                let body = fetch(id, "MetricRecord", objects)?.body;
                let p = proto::MetricRecord::decode(body)
                    .map_err(|e| FlowerError::decode("MetricRecord body", e))?;
                Record::Metrics(MetricRecord::from_proto(p)?)
            }
            other => {
                return Err(FlowerError::decode(
                    format!("record `{name}`"),
                    format!("`{other}` is not a record type"),
                ));
            }
        };
        records.push((name.clone(), record));
    }
    Ok(RecordDict { records })
}

fn decode_array_record(
    id: &str,
    objects: &HashMap<String, Vec<u8>>,
) -> Result<ArrayRecord, FlowerError> {
    let record = fetch(id, "ArrayRecord", objects)?;
    let refs = json::parse_str_map(record.body, "ArrayRecord body")?;
    let ids: Vec<&str> = refs.iter().map(|(_, v)| v.as_str()).collect();
    check_children("ArrayRecord", &record.children, &ids)?;
    let mut arrays = Vec::with_capacity(refs.len());
    for (name, array_id) in &refs {
        arrays.push((name.clone(), decode_array(name, array_id, objects)?));
    }
    Ok(ArrayRecord { arrays })
}

fn decode_array(
    name: &str,
    id: &str,
    objects: &HashMap<String, Vec<u8>>,
) -> Result<NdArray, FlowerError> {
    let array = fetch(id, "Array", objects)?;
    let meta = json::parse_array_meta(array.body)?;
    let bad = |detail: String| FlowerError::Array {
        name: name.to_string(),
        detail,
    };
    if meta.stype != "numpy.ndarray" {
        return Err(bad(format!("stype `{}` is not numpy.ndarray", meta.stype)));
    }
    let mut chunks = Vec::with_capacity(array.children.len());
    for chunk_id in &array.children {
        chunks.push(fetch(chunk_id, "ArrayChunk", objects)?.body);
    }
    let mut total = 0usize;
    for index in &meta.arraychunk_ids {
        let chunk = chunks.get(*index).ok_or_else(|| {
            bad(format!(
                "chunk index {index} out of range ({} chunks)",
                chunks.len()
            ))
        })?;
        total = total.saturating_add(chunk.len());
    }
    if total > MAX_ARRAY_BYTES {
        return Err(bad(format!("{total} bytes is more than the node accepts")));
    }
    let mut data = Vec::with_capacity(total);
    for chunk in meta.arraychunk_ids.iter().filter_map(|i| chunks.get(*i)) {
        data.extend_from_slice(chunk);
    }
    let decoded = decode_npy(&data).map_err(|e| bad(e.to_string()))?;
    if decoded.dtype.numpy_name() != meta.dtype {
        return Err(bad(format!(
            "dtype `{}` but the data is {}",
            meta.dtype,
            decoded.dtype.numpy_name()
        )));
    }
    if decoded.shape != meta.shape {
        return Err(bad(format!(
            "shape {:?} but the data is {:?}",
            meta.shape, decoded.shape
        )));
    }
    Ok(decoded)
}

/// A message split into objects, ready to push.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedMessage {
    /// The `Message` object's id (the message id).
    pub message_id: String,
    /// The object tree sent with push-messages.
    pub tree: proto::ObjectTree,
    /// Every object once, children before parents (post-order).
    pub objects: Vec<(String, Vec<u8>)>,
}

/// Collects objects in post-order, once each.
#[derive(Default)]
struct Objects {
    list: Vec<(String, Vec<u8>)>,
    children: HashMap<String, Vec<String>>,
}

impl Objects {
    /// Adds an object (unless already present) and returns its id.
    fn add(&mut self, type_name: &str, children: Vec<String>, body: &[u8]) -> String {
        let bytes = make_object(type_name, &children, body);
        let id = object_id(&bytes);
        if !self.children.contains_key(&id) {
            self.children.insert(id.clone(), children);
            self.list.push((id.clone(), bytes));
        }
        id
    }

    fn tree(&self, id: &str) -> proto::ObjectTree {
        let children = self
            .children
            .get(id)
            .map(|c| c.iter().map(|c| self.tree(c)).collect())
            .unwrap_or_default();
        proto::ObjectTree {
            object_id: id.to_string(),
            children,
        }
    }
}

/// The unique ids of `ids`, first occurrence first (like Python's `dict.fromkeys`).
fn unique(ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

fn encode_array(objects: &mut Objects, array: &NdArray) -> String {
    let data = encode_npy(array);
    let chunk_ids: Vec<String> = data
        .chunks(CHUNK_SIZE)
        .map(|c| objects.add("ArrayChunk", Vec::new(), c))
        .collect();
    let uniq = unique(&chunk_ids);
    let indices: Vec<usize> = chunk_ids
        .iter()
        .map(|id| uniq.iter().position(|u| u == id).unwrap_or(0))
        .collect();
    let body = json::array_meta(array.dtype.numpy_name(), &array.shape, &indices);
    objects.add("Array", uniq, body.as_bytes())
}

fn encode_record_dict(objects: &mut Objects, dict: &RecordDict) -> Result<String, FlowerError> {
    let mut refs = Vec::with_capacity(dict.records.len());
    for (name, record) in &dict.records {
        let id = match record {
            Record::Arrays(r) => {
                let mut ids = Vec::with_capacity(r.arrays.len());
                for (n, a) in &r.arrays {
                    a.check(n)?;
                    ids.push((n.clone(), encode_array(objects, a)));
                }
                let children = unique(&ids.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>());
                objects.add("ArrayRecord", children, json::str_map(&ids).as_bytes())
            }
            Record::Config(r) => objects.add("ConfigRecord", vec![], &r.to_proto().encode_to_vec()),
            Record::Metrics(r) => {
                objects.add("MetricRecord", vec![], &r.to_proto()?.encode_to_vec())
            }
        };
        refs.push((name.clone(), id));
    }
    let children = unique(&refs.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>());
    Ok(objects.add("RecordDict", children, json::str_map(&refs).as_bytes()))
}

/// Encodes a reply: its objects (post-order), tree and id, and the `Message` to push with
/// push-messages (metadata with `message_id` set to the `Message` object's id, as flwr does;
/// an empty content for a content reply, the error for an error reply).
pub fn encode_reply(
    mut metadata: proto::Metadata,
    content: Result<&RecordDict, &proto::Error>,
) -> Result<(proto::Message, EncodedMessage), FlowerError> {
    let mut objects = Objects::default();
    metadata.message_id = String::new();
    let (children, error) = match content {
        Ok(dict) => (vec![encode_record_dict(&mut objects, dict)?], None),
        Err(e) => (Vec::new(), Some(e.clone())),
    };
    let body = proto::Message {
        metadata: Some(metadata.clone()),
        content: None,
        error: error.clone(),
    }
    .encode_to_vec();
    let message_id = objects.add("Message", children, &body);
    metadata.message_id = message_id.clone();
    let message = proto::Message {
        metadata: Some(metadata),
        content: error.is_none().then(proto::RecordDict::default),
        error,
    };
    let tree = objects.tree(&message_id);
    Ok((
        message,
        EncodedMessage {
            message_id,
            tree,
            objects: objects.list,
        },
    ))
}

/// Every object id of a tree, parents before children (the order to pull in), iteratively.
pub fn tree_ids(tree: &proto::ObjectTree) -> Vec<String> {
    let mut ids = Vec::new();
    let mut stack = vec![tree];
    while let Some(t) = stack.pop() {
        if !ids.contains(&t.object_id) {
            ids.push(t.object_id.clone());
        }
        stack.extend(t.children.iter().rev());
    }
    ids
}
