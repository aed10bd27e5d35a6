//! `.npz` files: a zip archive (stored, not compressed) of one `.npy` file per array, as
//! `numpy.savez` writes and `numpy.load` reads. A node writes the initial global arrays in this
//! form for a ServerApp's `initial_arrays` (`flower_node --export-initial`).

use super::npy::encode_npy;
use super::records::ArrayRecord;

/// The `.npz` bytes of `record`: entry `<name>.npy` per array, in record order.
pub fn encode_npz(record: &ArrayRecord) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let mut count: u16 = 0;
    for (name, array) in &record.arrays {
        let data = encode_npy(array);
        let file_name = format!("{name}.npy");
        let crc = crc32fast::hash(&data);
        let offset = out.len() as u32;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        push_entry_fields(&mut out, crc, data.len() as u32, file_name.len() as u16);
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        out.extend_from_slice(file_name.as_bytes());
        out.extend_from_slice(&data);
        // Central directory record.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by: version 2.0
        push_entry_fields(&mut central, crc, data.len() as u32, file_name.len() as u16);
        central.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk number
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(file_name.as_bytes());
        count = count.saturating_add(1);
    }
    let central_offset = out.len() as u32;
    let central_size = central.len() as u32;
    out.extend_from_slice(&central);
    // End of central directory.
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The fields local headers and central records share: version needed (2.0), flags (0),
/// method (stored), time and date (1980-01-01 00:00), CRC-32, sizes and the name's length.
fn push_entry_fields(out: &mut Vec<u8>, crc: u32, size: u32, name_len: u16) {
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0x0021u16.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
}
