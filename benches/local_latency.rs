//! `edict run --local` with 1,000 Systems: how long from writing a manifest file to the new
//! bundle being served.
//!
//! Writes 1,000 System manifests (each with one or two Policies of its own) plus the Tenant
//! and the baseline Stack with its Policies (the shared `workload` generator) into a temporary
//! directory, starts the release binary
//! (`edict run --local DIR --addr 127.0.0.1:PORT --store DIR2`) on a free loopback port, then
//! 50 times edits one manifest (alternately a Policy's Rego and a System's features; written
//! to a temporary file and renamed into place, as editors save) and polls that System's bundle
//! URL with `If-None-Match` until its ETag changes. Then OPA's long polling: one client per
//! System waits on its bundle (`Prefer: modes=snapshot,delta;wait=30`, as OPA sends it), the
//! server's memory is read before and after they connect (bytes per waiting client), and the
//! same kind of edits are timed from the file write to the waiting client receiving the new
//! bundle. The server is stopped at the end.
//!
//! `cargo bench --bench local_latency`; `EDICT_BENCH_SYSTEMS` and `EDICT_BENCH_ITERATIONS`
//! change the sizes. Run without `--bench` (as `cargo test --benches` does) it only smoke-tests
//! 20 Systems and 3 edits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use workload::{Revision, Workload, percentile};

mod workload;

/// The allocator the edict binary runs with (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Write like an editor that saves atomically: a hidden temporary file renamed over the target.
fn write_atomically(path: &Path, text: &str) {
    let tmp =
        path.with_file_name(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("x")));
    std::fs::write(&tmp, text).expect("write temporary file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// Kills the server when dropped (also on panic).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_edict") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/edict"),
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// (status, etag) of a GET with `If-None-Match`.
fn fetch(agent: &ureq::Agent, url: &str, etag: Option<&str>) -> Result<(u16, Option<String>), String> {
    let mut req = agent.get(url);
    if let Some(tag) = etag {
        req = req.header("If-None-Match", tag);
    }
    let resp = req.call().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let tag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(String::from);
    let _ = resp.into_body().read_to_vec();
    Ok((status, tag))
}

/// What the long-polling phase measured.
struct LongPolling {
    latencies_ms: Vec<f64>,
    timeouts: usize,
    waiting: usize,
    rss_before_kib: Option<u64>,
    rss_waiting_kib: Option<u64>,
    woken_others: usize,
}

impl LongPolling {
    fn print(&self, systems: usize) {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        println!(
            "5. long polling: file write → new bundle delivered to a waiting client ({} edits, {} timed out; {} clients waiting, one per System of {systems}):",
            sorted.len(),
            self.timeouts,
            self.waiting
        );
        println!(
            "   p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms   target p99 ≤ 300 ms  [{}]",
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.9),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or(f64::NAN),
            mark(self.timeouts == 0 && percentile(&sorted, 0.99) <= 300.0)
        );
        if let (Some(before), Some(after)) = (self.rss_before_kib, self.rss_waiting_kib) {
            let per = (after.saturating_sub(before) * 1024) as f64 / self.waiting.max(1) as f64;
            println!(
                "   server RSS {:.1} MiB before the clients, {:.1} MiB with {} waiting: {:.0} bytes per waiting client",
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                self.waiting,
                per
            );
        }
        println!(
            "   clients of other Systems woken by these edits: {} (expected 0) [{}]",
            self.woken_others,
            mark(self.woken_others == 0)
        );
    }
}

/// The server's resident memory (Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One bundle request as OPA sends it when long polling: `(status, etag)`.
async fn wait_once(addr: &str, path: &str, etag: Option<&str>) -> std::io::Result<(u16, Option<String>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Open Policy Agent/1.9.0 (linux, amd64)\r\nPrefer: modes=snapshot,delta;wait=30\r\nConnection: close\r\n"
    );
    if let Some(tag) = etag {
        request.push_str(&format!("If-None-Match: {tag}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let etag = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("etag")).map(|(_, v)| v.trim().to_string())
    });
    Ok((status, etag))
}

