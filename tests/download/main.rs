//! Integration tests for `fedvlm::data` downloads (against a local HTTP server on
//! 127.0.0.1; no outside network), the offline switch, cache folders and tar.gz extraction.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fedvlm::data::{
    Checksum, Cifar10, DataError, Downloader, cache_dir, download_file, extract_tar_gz, is_offline,
    sha256_file, torch_hub_checkpoints_dir,
};

mod archives;

/// SHA-256 of one million `a` bytes (FIPS 180-2, appendix B.3).
const MILLION_A_SHA256: &str = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
/// SHA-256 of `abc` (FIPS 180-2, appendix B.1).
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

/// Every test holds this lock: some set environment variables, which must not race with
/// other threads reading the environment.
static ENV: Mutex<()> = Mutex::new(());

fn env_lock() -> MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets (or removes) environment variables for the guard's lifetime, restoring them after.
struct EnvVars(Vec<(&'static str, Option<std::ffi::OsString>)>);

impl EnvVars {
    fn set(vars: &[(&'static str, Option<&str>)]) -> Self {
        let saved = vars
            .iter()
            .map(|(k, _)| (*k, std::env::var_os(k)))
            .collect();
        for (k, v) in vars {
            // SAFETY: every test of this binary holds `ENV` while it runs, so no other thread
            // reads or writes the environment concurrently.
            unsafe {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
        Self(saved)
    }
}

impl Drop for EnvVars {
    fn drop(&mut self) {
        for (k, v) in &self.0 {
            // SAFETY: as in `set`; the guard is dropped while `ENV` is still held.
            unsafe {
                match v {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
    }
}

/// What the test server answers.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Ok(Vec<u8>),
    /// 404.
    NotFound,
    /// 200 announcing `announced` bytes but sending only `body` and closing.
    Truncated { body: Vec<u8>, announced: usize },
}

/// Serves `reply` to up to `max_requests` connections on 127.0.0.1, then stops; gives up
/// waiting after 20 seconds. Returns the URL and a handle yielding the request count.
fn serve(reply: Reply, max_requests: usize) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/files/blob.bin", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    answer(stream, &reply);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
        served
    });
    (url, handle)
}

/// Reads the request head, then writes a minimal HTTP/1.1 response and closes.
fn answer(mut stream: TcpStream, reply: &Reply) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let (status, body, announced) = match reply {
        Reply::Ok(body) => ("200 OK", body.as_slice(), body.len()),
        Reply::NotFound => ("404 Not Found", &b"no such file"[..], 12),
        Reply::Truncated { body, announced } => ("200 OK", body.as_slice(), *announced),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {announced}\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// A URL on which nothing listens: any network access fails.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/nothing-here.bin")
}

fn online() -> Downloader {
    Downloader {
        offline: false,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        ..Downloader::default()
    }
}

fn no_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

#[test]
fn sha256_file_matches_the_fips_vectors() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("abc.txt");
    fs::write(&path, "abc").unwrap();
    assert_eq!(sha256_file(&path).unwrap(), ABC_SHA256);
    fs::write(&path, vec![b'a'; 1_000_000]).unwrap();
    assert_eq!(sha256_file(&path).unwrap(), MILLION_A_SHA256);
    assert!(
        Checksum::Sha256(MILLION_A_SHA256.to_uppercase())
            .verify_file(&path)
            .is_ok()
    );
    assert!(
        Checksum::Sha256Prefix("cdc76e5c".into())
            .verify_file(&path)
            .is_ok()
    );
    let err = Checksum::Sha256(ABC_SHA256.into())
        .verify_file(&path)
        .unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("abc.txt"), "{err}");
    assert!(matches!(
        sha256_file(&tmp.path().join("absent")),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn torch_hub_file_names_carry_a_sha256_prefix() {
    let _env = env_lock();
    let prefix = |s: &str| Some(Checksum::Sha256Prefix(s.to_string()));
    assert_eq!(
        Checksum::from_torch_hub_filename("mobilenet_v3_small-047dcff4.pth"),
        prefix("047dcff4")
    );
    assert_eq!(
        Checksum::from_torch_hub_filename("mobilenet_v3_large-8738ca79.pth"),
        prefix("8738ca79")
    );
    assert_eq!(
        Checksum::from_torch_hub_filename("efficientnet_b0_rwightman-7f5810bc.pth"),
        prefix("7f5810bc")
    );
    assert_eq!(Checksum::from_torch_hub_filename("model.safetensors"), None);
    assert_eq!(Checksum::from_torch_hub_filename("foo-bar.pth"), None);
    assert_eq!(Checksum::from_torch_hub_filename("weights-.pth"), None);
    let c = Checksum::Sha256Prefix("047DCFF4".into());
    assert!(c.matches_sha256("047dcff4aaaaaaaa"));
    assert!(!c.matches_sha256("047dcff5aaaaaaaa"));
    assert!(!Checksum::Sha256Prefix(String::new()).matches_sha256("047dcff4"));
}

#[test]
fn download_streams_verifies_and_renames_into_place() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("nested/dir/blob.tar.gz");
    let body = vec![b'a'; 1_000_000];
    let (url, server) = serve(Reply::Ok(body.clone()), 1);
    let checksum = Checksum::Sha256(MILLION_A_SHA256.into());
    let got = online().fetch(&url, &dest, Some(&checksum)).unwrap();
    assert_eq!(got, dest);
    assert_eq!(fs::read(&dest).unwrap(), body);
    assert_eq!(server.join().unwrap(), 1);
    assert!(no_leftovers(dest.parent().unwrap()).is_empty());

    // Present and verified: reused without any network access (nothing listens there).
    let again = online().fetch(&dead_url(), &dest, Some(&checksum)).unwrap();
    assert_eq!(again, dest);
    let prefix = Checksum::Sha256Prefix("cdc76e5c".into());
    assert!(online().fetch(&dead_url(), &dest, Some(&prefix)).is_ok());
    // Present, no checksum asked: reused too.
    assert!(online().fetch(&dead_url(), &dest, None).is_ok());
}

#[test]
fn download_with_torch_hub_prefix_checksum() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("abc-ba7816bf.pth");
    let (url, server) = serve(Reply::Ok(b"abc".to_vec()), 1);
    let checksum = Checksum::from_torch_hub_filename("abc-ba7816bf.pth").unwrap();
    online().fetch(&url, &dest, Some(&checksum)).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"abc");
    assert_eq!(server.join().unwrap(), 1);
}

#[test]
fn checksum_mismatch_is_an_error_and_leaves_nothing_behind() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("blob.bin");
    let (url, server) = serve(Reply::Ok(b"not what you expected".to_vec()), 2);
    let err = online()
        .fetch(&url, &dest, Some(&Checksum::Sha256(ABC_SHA256.into())))
        .unwrap_err();
    match &err {
        DataError::ChecksumMismatch {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, &url);
            assert_eq!(expected, ABC_SHA256);
            assert_eq!(actual.len(), 64);
            assert_ne!(actual, ABC_SHA256);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert!(!dest.exists());
    assert!(no_leftovers(tmp.path()).is_empty());

    let err = online()
        .fetch(
            &url,
            &dest,
            Some(&Checksum::Sha256Prefix("00000000".into())),
        )
        .unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err:?}");
    assert!(!dest.exists());
    assert_eq!(server.join().unwrap(), 2);
}

#[test]
fn a_corrupt_cached_file_is_fetched_again() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("abc.txt");
    fs::write(&dest, "abd").unwrap();
    let checksum = Checksum::Sha256(ABC_SHA256.into());

    // Offline, a corrupt file is reported as such.
    let offline = Downloader {
        offline: true,
        ..online()
    };
    let err = offline
        .fetch(&dead_url(), &dest, Some(&checksum))
        .unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err:?}");

    // Online, it is replaced.
    let (url, server) = serve(Reply::Ok(b"abc".to_vec()), 1);
    online().fetch(&url, &dest, Some(&checksum)).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), b"abc");
    assert_eq!(server.join().unwrap(), 1);
}

