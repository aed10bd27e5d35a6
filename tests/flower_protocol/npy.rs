//! `.npy` files: numpy's own bytes, odd shapes, dtypes, and broken files.

use fedvlm::flower::{FlowerError, NdArray, NpyDtype, decode_npy, encode_npy};

use super::{b64, reference};

#[test]
fn numpy_files_decode_and_reencode_byte_for_byte() {
    let r = reference();
    for (name, case) in r["npy"].as_object().unwrap() {
        let bytes = b64(&case["bytes"]);
        let result = decode_npy(&bytes);
        if name == "fortran" || name == "int32" {
            assert!(matches!(result, Err(FlowerError::Npy(_))), "{name}: {result:?}");
            continue;
        }
        let array = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(array.shape, shape, "{name}");
        let values: Vec<f32> = case["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(array.values, values, "{name}");
        // f64 values are read into f32, so only exactly representable ones write back alike.
        if name != "big_endian_f4" && name != "f64_3" {
            assert_eq!(encode_npy(&array), bytes, "{name}: numpy's bytes");
        }
    }
}

#[test]
fn odd_shapes_round_trip() {
    let shapes: [&[usize]; 8] = [&[], &[0], &[1], &[7], &[3, 0, 2], &[1, 1, 1, 1], &[2, 3, 5, 7], &[1000, 3]];
    for shape in shapes {
        for dtype in [NpyDtype::F32, NpyDtype::F16, NpyDtype::F64] {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|i| (i % 64) as f32 * 0.25 - 3.0).collect();
            let array = NdArray::new(dtype, shape.to_vec(), values).unwrap();
            let bytes = encode_npy(&array);
            assert_eq!(bytes[8..10], [((bytes.len() - 10 - n * dtype.size()) as u16).to_le_bytes()[0], ((bytes.len() - 10 - n * dtype.size()) as u16).to_le_bytes()[1]]);
            assert_eq!((bytes.len() - n * dtype.size()) % 64, 0, "header aligned to 64");
            assert_eq!(decode_npy(&bytes).unwrap(), array, "{shape:?} {dtype:?}");
        }
    }
}

#[test]
fn f16_narrows_and_f64_reads_into_f32() {
    let array = NdArray::new(NpyDtype::F16, vec![3], vec![0.1, 70000.0, -2.0]).unwrap();
    let back = decode_npy(&encode_npy(&array)).unwrap();
    assert_eq!(back.values[0], half::f16::from_f32(0.1).to_f32());
    assert!(back.values[1].is_infinite(), "beyond f16's range");
    assert_eq!(back.values[2], -2.0);
}

#[test]
fn broken_files_are_typed_errors() {
    let good = encode_npy(&NdArray::new(NpyDtype::F32, vec![2, 3], vec![1.0; 6]).unwrap());
    let header_end = good.len() - 24;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("bad magic", b"\x93NUMPX\x01\x00\x10\x00".to_vec()),
        ("truncated data", good[..good.len() - 1].to_vec()),
        ("extra data", [good.clone(), vec![0]].concat()),
        ("truncated header", good[..40].to_vec()),
        ("no data", good[..header_end].to_vec()),
    ];
    let mut version = good.clone();
    version[6] = 9;
    cases.push(("version 9", version));
    let mut long = good.clone();
    long[8] = 0xff;
    long[9] = 0xff;
    cases.push(("header length past the end", long));
    let with_header = |h: &str| {
        let mut h = h.to_string();
        while (h.len() + 11) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out
    };
    for (name, header) in [
        ("absurd shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }"),
        ("huge shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000), }"),
        ("shape too long", "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }"),
        ("int dtype", "{'descr': '<i4', 'fortran_order': False, 'shape': (0,), }"),
        ("object dtype", "{'descr': '|O', 'fortran_order': False, 'shape': (0,), }"),
        ("fortran", "{'descr': '<f4', 'fortran_order': True, 'shape': (0,), }"),
        ("no shape", "{'descr': '<f4', 'fortran_order': False, }"),
        ("unknown key", "{'descr': '<f4', 'fortran_order': False, 'shape': (0,), 'x': 1}"),
        ("not a dict", "[1, 2]"),
        ("unterminated", "{'descr': '<f4"),
        ("bad bool", "{'descr': '<f4', 'fortran_order': Nope, 'shape': (0,), }"),
    ] {
        cases.push((name, with_header(header)));
    }
    for (name, bytes) in cases {
        assert!(matches!(decode_npy(&bytes), Err(FlowerError::Npy(_))), "{name}");
    }
}