/// Phase 5: every System's client waits on its bundle; edits are timed to delivery.
fn long_polling(
    addr: &str,
    workload: &Workload,
    dir: &Path,
    revisions: &mut [Revision],
    iterations: usize,
    pid: u32,
) -> LongPolling {
    let systems = revisions.len();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let rss_before_kib = rss_kib(pid);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    for i in 0..systems {
        let path =
            format!("/bundles/acme/local/{}/{}/bundle.tar.gz", workload.namespace(i), workload.name(i));
        let (addr, tx, ready_tx) = (addr.to_string(), tx.clone(), ready_tx.clone());
        rt.spawn(async move {
            let mut etag: Option<String> = None;
            loop {
                match wait_once(&addr, &path, etag.as_deref()).await {
                    Ok((200, tag)) => {
                        if etag.is_none() {
                            let _ = ready_tx.send(i);
                        } else {
                            let _ = tx.send((i, Instant::now()));
                        }
                        etag = tag;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    // Every client has its first bundle and is waiting with its tag.
    let waiting = rt.block_on(async {
        let mut n = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while n < systems {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(_)) => n += 1,
                _ => break,
            }
        }
        n
    });
    std::thread::sleep(Duration::from_secs(1));
    let rss_waiting_kib = rss_kib(pid);
    let mut latencies_ms = Vec::new();
    let (mut timeouts, mut woken_others) = (0, 0);
    for it in 0..iterations {
        let i = (it * 53 + 7) % systems;
        if it % 2 == 1 {
            revisions[i].system += 1;
        } else {
            revisions[i].policy += 1;
        }
        let text = workload.system(i, revisions[i]);
        let t = Instant::now();
        write_atomically(&dir.join(workload.file(i)), &text);
        let got = rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((j, at))) if j == i => return Some(at),
                    Ok(Some(_)) => woken_others += 1,
                    _ => return None,
                }
            }
        });
        match got {
            Some(at) => latencies_ms.push(at.duration_since(t).as_secs_f64() * 1000.0),
            None => timeouts += 1,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.shutdown_background();
    LongPolling { latencies_ms, timeouts, waiting, rss_before_kib, rss_waiting_kib, woken_others }
}

fn main() {
    // `cargo bench` passes --bench; without it (`cargo test --benches`) run a small smoke version.
    let bench = std::env::args().any(|a| a == "--bench");
    let systems = workload::env_size("EDICT_BENCH_SYSTEMS", if bench { 1000 } else { 20 }).max(1);
    let iterations = workload::env_size("EDICT_BENCH_ITERATIONS", if bench { 50 } else { 3 });
    let workload = Workload::new(systems, 50, 1);
    let bin = binary();
    assert!(bin.exists(), "{} not found: build it with `cargo build --release`", bin.display());

    let root = workload::scratch_dir();
    let dir = root.path().join("manifests");
    let store = root.path().join("store");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("platform.yaml"), workload.platform()).expect("write platform");
    for i in 0..systems {
        let path = dir.join(workload.file(i));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, workload.system(i, Revision::default())).expect("write system");
    }

    let port = free_port();
    let log_path = root.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let started = Instant::now();
    let child = Command::new(&bin)
        .args(["run", "--local"])
        .arg(&dir)
        .args(["--addr", &format!("127.0.0.1:{port}"), "--store"])
        .arg(&store)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start edict");
    let mut server = Server(child);
    println!(
        "run --local: {systems} Systems, {} manifest files; {} on 127.0.0.1:{port}",
        systems + 1,
        bin.display()
    );

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = started + Duration::from_secs(600);
    loop {
        if let Ok((200, _)) = fetch(&agent, &format!("{base}/healthz"), None) {
            break;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("edict exited with {status}:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "edict did not start within 600 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let startup = started.elapsed();
    println!(
        "startup (load, build and publish {systems} Systems, then listen): {:.2} s",
        startup.as_secs_f64()
    );

    let url = |i: usize| {
        format!("{base}/bundles/acme/local/{}/{}/bundle.tar.gz", workload.namespace(i), workload.name(i))
    };
    let mut latencies_ms = Vec::new();
    let mut polls = 0usize;
    let mut timeouts = 0usize;
    let mut revisions = vec![Revision::default(); systems];
    for it in 0..iterations {
        let i = (it * 37 + 11) % systems;
        let (status, tag) = fetch(&agent, &url(i), None).expect("bundle request");
        assert_eq!(status, 200, "bundle of System {i} not served");
        let before = tag.expect("ETag");
        // Alternately the System's own Policy (its replica limit) and the System (its features).
        if it % 2 == 1 {
            revisions[i].system += 1;
        } else {
            revisions[i].policy += 1;
        }
        let text = workload.system(i, revisions[i]);
        let path = dir.join(workload.file(i));

        let t = Instant::now();
        write_atomically(&path, &text);
        let limit = t + Duration::from_secs(10);
        let mut changed = false;
        while Instant::now() < limit {
            polls += 1;
            match fetch(&agent, &url(i), Some(&before)) {
                Ok((200, Some(tag))) if tag != before => {
                    changed = true;
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        if changed {
            latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        } else {
            timeouts += 1;
        }
        // Let the watcher settle before the next edit.
        std::thread::sleep(Duration::from_millis(50));
    }
    let long_polling = long_polling(
        &format!("127.0.0.1:{port}"),
        &workload,
        &dir,
        &mut revisions,
        iterations,
        server.0.id(),
    );

    // A quiet server rescans nothing: count the rescans during a second without edits.
    let changes = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("change applied"))
            .count()
    };
    let before_idle = changes(&log_path);
    std::thread::sleep(Duration::from_secs(1));
    let idle_rescans = changes(&log_path) - before_idle;
    drop(server);

    if std::env::var_os("EDICT_BENCH_SHOW_LOG").is_some() {
        print!("{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    }
    // The server logs how long each rebuild took (`change applied ... elapsed_ms=N`).
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut server_ms: Vec<f64> = log_text
        .lines()
        .filter(|l| l.contains("change applied"))
        .filter_map(|l| l.split("elapsed_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    server_ms.sort_by(|a, b| a.total_cmp(b));
    latencies_ms.sort_by(|a, b| a.total_cmp(b));

    println!("\n==================== run --local summary ====================");
    println!(
        "(machine: {} cores, shared)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "4. file write → new bundle served ({} edits, {} timed out, {} polls):",
        latencies_ms.len(),
        timeouts,
        polls
    );
    println!(
        "   p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms   target p99 ≤ 500 ms  [{}]",
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.9),
        percentile(&latencies_ms, 0.99),
        latencies_ms.last().copied().unwrap_or(f64::NAN),
        mark(timeouts == 0 && percentile(&latencies_ms, 0.99) <= 500.0)
    );
    if !server_ms.is_empty() {
        println!(
            "   server-side rescan+build+publish per logged change: p50 {:.0} ms  p99 {:.0} ms  (after a 20 ms debounce)",
            percentile(&server_ms, 0.5),
            percentile(&server_ms, 0.99)
        );
    }
    println!(
        "   rescans logged: {} for {} edits; {idle_rescans} during 1 s with no edit (expected 0) [{}]",
        server_ms.len(),
        latencies_ms.len() + timeouts + long_polling.latencies_ms.len() + long_polling.timeouts,
        mark(idle_rescans == 0)
    );
    println!("   startup with {systems} Systems: {:.2} s", startup.as_secs_f64());
    long_polling.print(systems);
    println!("==============================================================");
}