#[test]
fn http_errors_and_truncated_bodies_are_typed_errors() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("blob.bin");

    let (url, server) = serve(Reply::NotFound, 1);
    let err = online().fetch(&url, &dest, None).unwrap_err();
    match &err {
        DataError::Http { url: u, reason } => {
            assert_eq!(u, &url);
            assert!(reason.contains("404"), "{reason}");
        }
        other => panic!("expected Http, got {other:?}"),
    }
    assert_eq!(server.join().unwrap(), 1);
    assert!(!dest.exists());

    let (url, server) = serve(
        Reply::Truncated {
            body: vec![7; 1000],
            announced: 5000,
        },
        1,
    );
    let err = online().fetch(&url, &dest, None).unwrap_err();
    assert!(matches!(err, DataError::Http { .. }), "{err:?}");
    assert_eq!(server.join().unwrap(), 1);
    assert!(!dest.exists());
    assert!(no_leftovers(tmp.path()).is_empty());

    let err = online().fetch(&dead_url(), &dest, None).unwrap_err();
    assert!(matches!(err, DataError::Http { .. }), "{err:?}");
}

#[test]
fn offline_switch_never_touches_the_network() {
    let _env = env_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("blob.bin");
    // Nothing listens there: an attempt to connect would be an `Http` error, not `Offline`.
    let url = dead_url();

    let offline = Downloader {
        offline: true,
        ..online()
    };
    match offline.fetch(&url, &dest, None).unwrap_err() {
        DataError::Offline { url: u, dest: d } => {
            assert_eq!(u, url);
            assert_eq!(d, dest.display().to_string());
        }
        other => panic!("expected Offline, got {other:?}"),
    }

    for (var, value) in [
        ("FEDVLM_OFFLINE", "1"),
        ("HF_HUB_OFFLINE", "1"),
        ("HF_HUB_OFFLINE", "TRUE"),
    ] {
        let _vars = EnvVars::set(&[
            ("FEDVLM_OFFLINE", None),
            ("HF_HUB_OFFLINE", None),
            (var, Some(value)),
        ]);
        assert!(is_offline(), "{var}={value}");
        let err = download_file(&url, &dest, None, false).unwrap_err();
        assert!(matches!(err, DataError::Offline { .. }), "{var}: {err:?}");

        // CIFAR-10 needs its archive: offline error naming the official address.
        match Cifar10::download(tmp.path(), false).unwrap_err() {
            DataError::Offline { url, .. } => assert_eq!(url, Cifar10::URL),
            other => panic!("expected Offline, got {other:?}"),
        }
    }
    {
        let _vars = EnvVars::set(&[("FEDVLM_OFFLINE", Some("0")), ("HF_HUB_OFFLINE", None)]);
        assert!(!is_offline());
    }
    assert!(!dest.exists());

    // Offline but already there: fine.
    fs::write(&dest, "abc").unwrap();
    let _vars = EnvVars::set(&[("FEDVLM_OFFLINE", Some("1"))]);
    let checksum = Checksum::Sha256(ABC_SHA256.into());
    assert_eq!(
        download_file(&url, &dest, Some(&checksum), false).unwrap(),
        dest
    );
}

