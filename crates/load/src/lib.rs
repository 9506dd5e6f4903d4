//! Switchboard's load generator: `switchboard bench`.
//!
//! This crate owns the four measurements ([`Scenario`]): echo round trips, fan-out
//! end-to-end latency, mass connection opening and connection churn, against Switchboard or
//! any WebSocket server (raw echo and broadcast endpoints, Socket.IO). It reports counts,
//! rates and HDR latency percentiles, and its own CPU use: a saturated load generator
//! measures itself, not the server, so every report says whether that happened.
//!
//! To stay out of the way it pre-encodes and masks each connection's frames once, reads
//! server frames with no copy, runs each process on one thread without locks, and spreads
//! connections over several processes (`--processes`) and source addresses
//! (`--local-addrs`) past the open-files limit and the ephemeral port range. It speaks
//! `wss://` and `https://` over rustls with `switchboard-client`'s TLS configuration (and
//! `--ca`, or `--insecure`), driving the TLS session by the socket's readiness like a plain
//! one. It owns no server.
//!
//! ```no_run
//! use clap::Parser as _;
//! # #[derive(clap::Parser)]
//! # struct Cli { #[command(flatten)] bench: switchboard_load::BenchArgs }
//! # async fn example() -> Result<(), switchboard_load::Error> {
//! let cli = Cli::parse_from(["bench", "echo", "--url", "ws://127.0.0.1:8080/echo",
//!                            "--connections", "4", "--messages", "100"]);
//! let report = switchboard_load::execute(&cli.bench).await?;
//! assert_eq!(report.json()["messages"], 400);
//! # Ok(())
//! # }
//! ```

mod args;
mod churn;
mod connect;
mod ctx;
mod echo;
mod fanout;
mod http;
mod protocol;
mod stats;
mod stream;
mod tls;
mod ws;

use std::io::{IsTerminal as _, Write as _};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub use args::{
    BenchArgs, ChurnArgs, CommonArgs, ConnectArgs, EchoArgs, FanoutArgs, LocalAddrs, Protocol,
    PublishVia, Scenario, Transport, WorkerId,
};
use ctx::Ctx;
use stats::{Partial, decode_histogram, percentiles, rss_bytes};

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The server cannot be reached at all.
    #[error("{0}")]
    Unreachable(String),
    /// More than a few connections failed to open or subscribe.
    #[error("{0}")]
    Setup(String),
    /// A worker process failed or broke the coordination protocol.
    #[error("worker process: {0}")]
    Worker(String),
    /// A local I/O error (spawning workers, writing the report).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The result of a run: one JSON object with the keys listed in `docs/benchmarks.md`.
#[derive(Clone, Debug)]
pub struct Report {
    json: Value,
}

