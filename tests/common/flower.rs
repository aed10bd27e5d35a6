//! Helpers for tests that run real Flower processes (flwr 1.42 from PyPI) on loopback: the venv,
//! free ports, a process guard that kills everything it started (also on panic), waiting for a
//! port, and a `FLWR_HOME` with a connection to the local SuperLink.
//!
//! Use from a test file with `#[path = "common/flower.rs"] mod flower_common;`.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The flwr version the tests pin.
pub const FLWR_VERSION: &str = "1.42.0";

/// A Python venv with `flwr==1.42.0` and numpy: `$FEDVLM_FLWR_VENV` if set, else
/// `target/flwr-venv`, created on first use (`python3 -m venv` + `pip install`) under a file
/// lock so that parallel tests build it once.
pub fn flwr_venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("FEDVLM_FLWR_VENV") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("bin/flower-superlink").exists(),
            "FEDVLM_FLWR_VENV={} has no bin/flower-superlink",
            dir.display()
        );
        return dir;
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = target.join("flwr-venv");
    std::fs::create_dir_all(&target).expect("create target/");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target.join("flwr-venv.lock"))
        .expect("open the venv lock");
    lock.lock().expect("lock target/flwr-venv.lock");
    let ready = venv.join(".fedvlm-ready");
    if !ready.exists() {
        eprintln!(
            "creating {} (flwr=={FLWR_VERSION}, numpy) from PyPI",
            venv.display()
        );
        let _ = std::fs::remove_dir_all(&venv);
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run_ok(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("flwr=={FLWR_VERSION}"))
                .arg("numpy"),
        );
        std::fs::write(&ready, FLWR_VERSION).expect("mark the venv ready");
    }
    let _ = lock.unlock();
    venv
}

fn run_ok(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

/// A loopback TCP port that is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Waits until something listens on `127.0.0.1:port`; panics after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

/// Writes `$home/config.toml` with a connection `ci` (the default) to the SuperLink on `port`.
pub fn write_flwr_home(home: &Path, port: u16, root_certificates: Option<&Path>) {
    std::fs::create_dir_all(home).expect("create FLWR_HOME");
    let security = match root_certificates {
        None => "insecure = true\n".to_string(),
        Some(ca) => format!("root-certificates = \"{}\"\n", ca.display()),
    };
    let text = format!(
        "[superlink]\ndefault = \"ci\"\n\n[superlink.ci]\naddress = \"127.0.0.1:{port}\"\n{security}"
    );
    let mut file = std::fs::File::create(home.join("config.toml")).expect("config.toml");
    file.write_all(text.as_bytes()).expect("write config.toml");
}

/// A command from the venv, with the venv's `bin` first on `PATH` (the SuperLink spawns
/// `flower-superexec`), `FLWR_HOME` and telemetry off.
pub fn venv_command(venv: &Path, program: &str, flwr_home: &Path) -> Command {
    let bin = venv.join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.clone()];
    paths.extend(std::env::split_paths(&path));
    let mut command = Command::new(bin.join(program));
    command
        .env("PATH", std::env::join_paths(paths).expect("PATH"))
        .env("FLWR_HOME", flwr_home)
        .env("FLWR_TELEMETRY_ENABLED", "0")
        .env("PYTHONUNBUFFERED", "1");
    command
}

/// Processes started by a test: each in its own process group, all killed (group and all) when
/// the guard drops, also when the test panics.
#[derive(Default)]
pub struct Processes {
    children: Vec<(String, Child)>,
}

impl Processes {
    /// Starts `command` in a new process group, stdout and stderr to `log`.
    pub fn spawn(&mut self, name: &str, mut command: Command, log: &Path) -> u32 {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {command:?}: {e}"));
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    /// Waits for the process `name` to exit, at most `timeout`; its exit status, or `None` on
    /// timeout (it keeps running until the guard drops).
    pub fn wait(&mut self, name: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = &mut self
            .children
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no process {name}"))
            .1;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &self.children {
            signal_group(child.id(), "-TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for (_, child) in &mut self.children {
            signal_group(child.id(), "-KILL");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
