//! `extract_tar_gz`: files and folders, path traversal and links refused, corrupt archives.

use super::*;

// ---------------------------------------------------------------------------------------
// tar.gz extraction
// ---------------------------------------------------------------------------------------

/// A tar.gz built with the `tar` crate: a folder, two files (one nested).
fn write_good_archive(path: &Path) {
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    tar.append_data(&mut dir, "top/", std::io::empty()).unwrap();
    for (name, data) in [
        ("top/hello.txt", &b"hello"[..]),
        ("top/sub/data.bin", &[0u8, 1, 2, 255][..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}
/// A tar.gz with one entry whose raw name (and link name) are written byte for byte,
/// bypassing the `tar` crate's own path checks, after one harmless file.
fn write_raw_archive(path: &Path, name: &[u8], kind: tar::EntryType, link: &[u8]) {
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut ok = tar::Header::new_gnu();
    ok.set_size(2);
    ok.set_mode(0o644);
    tar.append_data(&mut ok, "fine.txt", &b"ok"[..]).unwrap();

    let body = b"pwned";
    let mut h = tar::Header::new_gnu();
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let size = if kind == tar::EntryType::Regular {
        body.len()
    } else {
        0
    };
    h.set_size(size as u64);
    h.set_cksum();
    tar.append(&h, &body[..size]).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}
#[test]
fn extract_tar_gz_unpacks_files_and_folders() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar.gz");
    write_good_archive(&archive);
    let into = tmp.path().join("out/deeper");
    extract_tar_gz(&archive, &into).unwrap();
    assert_eq!(fs::read(into.join("top/hello.txt")).unwrap(), b"hello");
    assert_eq!(
        fs::read(into.join("top/sub/data.bin")).unwrap(),
        [0, 1, 2, 255]
    );
    assert!(into.join("top").is_dir());
}
#[test]
fn extract_tar_gz_refuses_path_traversal_and_links() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[u8], tar::EntryType, &[u8], &str); 5] = [
        (b"../evil.txt", tar::EntryType::Regular, b"", "evil.txt"),
        (
            b"top/../../evil2.txt",
            tar::EntryType::Regular,
            b"",
            "evil2.txt",
        ),
        (
            b"/tmp/fedvlm-evil-abs.txt",
            tar::EntryType::Regular,
            b"",
            "",
        ),
        (b"link", tar::EntryType::Symlink, b"..", "link"),
        (b"hard", tar::EntryType::Link, b"/etc/passwd", "hard"),
    ];
    for (i, (name, kind, link, leaked)) in cases.into_iter().enumerate() {
        let archive = tmp.path().join(format!("evil{i}.tar.gz"));
        write_raw_archive(&archive, name, kind, link);
        let into = tmp.path().join(format!("case{i}/out"));
        let err = extract_tar_gz(&archive, &into).unwrap_err();
        match &err {
            DataError::UnsafeArchiveEntry {
                archive: a, entry, ..
            } => {
                assert!(a.ends_with(&format!("evil{i}.tar.gz")), "{a}");
                assert_eq!(entry.as_bytes(), name, "case {i}");
            }
            other => panic!("case {i}: expected UnsafeArchiveEntry, got {other:?}"),
        }
        // The harmless entry before it was extracted; the bad one went nowhere.
        assert_eq!(fs::read(into.join("fine.txt")).unwrap(), b"ok");
        if !leaked.is_empty() {
            assert!(!into.join(leaked).exists(), "case {i}");
            assert!(!into.parent().unwrap().join(leaked).exists(), "case {i}");
            assert!(!tmp.path().join(leaked).exists(), "case {i}");
        }
    }
    assert!(!Path::new("/tmp/fedvlm-evil-abs.txt").exists());
}
#[test]
fn extract_tar_gz_reports_corrupt_archives() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("junk.tar.gz");
    fs::write(&archive, b"this is not gzip at all").unwrap();
    let err = extract_tar_gz(&archive, &tmp.path().join("out")).unwrap_err();
    assert!(err.to_string().contains("junk.tar.gz"), "{err}");
    assert!(matches!(
        extract_tar_gz(&tmp.path().join("absent.tar.gz"), tmp.path()),
        Err(DataError::Io { .. })
    ));
}