#[test]
fn cache_folders_follow_the_environment() {
    let _env = env_lock();
    {
        let _vars = EnvVars::set(&[
            ("FEDVLM_CACHE", Some("/data/fedvlm-cache")),
            ("XDG_CACHE_HOME", Some("/xdg")),
            ("TORCH_HOME", Some("/torch-home")),
        ]);
        assert_eq!(cache_dir(), Path::new("/data/fedvlm-cache"));
        assert_eq!(
            torch_hub_checkpoints_dir(),
            Path::new("/torch-home/hub/checkpoints")
        );
    }
    {
        let _vars = EnvVars::set(&[
            ("FEDVLM_CACHE", None),
            ("XDG_CACHE_HOME", Some("/xdg")),
            ("TORCH_HOME", None),
        ]);
        assert_eq!(cache_dir(), Path::new("/xdg/fedvlm"));
        assert_eq!(
            torch_hub_checkpoints_dir(),
            Path::new("/xdg/torch/hub/checkpoints")
        );
    }
    {
        let _vars = EnvVars::set(&[
            ("FEDVLM_CACHE", None),
            ("XDG_CACHE_HOME", None),
            ("TORCH_HOME", None),
            ("HOME", Some("/home/someone")),
        ]);
        assert_eq!(cache_dir(), Path::new("/home/someone/.cache/fedvlm"));
        assert_eq!(
            torch_hub_checkpoints_dir(),
            Path::new("/home/someone/.cache/torch/hub/checkpoints")
        );
    }
}
