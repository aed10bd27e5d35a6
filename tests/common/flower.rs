//! Helpers for tests that run real Flower processes (flwr 1.42 from PyPI) on loopback: the venv,
//! free ports, a process guard that kills everything it started (also on panic), waiting for a
//! port, and a `FLWR_HOME` with a connection to the local SuperLink.
//!
//! Use from a test file with `#[path = "common/flower.rs"] mod flower_common;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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

// ---- fedvlm nodes and the example Flower app (tests/flower_e2e.rs, tests/flower_rlaif.rs) ----

/// The example binary `flower_node`, built by `cargo test` beside the test binaries (built here
/// when missing).
pub fn node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = dir.join("examples").join("flower_node");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "flower_node"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example flower_node");
        assert!(status.success(), "cargo build --example flower_node failed");
    }
    assert!(binary.exists(), "{} missing", binary.display());
    binary
}

pub fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flower_app")
}

/// `FEDVLM_NODE {json}` lines of a node's log.
pub fn node_events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("FEDVLM_NODE "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn wait_for_event(
    log: &Path,
    timeout: Duration,
    what: &str,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(event) = node_events(log).into_iter().find(|e| pick(e)) {
            return event;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what}: not seen in {} after {timeout:?}\n{}",
        log.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text[text.len().saturating_sub(n)..].to_string()
}

/// `flwr run` of the app; returns the result JSON it wrote.
pub fn flwr_run(
    procs: &mut Processes,
    venv: &Path,
    home: &Path,
    work: &Path,
    name: &str,
    config: &str,
) -> Value {
    let result = work.join(format!("{name}.json"));
    let run_config = format!(
        "initial-arrays='{}' result-path='{}' round-timeout=90.0 {config}",
        work.join("init.npz").display(),
        result.display()
    );
    let mut run = venv_command(venv, "flwr", home);
    run.arg("run")
        .arg(app_dir())
        .args(["ci", "--stream", "--run-config", &run_config]);
    let log = work.join(format!("{name}.log"));
    procs.spawn(name, run, &log);
    let status = procs.wait(name, Duration::from_secs(300));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && text.contains("FEDVLM_RESULT"),
        "flwr run {name}: {status:?}\n{}\n--- superlink\n{}\n--- supernode\n{}",
        tail(&log, 6000),
        tail(&work.join("superlink.log"), 3000),
        tail(&work.join("supernode.log"), 3000)
    );
    serde_json::from_slice(&std::fs::read(&result).expect("result json")).expect("parse result")
}

pub fn values(array: &Value) -> Vec<f64> {
    array["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

/// Checks that each round's aggregate is the example-weighted mean of the valid train replies,
/// and that no reply carries `lora_a`; returns the names seen.
pub fn check_aggregates(result: &Value) -> Vec<String> {
    let mut names = Vec::new();
    let aggregates = result["aggregates"].as_array().expect("aggregates");
    for (train, aggregate) in result["train"].as_array().unwrap().iter().zip(aggregates) {
        let round = &train["round"];
        let mut sum: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut total = 0.0;
        for reply in train["replies"].as_array().unwrap() {
            if !reply["error"].is_null() {
                continue;
            }
            let weight = reply["metrics"]["num-examples"]
                .as_f64()
                .expect("num-examples");
            total += weight;
            for (name, array) in reply["arrays"]["arrays"].as_object().expect("arrays") {
                names.push(name.clone());
                let v = values(array);
                let acc = sum
                    .entry(name.clone())
                    .or_insert_with(|| vec![0.0; v.len()]);
                acc.iter_mut().zip(&v).for_each(|(a, x)| *a += weight * x);
            }
        }
        assert!(total > 0.0, "round {round}: no valid train reply");
        for (name, acc) in &sum {
            let got = values(&aggregate["arrays"][name]);
            assert_eq!(got.len(), acc.len(), "round {round} {name}");
            for (g, a) in got.iter().zip(acc) {
                let mean = a / total;
                assert!(
                    (g - mean).abs() <= 1e-6 + 1e-5 * mean.abs(),
                    "round {round} {name}: server {g} vs weighted mean {mean}"
                );
            }
        }
    }
    names
}

/// Runs the node binary with `flags` and `--export-initial work/init.npz` (the ServerApp's
/// initial arrays); panics when it fails.
pub fn export_initial(binary: &Path, flags: &[String], env: &[(&str, &str)], work: &Path) {
    let export = Command::new(binary)
        .args(flags)
        .arg("--export-initial")
        .arg(work.join("init.npz"))
        .envs(env.iter().copied())
        .output()
        .expect("export the initial arrays");
    assert!(export.status.success(), "{export:?}");
}

/// Starts a stock insecure `flower-superlink` on `127.0.0.1:port` (logging to
/// `work/superlink.log`) and waits until it listens.
pub fn start_superlink(procs: &mut Processes, venv: &Path, home: &Path, work: &Path, port: u16) {
    let mut superlink = venv_command(venv, "flower-superlink", home);
    superlink.current_dir(work).args([
        "--insecure",
        "--disable-runtime-dependency-installation",
        "--port",
        &port.to_string(),
    ]);
    procs.spawn("superlink", superlink, &work.join("superlink.log"));
    wait_for_port(port, Duration::from_secs(60));
}

/// Starts `nodes` insecure fedvlm nodes on the SuperLink at `port`, node `k` as partition `k`
/// with `flags` (logging to `work/node{k}.log`), and waits until each has connected.
pub fn start_nodes(
    procs: &mut Processes,
    binary: &Path,
    port: u16,
    nodes: usize,
    flags: &[String],
    env: &[(&str, &str)],
    work: &Path,
) {
    for k in 0..nodes {
        let mut node = Command::new(binary);
        node.args(["--superlink", &format!("127.0.0.1:{port}"), "--insecure"])
            .args(["--partition-id", &k.to_string()])
            .args(flags)
            .envs(env.iter().copied());
        let log = work.join(format!("node{k}.log"));
        procs.spawn(&format!("node{k}"), node, &log);
        wait_for_event(&log, Duration::from_secs(120), "connected", |e| {
            e["event"] == "connected"
        });
    }
}
