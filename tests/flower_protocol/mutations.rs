//! Malformed objects: typed errors, never a panic. Hand-made broken messages, then a seeded
//! loop of random mutations whose ids are repaired up to the root so decoding gets deep.

use std::collections::HashMap;

use fedvlm::flower::objects::{MAX_ARRAY_BYTES, make_object, parse_object};
use fedvlm::flower::{
    FlowerError, NdArray, NpyDtype, decode_message_content, encode_npy, object_id,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::fixtures::decode_as;
use super::{fixture_dir, object_map, reference, reference_objects};

/// A message holding one array record `arrays` with one array `x` whose Array body and chunk
/// objects are given; returns the message id and objects.
fn message_with_array(array_body: &str, chunks: &[Vec<u8>]) -> (String, HashMap<String, Vec<u8>>) {
    let mut objects = HashMap::new();
    let mut add = |type_name: &str, children: Vec<String>, body: &[u8]| {
        let bytes = make_object(type_name, &children, body);
        let id = object_id(&bytes);
        objects.insert(id.clone(), bytes);
        id
    };
    let chunk_ids: Vec<String> = chunks.iter().map(|c| add("ArrayChunk", vec![], c)).collect();
    let mut unique = chunk_ids.clone();
    unique.dedup();
    let array = add("Array", unique, array_body.as_bytes());
    let record = add("ArrayRecord", vec![array.clone()], format!("{{\"x\": \"{array}\"}}").as_bytes());
    let dict = add("RecordDict", vec![record.clone()], format!("{{\"arrays\": \"{record}\"}}").as_bytes());
    let message = add("Message", vec![dict], b"");
    (message, objects)
}

fn npy_2x3() -> Vec<u8> {
    encode_npy(&NdArray::new(NpyDtype::F32, vec![2, 3], vec![1.0; 6]).unwrap())
}

fn meta(dtype: &str, shape: &str, ids: &str) -> String {
    format!("{{\"dtype\": \"{dtype}\", \"shape\": {shape}, \"stype\": \"numpy.ndarray\", \"arraychunk_ids\": {ids}}}")
}

#[test]
fn a_well_formed_hand_made_message_decodes() {
    let (id, objects) = message_with_array(&meta("float32", "[2, 3]", "[0]"), &[npy_2x3()]);
    let content = decode_message_content(&id, &objects).unwrap();
    assert_eq!(content.arrays("arrays").unwrap().get("x").unwrap().values, [1.0; 6]);
}

#[test]
fn broken_arrays_are_typed_errors() {
    let npy = npy_2x3();
    let (a, b) = npy.split_at(50);
    let cases: Vec<(&str, String, Vec<Vec<u8>>)> = vec![
        ("wrong dtype", meta("float16", "[2, 3]", "[0]"), vec![npy.clone()]),
        ("shape mismatch", meta("float32", "[3, 2]", "[0]"), vec![npy.clone()]),
        ("chunk index out of range", meta("float32", "[2, 3]", "[0, 1]"), vec![npy.clone()]),
        ("chunks in the wrong order", meta("float32", "[2, 3]", "[1, 0]"), vec![a.to_vec(), b.to_vec()]),
        ("missing chunk", meta("float32", "[2, 3]", "[0]"), vec![npy[..npy.len() - 4].to_vec()]),
        ("bad JSON", "{\"dtype\": ".to_string(), vec![npy.clone()]),
        ("negative index", meta("float32", "[2, 3]", "[-1]"), vec![npy.clone()]),
        ("wrong stype", meta("float32", "[2, 3]", "[0]").replace("numpy.ndarray", "torch.Tensor"), vec![npy.clone()]),
        ("not npy", meta("float32", "[2, 3]", "[0]"), vec![b"hello".to_vec()]),
    ];
    for (name, body, chunks) in cases {
        let (id, objects) = message_with_array(&body, &chunks);
        let result = decode_message_content(&id, &objects);
        assert!(
            matches!(result, Err(FlowerError::Array { .. } | FlowerError::Decode { .. } | FlowerError::Npy(_))),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn repeated_chunks_cannot_blow_up_memory() {
    let chunk = vec![0u8; 1 << 20];
    let count = MAX_ARRAY_BYTES / (1 << 20) + 1;
    let ids = format!("[{}]", vec!["0"; count].join(", "));
    let (id, objects) = message_with_array(&meta("float32", "[1]", &ids), &[chunk]);
    assert!(matches!(decode_message_content(&id, &objects), Err(FlowerError::Array { .. })));
}

#[test]
fn wrong_ids_types_and_heads_are_typed_errors() {
    let r = reference();
    let message = &r["message"];
    let root = message["message_id"].as_str().unwrap().to_string();
    let objects = reference_objects(message);
    // An object whose bytes do not hash to its id.
    let mut map = object_map(&objects);
    let (victim, _) = &objects[1];
    map.get_mut(victim).unwrap().push(b' ');
    assert!(matches!(decode_message_content(&root, &map), Err(FlowerError::ObjectId { .. })));
    // A missing object.
    let mut map = object_map(&objects);
    map.remove(&objects[0].0);
    assert!(matches!(decode_message_content(&root, &map), Err(FlowerError::MissingObject(_))));
    // The root is not a Message.
    let map = object_map(&objects);
    let dict = objects.iter().find(|(_, b)| b.starts_with(b"RecordDict")).unwrap();
    assert!(matches!(decode_message_content(&dict.0, &map), Err(FlowerError::Decode { .. })));
    // A record dict pointing at an Array (not a record type), and a child list that lies.
    let chunk = make_object("ArrayChunk", &[], &npy_2x3());
    let array = make_object("Array", &[object_id(&chunk)], meta("float32", "[2, 3]", "[0]").as_bytes());
    for (type_name, children, body) in [
        ("RecordDict", vec![object_id(&array)], format!("{{\"a\": \"{}\"}}", object_id(&array))),
        ("RecordDict", vec![], format!("{{\"a\": \"{}\"}}", object_id(&array))),
        ("RecordDict", vec![object_id(&array)], "{}".to_string()),
        ("RecordDict", vec![], "[\"a\"]".to_string()),
        ("RecordDict", vec![], "{\"a\": \"x\", \"a\": \"x\"}".to_string()),
    ] {
        let dict = make_object(type_name, &children, body.as_bytes());
        let msg = make_object("Message", &[object_id(&dict)], b"");
        let map: HashMap<String, Vec<u8>> = [chunk.clone(), array.clone(), dict, msg.clone()]
            .into_iter()
            .map(|b| (object_id(&b), b))
            .collect();
        let result = decode_message_content(&object_id(&msg), &map);
        assert!(matches!(result, Err(FlowerError::Decode { .. } | FlowerError::MissingObject(_))), "{body}: {result:?}");
    }
    // Heads: absurd or wrong lengths, missing NUL, too many fields.
    for bytes in [
        b"Message  99999999999999999999\x00".to_vec(),
        b"Message  5\x00abc".to_vec(),
        b"Message  3".to_vec(),
        b"Message a b 0\x00".to_vec(),
        b"\xff\xfe 0\x00".to_vec(),
    ] {
        assert!(matches!(parse_object(&bytes), Err(FlowerError::Decode { .. })), "{bytes:?}");
    }
}

/// Replaces `old` by `new` (same length) in `bytes`.
fn replace(bytes: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i + old.len() <= out.len() {
        if &out[i..i + old.len()] == old {
            out[i..i + old.len()].copy_from_slice(new);
            i += old.len();
        } else {
            i += 1;
        }
    }
    out
}

fn mutate(rng: &mut ChaCha8Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = rng.random_range(0..out.len().max(1));
    match rng.random_range(0..5u32) {
        0 if !out.is_empty() => out[at] ^= 1 << rng.random_range(0..8u32),
        1 => out.truncate(at),
        2 => out.insert(at.min(out.len()), rng.random_range(0..=255u8)),
        3 if !out.is_empty() => out[at] = b"0123456789,{}[]\" -\x00"[rng.random_range(0..19usize)],
        _ => {
            let end = (at + rng.random_range(1..16usize)).min(out.len());
            out.drain(at.min(end)..end);
        }
    }
    out
}

#[test]
fn seeded_random_mutations_never_panic() {
    let r = reference();
    let message = &r["message"];
    let root = message["message_id"].as_str().unwrap().to_string();
    let objects = reference_objects(message);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_f10e);
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for _ in 0..2_000 {
        let mut list = objects.clone();
        let pick = rng.random_range(0..list.len());
        list[pick].1 = mutate(&mut rng, &list[pick].1);
        // Repair ids from the mutated object up to the root (ids have a fixed length).
        let mut root_id = root.clone();
        let mut changed = vec![(list[pick].0.clone(), object_id(&list[pick].1))];
        while let Some((old, new)) = changed.pop() {
            if old == root_id {
                root_id = new.clone();
            }
            for entry in list.iter_mut() {
                if entry.0 == old {
                    entry.0 = new.clone();
                } else if entry.1.windows(64).any(|w| w == old.as_bytes()) {
                    entry.1 = replace(&entry.1, old.as_bytes(), new.as_bytes());
                    let id = object_id(&entry.1);
                    changed.push((entry.0.clone(), id));
                }
            }
        }
        let result = decode_message_content(&root_id, &object_map(&list));
        let key = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{e:?}").split([' ', '(', '{']).next().unwrap().to_string(),
        };
        *outcomes.entry(key).or_default() += 1;
    }
    eprintln!("mutation outcomes: {outcomes:?}");
    assert!(outcomes.len() >= 3, "mutations reach several decoders: {outcomes:?}");
}

#[test]
fn truncated_and_flipped_bodies_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut entries: Vec<_> = std::fs::read_dir(fixture_dir().join("run")).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    let mut errors = 0;
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let rest = name.split_once('_').unwrap().1;
        let mut parts = rest.split('.');
        let (rpc, kind) = (parts.next().unwrap(), parts.next().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        for _ in 0..20 {
            let mutated = mutate(&mut rng, &bytes);
            if decode_as(rpc, kind, &mutated, false).is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 100, "{errors} mutated bodies rejected");
}