impl Report {
    /// The report as JSON (`scenario`, `duration_s`, `errors`, the scenario's counts, ...).
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// A human-readable summary, one `key  value` line per figure: what ran, the
    /// scenario's figures, errors and CPU, then the parameters.
    pub fn to_table(&self) -> String {
        const HEAD: [&str; 7] =
            ["scenario", "url", "tls", "protocol", "transport", "processes", "duration_s"];
        const TAIL: [&str; 9] = [
            "errors",
            "error_kinds",
            "load_cpu_s",
            "load_cpu_pct",
            "server_cpu_s",
            "server_cpu_pct",
            "server_rss_bytes",
            "params",
            "",
        ];
        let Value::Object(map) = &self.json else { return String::new() };
        let rank = |key: &str| match (
            HEAD.iter().position(|k| *k == key),
            TAIL.iter().position(|k| *k == key),
        ) {
            (Some(i), _) => i,
            (None, Some(i)) => HEAD.len() + 1 + i,
            (None, None) => HEAD.len(),
        };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by_key(|k| rank(k));
        let mut rows: Vec<(String, String)> = Vec::new();
        for key in keys {
            match &map[key] {
                Value::Object(inner) if key.ends_with("latency_us") => {
                    for (k, v) in inner {
                        rows.push((format!("{key}.{k}"), v.to_string()));
                    }
                }
                Value::String(s) => rows.push((key.clone(), s.clone())),
                other => rows.push((key.clone(), other.to_string())),
            }
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter().map(|(key, value)| format!("{key:<width$}  {value}\n")).collect()
    }
}

/// Runs `switchboard bench` as the command does: on its own single-threaded runtime,
/// printing the report (JSON with `--json`, else a table) on standard output.
///
/// With `--processes N` the process starts N−1 copies of its own executable with its own
/// arguments plus `--worker I/N`, which this same function runs as workers.
///
/// # Errors
///
/// See [`execute`]; also an I/O error writing the report.
pub fn run(args: &BenchArgs) -> Result<ExitCode, Error> {
    // One thread per process: connection tasks share counters and histograms without locks,
    // and `--processes` spreads the load over cores.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    if let Some(worker) = args.scenario.common().worker {
        return local.block_on(&runtime, worker_main(args, worker));
    }
    let report = local.block_on(&runtime, execute(args))?;
    let mut stdout = std::io::stdout().lock();
    if args.scenario.common().json {
        writeln!(stdout, "{}", report.json)?;
    } else {
        write!(stdout, "{}", report.to_table())?;
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Carries out a run and returns its report, on the current runtime (connection tasks go
/// to a `LocalSet` of its own).
///
/// With `--processes N` (N > 1) the workers are copies of `std::env::current_exe()` run
/// with this process's arguments: call it from the `switchboard` binary.
///
/// # Errors
///
/// [`Error::Usage`] for options that conflict, [`Error::Unreachable`] when the server
/// refuses TCP connections, [`Error::Setup`] when more than a few connections fail to
/// open, [`Error::Worker`] when a worker process fails.
pub async fn execute(args: &BenchArgs) -> Result<Report, Error> {
    let protocol = validate(args)?;
    tokio::task::LocalSet::new().run_until(parent(args, protocol)).await
}

/// The scenarios' common shape: connections are opened in `setup` (not measured), `phase`
/// is the measured period, `finish` tears down and reports this worker's share.
trait Job {
    async fn setup(&mut self, ctx: &Ctx) -> Result<(), Error>;
    async fn phase(&mut self, ctx: &Ctx) -> Result<(), Error>;
    async fn finish(self, ctx: &Ctx) -> Result<Partial, Error>;
}

/// Runs `job` in the parent, coordinating `children`.
async fn drive<J: Job>(
    mut job: J,
    ctx: &Ctx,
    args: &BenchArgs,
    children: &mut [Worker],
) -> Result<(Partial, Server), Error> {
    let common = args.scenario.common();
    job.setup(ctx).await?;
    for child in children.iter_mut() {
        child.expect("ready").await?;
    }
    let mut server = Server::default();
    if let Some(pid) = common.pid {
        server.rss_before = rss_bytes(pid);
    }
    for child in children.iter_mut() {
        child.send("start").await?;
    }
    let progress = Progress::start(args, ctx);
    job.phase(ctx).await?;
    for child in children.iter_mut() {
        child.expect("done").await?;
    }
    progress.finish();
    if let Scenario::Connect(connect) = &args.scenario {
        tokio::time::sleep(connect.hold).await;
        if let Some(pid) = common.pid {
            server.rss_after = rss_bytes(pid);
        }
    }
    server.cpu = ctx.meter.borrow().server_cpu();
    server.window = ctx.meter.borrow().window();
    for child in children.iter_mut() {
        child.send("stop").await?;
    }
    let mut merged = job.finish(ctx).await?;
    for child in children.iter_mut() {
        let line = child.expect("result").await?;
        let partial: Partial = serde_json::from_value(line["result"].clone())
            .map_err(|e| Error::Worker(format!("bad result: {e}")))?;
        merged.merge(partial).map_err(Error::Worker)?;
    }
    if let Some(pid) = common.pid {
        server.rss = rss_bytes(pid);
    }
    Ok((merged, server))
}

/// The parent: checks the target, starts the workers, runs its own share, merges.
async fn parent(args: &BenchArgs, protocol: Protocol) -> Result<Report, Error> {
    let common = args.scenario.common();
    let ctx = Ctx::new(args, protocol).await?;
    let probe =
        tokio::time::timeout(common.connect_timeout, ws::tcp_connect(ctx.target.addr, None));
    match probe.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(Error::Unreachable(format!(
                "cannot reach {} ({}): {e}",
                common.url, ctx.target.addr
            )));
        }
        Err(_) => {
            return Err(Error::Unreachable(format!("cannot reach {}: timed out", common.url)));
        }
    }
    let mut children = Vec::new();
    for index in 1..common.processes {
        children.push(Worker::spawn(index, common.processes)?);
    }
    let result = match &args.scenario {
        Scenario::Echo(a) => drive(echo::Echo::new(a, &ctx), &ctx, args, &mut children).await,
        Scenario::Fanout(a) => drive(fanout::Fanout::new(a, &ctx), &ctx, args, &mut children).await,
        Scenario::Connect(a) => drive(connect::Connect::new(a), &ctx, args, &mut children).await,
        Scenario::Churn(a) => drive(churn::Churn::new(a), &ctx, args, &mut children).await,
    };
    for child in &mut children {
        child.reap().await;
    }
    let (merged, server) = result?;
    report(args, protocol, ctx.target.is_tls(), &merged, &server)
}

/// A worker process (`--worker I/N`): its share, driven by the parent over stdin/stdout.
async fn worker_main(args: &BenchArgs, worker: WorkerId) -> Result<ExitCode, Error> {
    let protocol = validate(args)?;
    let result = match &args.scenario {
        Scenario::Echo(a) => serve_worker(args, protocol, |ctx| echo::Echo::new(a, ctx)).await,
        Scenario::Fanout(a) => {
            serve_worker(args, protocol, |ctx| fanout::Fanout::new(a, ctx)).await
        }
        Scenario::Connect(a) => serve_worker(args, protocol, |_| connect::Connect::new(a)).await,
        Scenario::Churn(a) => serve_worker(args, protocol, |_| churn::Churn::new(a)).await,
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let _ = say(&json!({"error": format!("worker {}: {e}", worker.index)})).await;
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn serve_worker<J: Job>(
    args: &BenchArgs,
    protocol: Protocol,
    make: impl FnOnce(&Ctx) -> J,
) -> Result<(), Error> {
    let ctx = Ctx::new(args, protocol).await?;
    let mut job = make(&ctx);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    job.setup(&ctx).await?;
    say(&json!({"ready": true})).await?;
    wait_for(&mut stdin, "start").await?;
    job.phase(&ctx).await?;
    say(&json!({"done": true})).await?;
    wait_for(&mut stdin, "stop").await?;
    let partial = job.finish(&ctx).await?;
    say(&json!({"result": partial})).await?;
    Ok(())
}

/// Writes one JSON line to standard output (the parent reads it).
async fn say(value: &Value) -> Result<(), Error> {
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{value}\n").as_bytes()).await?;
    stdout.flush().await?;
    Ok(())
}

async fn wait_for(stdin: &mut Lines<BufReader<tokio::io::Stdin>>, word: &str) -> Result<(), Error> {
    match stdin.next_line().await? {
        Some(line) if line.trim() == word => Ok(()),
        Some(line) => Err(Error::Worker(format!("expected {word:?}, got {line:?}"))),
        None => Err(Error::Worker(format!("the parent went away before {word:?}"))),
    }
}

/// A child worker process, as the parent sees it.
struct Worker {
    index: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(index: u32, count: u32) -> Result<Self, Error> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .arg("--worker")
            .arg(format!("{index}/{count}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Worker("no pipes to the worker".to_owned()));
        };
        Ok(Self { index, child, stdin: Some(stdin), stdout: BufReader::new(stdout).lines() })
    }

    async fn send(&mut self, word: &str) -> Result<(), Error> {
        let failed = |e: std::io::Error| Error::Worker(format!("worker {}: {e}", self.index));
        let Some(stdin) = &mut self.stdin else { return Ok(()) };
        stdin.write_all(format!("{word}\n").as_bytes()).await.map_err(failed)?;
        stdin.flush().await.map_err(failed)
    }

    /// Waits for the worker's next line, which must carry `key`.
    async fn expect(&mut self, key: &str) -> Result<Value, Error> {
        let line =
            self.stdout.next_line().await?.ok_or_else(|| {
                Error::Worker(format!("worker {} exited before {key:?}", self.index))
            })?;
        let value: Value = serde_json::from_str(&line)
            .map_err(|_| Error::Worker(format!("worker {} said {line:?}", self.index)))?;
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            // The worker's own error (a setup failure) is the run's.
            return Err(Error::Setup(error.to_owned()));
        }
        if value.get(key).is_none() {
            return Err(Error::Worker(format!(
                "worker {} said {line:?}, expected {key:?}",
                self.index
            )));
        }
        Ok(value)
    }

    /// Closes the worker's input (a worker still waiting for a word then gives up), waits
    /// briefly for it to exit, then kills it (this process's own child).
    async fn reap(&mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// What the parent saw of the server process (`--pid`).
#[derive(Debug, Default)]
struct Server {
    cpu: Option<f64>,
    window: Duration,
    rss: Option<u64>,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
}

/// The protocol to speak, after checking the options fit together.
fn validate(args: &BenchArgs) -> Result<Protocol, Error> {
    let common = args.scenario.common();
    let protocol = common.protocol.unwrap_or_else(|| {
        let url = switchboard_client::ServerUrl::parse(&common.url);
        let path = url.as_ref().map(|u| u.resource()).unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        if path == "/ws" { Protocol::Switchboard } else { Protocol::Raw }
    });
    let usage = |msg: &str| Err(Error::Usage(msg.to_owned()));
    if (common.ca.is_some() || common.insecure) && !ctx::uses_tls(args) {
        // A ws:// URL with --ca is more likely a mistyped scheme than a wish for plain TCP.
        return usage("--ca and --insecure are for wss:// URLs (and an https:// --api-url)");
    }
    if common.transport != Transport::Ws {
        if !matches!(args.scenario, Scenario::Fanout(_) | Scenario::Connect(_)) {
            return usage("--transport sse|longpoll works with fanout and connect");
        }
        if protocol != Protocol::Switchboard {
            return usage("--transport sse|longpoll needs the switchboard protocol");
        }
    }
    match &args.scenario {
        Scenario::Fanout(f) => {
            if protocol != Protocol::Switchboard && f.channels != 1 {
                return usage("--channels must be 1 with the raw and socketio protocols");
            }
            if protocol != Protocol::Switchboard && f.rate == 0 {
                return usage(
                    "--rate 0 needs acknowledgements, which only the switchboard protocol has",
                );
            }
            if f.publish_via == PublishVia::Http && f.api_key.is_none() {
                return usage("--publish-via http needs --api-key (or SWITCHBOARD_API_KEY)");
            }
            if f.publish_via == PublishVia::Http && protocol != Protocol::Switchboard {
                return usage("--publish-via http needs the switchboard protocol");
            }
        }
        Scenario::Connect(ConnectArgs { subscribe: true, .. })
        | Scenario::Churn(ChurnArgs { subscribe: true, .. })
            if protocol != Protocol::Switchboard =>
        {
            return usage("--subscribe needs the switchboard protocol");
        }
        _ => {}
    }
    Ok(protocol)
}

/// The report's JSON, from the merged partial results.
fn report(
    args: &BenchArgs,
    protocol: Protocol,
    tls: bool,
    merged: &Partial,
    server: &Server,
) -> Result<Report, Error> {
    let common = args.scenario.common();
    let hist = decode_histogram(&merged.latency).map_err(Error::Worker)?;
    let span_s = if merged.first_ns > 0 && merged.last_ns > merged.first_ns {
        (merged.last_ns - merged.first_ns) as f64 / 1e9
    } else {
        0.0
    };
    let per_s = |n: u64, secs: f64| if secs > 0.0 { round(n as f64 / secs, 1) } else { 0.0 };
    let errors: u64 = merged.errors.values().sum();
    let mut out = serde_json::Map::new();
    let (duration_s, params) = match &args.scenario {
        Scenario::Echo(a) => {
            let d = merged.window_s;
            out.insert("messages".into(), json!(merged.count));
            out.insert("msg_per_s".into(), json!(per_s(merged.count, d)));
            out.insert("bytes_per_s".into(), json!(per_s(merged.bytes, d)));
            out.insert("latency_us".into(), percentiles(&hist));
            let params = json!({
                "connections": a.connections,
                "messages": a.duration.map_or(json!(a.messages), |_| Value::Null),
                "size": a.size,
                "in_flight": a.in_flight,
                "duration": a.duration.map(|d| humantime::format_duration(d).to_string()),
                "warmup": a.duration.map(|_| {
                    humantime::format_duration(common.warmup.unwrap_or(Duration::from_secs(1)))
                        .to_string()
                }),
                "text": a.text,
            });
            (d, params)
        }
        Scenario::Fanout(a) => {
            let publishes: u64 = merged.publishes.iter().sum();
            let expected: u64 =
                merged.publishes.iter().zip(&merged.subscribed).map(|(p, s)| p * s).sum();
            // From the first publish to the last delivery; the publishing period when
            // nothing arrived.
            let d = if span_s > 0.0 { span_s } else { a.duration.as_secs_f64() };
            out.insert("publishes".into(), json!(publishes));
            out.insert("expected_deliveries".into(), json!(expected));
            out.insert("deliveries".into(), json!(merged.count));
            let fraction = if expected > 0 { merged.count as f64 / expected as f64 } else { 0.0 };
            out.insert("delivered_fraction".into(), json!(round(fraction, 6)));
            out.insert("deliveries_per_s".into(), json!(per_s(merged.count, d)));
            out.insert("subscribers_ready".into(), json!(merged.subscribed.iter().sum::<u64>()));
            out.insert("latency_us".into(), percentiles(&hist));
            let params = json!({
                "subscribers": a.subscribers,
                "channels": a.channels,
                "rate": a.rate,
                "size": a.size,
                "duration": humantime::format_duration(a.duration).to_string(),
                "grace": humantime::format_duration(a.grace).to_string(),
                "in_flight": a.in_flight,
                "publish_via": match a.publish_via { PublishVia::Ws => "ws", PublishVia::Http => "http" },
                "api_url": a.api_url.as_ref().filter(|_| a.publish_via == PublishVia::Http),
                "channel_prefix": common.channel_prefix,
            });
            (d, params)
        }
        Scenario::Connect(a) => {
            let d = span_s;
            out.insert("connections".into(), json!(merged.count));
            out.insert("failures".into(), json!(merged.failures));
            out.insert("open_per_s".into(), json!(per_s(merged.count, d)));
            if common.pid.is_some() {
                out.insert("server_rss_before_bytes".into(), json!(server.rss_before));
                out.insert("server_rss_after_bytes".into(), json!(server.rss_after));
                let per_conn = match (server.rss_before, server.rss_after) {
                    (Some(before), Some(after)) if merged.count > 0 => {
                        Some(after.saturating_sub(before) / merged.count)
                    }
                    _ => None,
                };
                out.insert("server_rss_per_conn_bytes".into(), json!(per_conn));
            }
            let params = json!({
                "connections": a.connections,
                "subscribe": a.subscribe,
                "channels": a.channels,
                "hold": humantime::format_duration(a.hold).to_string(),
                "concurrency": common.concurrency,
            });
            (d, params)
        }
        Scenario::Churn(a) => {
            let d = merged.window_s;
            out.insert("cycles".into(), json!(merged.count));
            out.insert("failures".into(), json!(merged.failures));
            out.insert("cycles_per_s".into(), json!(per_s(merged.count, d)));
            out.insert("handshake_latency_us".into(), percentiles(&hist));
            let params = json!({
                "rate": a.rate,
                "duration": humantime::format_duration(a.duration).to_string(),
                "subscribe": a.subscribe,
                "channels": a.channels,
                "concurrency": common.concurrency,
            });
            (d, params)
        }
    };
    let mut json = serde_json::Map::new();
    json.insert("scenario".into(), json!(args.scenario.name()));
    json.insert("url".into(), json!(common.url));
    json.insert("tls".into(), json!(tls));
    json.insert("protocol".into(), json!(protocol.as_str()));
    json.insert("transport".into(), json!(common.transport.as_str()));
    let mut params = params;
    if let Some(addrs) = &common.local_addrs {
        params["local_addrs"] = json!(addrs.0.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    json.insert("params".into(), params);
    json.insert("processes".into(), json!(common.processes));
    json.insert("duration_s".into(), json!(round(duration_s, 3)));
    json.insert("errors".into(), json!(errors));
    json.insert("error_kinds".into(), json!(merged.errors));
    let cpu_pct = if merged.window_s > 0.0 { merged.cpu_s / merged.window_s * 100.0 } else { 0.0 };
    json.insert("load_cpu_s".into(), json!(round(merged.cpu_s, 2)));
    json.insert("load_cpu_pct".into(), json!(round(cpu_pct, 1)));
    if common.pid.is_some() {
        let window = server.window.as_secs_f64();
        let pct = server.cpu.filter(|_| window > 0.0).map(|cpu| round(cpu / window * 100.0, 1));
        json.insert("server_cpu_s".into(), json!(server.cpu.map(|c| round(c, 2))));
        json.insert("server_cpu_pct".into(), json!(pct));
        json.insert("server_rss_bytes".into(), json!(server.rss));
    }
    json.extend(out);
    Ok(Report { json: Value::Object(json) })
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The progress bar on standard error, for people watching a long run; hidden when standard
/// error is not a terminal or the output is JSON.
struct Progress {
    bar: indicatif::ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(args: &BenchArgs, ctx: &Ctx) -> Self {
        let common = args.scenario.common();
        let (planned, unit) = match &args.scenario {
            Scenario::Echo(a) => {
                (a.duration.map(|d| d + common.warmup.unwrap_or(Duration::from_secs(1))), "echoes")
            }
            Scenario::Fanout(a) => (Some(a.duration + a.grace), "deliveries"),
            Scenario::Connect(_) => (None, "connections"),
            Scenario::Churn(a) => (Some(a.duration), "cycles"),
        };
        if common.json || !std::io::stderr().is_terminal() {
            return Self { bar: indicatif::ProgressBar::hidden(), ticker: None };
        }
        let bar = match planned {
            Some(d) => {
                let bar = indicatif::ProgressBar::new(d.as_millis() as u64);
                let style =
                    indicatif::ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                bar
            }
            None => indicatif::ProgressBar::new_spinner(),
        };
        let counter = std::rc::Rc::clone(&ctx.progress);
        let workers = if common.processes > 1 { " (this process)" } else { "" };
        let ticker_bar = bar.clone();
        let started = std::time::Instant::now();
        let ticker = tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                ticker_bar.set_position(started.elapsed().as_millis() as u64);
                ticker_bar.set_message(format!("{} {unit}{workers}", counter.get()));
                ticker_bar.tick();
            }
        });
        Self { bar, ticker: Some(ticker) }
    }

    fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(std::mem::size_of::<Error>() <= 32);
    }
}
