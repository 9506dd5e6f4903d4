//! Turns the results of `scripts/bench-peers.sh` into `docs/benchmarks.md` and its plots.
//!
//! ```text
//! bench-report --results FILE.jsonl --machine FILE.json --template FILE.md \
//!              --out docs/benchmarks.md --images docs/images
//! ```
//!
//! Each results line is one `switchboard bench --json` object plus the fields the script adds:
//! `server`, `case`, `run`, `command` and `server_cpus` (or `error` when the run failed). Per
//! (case, server) every figure is the median over the runs that succeeded. The template's
//! `<!-- results -->` line is replaced by the results. Switchboard over TLS
//! (`switchboard-wss`) has a table of its own, against Switchboard over plain TCP.

// A command-line tool: it says what it wrote on standard output.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    load_font()?;
    let mut records = Vec::new();
    for path in &args.results {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            records.push(value);
        }
    }
    let machine: Value = serde_json::from_str(
        &std::fs::read_to_string(&args.machine)
            .with_context(|| format!("{}", args.machine.display()))?,
    )
    .context("machine info is not JSON")?;
    let template = std::fs::read_to_string(&args.template)
        .with_context(|| format!("{}", args.template.display()))?;

    let results = Results::new(&records);
    std::fs::create_dir_all(&args.images).with_context(|| format!("{}", args.images.display()))?;
    let image_link = relative_images(&args.out, &args.images);
    let mut md = String::new();
    write_results(&mut md, &results, &machine, &image_link);
    for case in CASES {
        if results.servers(case.key).is_empty() {
            continue;
        }
        for plot in plots(case, &results) {
            let path = args.images.join(&plot.file);
            plot.draw(&path).with_context(|| format!("plotting {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    let Some((before, after)) = template.split_once(MARKER) else {
        bail!("{}: no {MARKER} line", args.template.display());
    };
    let doc = format!("{before}{}{after}", md.trim_end());
    std::fs::write(&args.out, doc).with_context(|| format!("{}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The command line.
struct Args {
    results: Vec<PathBuf>,
    machine: PathBuf,
    template: PathBuf,
    out: PathBuf,
    images: PathBuf,
}

impl Args {
    fn parse() -> anyhow::Result<Self> {
        let mut results = Vec::new();
        let (mut machine, mut template, mut out, mut images) = (None, None, None, None);
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            let slot = match flag.as_str() {
                "--results" => {
                    results.push(PathBuf::from(value));
                    continue;
                }
                "--machine" => &mut machine,
                "--template" => &mut template,
                "--out" => &mut out,
                "--images" => &mut images,
                _ => bail!("unknown argument {flag:?} ({USAGE})"),
            };
            *slot = Some(PathBuf::from(value));
        }
        if results.is_empty() {
            bail!("--results is required ({USAGE})");
        }
        Ok(Self {
            results,
            machine: machine.context(USAGE)?,
            template: template.context(USAGE)?,
            out: out.context(USAGE)?,
            images: images.context(USAGE)?,
        })
    }
}

/// The servers of the comparison, in the tables' order; the first is ours.
const SERVERS: &[(&str, &str)] = &[
    ("switchboard", "Switchboard"),
    ("tungstenite", "tokio-tungstenite"),
    ("fastwebsockets", "fastwebsockets"),
    ("ws", "ws (Node)"),
    ("uws", "uWebSockets.js"),
    ("socketio", "Socket.IO"),
];
const OURS: &str = "switchboard";
/// Switchboard over `wss://`, compared with itself over `ws://` only.
const OURS_TLS: &str = "switchboard-wss";
/// The share of its plain figure Switchboard should keep over TLS.
const TLS_KEEPS: f64 = 0.6;

/// How one case is read: its main figure and what else its table shows.
struct Case {
    key: &'static str,
    title: &'static str,
    main: Metric,
    /// Latency percentiles under this key, if the case measures latency.
    latency: Option<&'static str>,
    extra: &'static [Metric],
}

/// One figure of a result object.
#[derive(Clone, Copy)]
struct Metric {
    /// Dotted path in the result object.
    path: &'static str,
    label: &'static str,
    unit: Unit,
    higher_is_better: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Count,
    PerSecond,
    BytesPerSecond,
    Bytes,
    Micros,
    Fraction,
    Percent,
}

const DELIVERED: Metric = Metric {
    path: "delivered_fraction",
    label: "delivered",
    unit: Unit::Fraction,
    higher_is_better: true,
};
const SERVER_CPU: Metric = Metric {
    path: "server_cpu_pct",
    label: "server CPU",
    unit: Unit::Percent,
    higher_is_better: false,
};
/// What other processes took of the server's core (the machine is shared).
const OTHER_CPU: Metric = Metric {
    path: "other_cpu_pct",
    label: "others on server core",
    unit: Unit::Percent,
    higher_is_better: false,
};
const LOAD_CPU: Metric = Metric {
    path: "load_cpu_pct",
    label: "load CPU",
    unit: Unit::Percent,
    higher_is_better: false,
};
const MSG_PER_S: Metric = Metric {
    path: "msg_per_s",
    label: "messages/s",
    unit: Unit::PerSecond,
    higher_is_better: true,
};
const P50: Metric = Metric {
    path: "latency_us.p50",
    label: "p50 latency",
    unit: Unit::Micros,
    higher_is_better: false,
};
const P99: Metric = Metric {
    path: "latency_us.p99",
    label: "p99 latency",
    unit: Unit::Micros,
    higher_is_better: false,
};

const CASES: &[Case] = &[
    Case {
        key: "echo-64",
        title: "Echo, 64-byte messages",
        main: MSG_PER_S,
        latency: Some("latency_us"),
        extra: &[SERVER_CPU, LOAD_CPU, OTHER_CPU],
    },
    Case {
        key: "echo-16k",
        title: "Echo, 16 KiB messages",
        main: MSG_PER_S,
        latency: Some("latency_us"),
        extra: &[
            Metric {
                path: "bytes_per_s",
                label: "bytes/s",
                unit: Unit::BytesPerSecond,
                higher_is_better: true,
            },
            SERVER_CPU,
            LOAD_CPU,
            OTHER_CPU,
        ],
    },
    Case {
        key: "fanout-1k",
        title: "Fan-out to 1,000 subscribers",
        main: P99,
        latency: Some("latency_us"),
        extra: &[DELIVERED, SERVER_CPU, LOAD_CPU, OTHER_CPU],
    },
    Case {
        key: "fanout-10k",
        title: "Fan-out to 10,000 subscribers",
        main: P99,
        latency: Some("latency_us"),
        extra: &[DELIVERED, SERVER_CPU, LOAD_CPU, OTHER_CPU],
    },
    Case {
        key: "fanout-max",
        title: "Fan-out, most deliveries per second",
        main: Metric {
            path: "deliveries_per_s",
            label: "deliveries/s",
            unit: Unit::PerSecond,
            higher_is_better: true,
        },
        latency: Some("latency_us"),
        extra: &[DELIVERED, SERVER_CPU, LOAD_CPU, OTHER_CPU],
    },
    Case {
        key: "idle-memory",
        title: "Memory per idle subscribed connection",
        main: Metric {
            path: "server_rss_per_conn_bytes",
            label: "RSS per connection",
            unit: Unit::Bytes,
            higher_is_better: false,
        },
        latency: None,
        extra: &[
            Metric {
                path: "connections",
                label: "connections",
                unit: Unit::Count,
                higher_is_better: true,
            },
            OTHER_CPU,
        ],
    },
    Case {
        key: "open-rate",
        title: "Connections opened per second",
        main: Metric {
            path: "open_per_s",
            label: "opened/s",
            unit: Unit::PerSecond,
            higher_is_better: true,
        },
        latency: None,
        extra: &[
            Metric {
                path: "failures",
                label: "failures",
                unit: Unit::Count,
                higher_is_better: false,
            },
            SERVER_CPU,
            LOAD_CPU,
            OTHER_CPU,
        ],
    },
];

/// A peer counts as "best" in a fan-out case only if it delivered at least this share:
/// dropping messages would otherwise buy it latency.
const MIN_DELIVERED: f64 = 0.99;

/// The runs, grouped by (case, server).
struct Results<'a> {
    runs: BTreeMap<(String, String), Vec<&'a Value>>,
    failures: BTreeMap<(String, String), Vec<String>>,
    total_runs: u64,
}

impl<'a> Results<'a> {
    fn new(records: &'a [Value]) -> Self {
        let mut runs: BTreeMap<_, Vec<_>> = BTreeMap::new();
        let mut failures: BTreeMap<_, Vec<_>> = BTreeMap::new();
        let mut total_runs = 0;
        for r in records {
            let (Some(case), Some(server)) = (r["case"].as_str(), r["server"].as_str()) else {
                continue;
            };
            total_runs = total_runs.max(r["run"].as_u64().unwrap_or(0));
            let key = (case.to_owned(), server.to_owned());
            match r["error"].as_str() {
                Some(e) => failures.entry(key).or_default().push(e.to_owned()),
                None => runs.entry(key).or_default().push(r),
            }
        }
        Self { runs, failures, total_runs }
    }

    /// The servers with any record for `case`, in table order.
    fn servers(&self, case: &str) -> Vec<&'static str> {
        SERVERS
            .iter()
            .map(|(key, _)| *key)
            .filter(|s| {
                let k = (case.to_owned(), (*s).to_owned());
                self.runs.contains_key(&k) || self.failures.contains_key(&k)
            })
            .collect()
    }

    fn records(&self, case: &str, server: &str) -> &[&'a Value] {
        self.runs.get(&(case.to_owned(), server.to_owned())).map_or(&[], Vec::as_slice)
    }

    /// The median over the successful runs of the figure at `path`.
    fn median(&self, case: &str, server: &str, path: &str) -> Option<f64> {
        let mut values: Vec<f64> =
            self.records(case, server).iter().filter_map(|r| lookup(r, path)).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        Some(if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 })
    }

    /// The best peer (not Switchboard) on `metric`: its key and median.
    fn best_peer(&self, case: &Case, metric: Metric) -> Option<(&'static str, f64)> {
        let fanout = case.key.starts_with("fanout");
        self.servers(case.key)
            .into_iter()
            .filter(|s| *s != OURS)
            .filter(|s| {
                !fanout
                    || self.median(case.key, s, DELIVERED.path).is_some_and(|f| f >= MIN_DELIVERED)
            })
            .filter_map(|s| self.median(case.key, s, metric.path).map(|v| (s, v)))
            .reduce(|best, next| {
                let better =
                    if metric.higher_is_better { next.1 > best.1 } else { next.1 < best.1 };
                if better { next } else { best }
            })
    }
}

fn write_results(md: &mut String, results: &Results<'_>, machine: &Value, images: &str) {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "Measured on {}; each figure is the median of {} run{} (interleaved: every server once \
         per run).\n",
        s(&machine["date"]),
        results.total_runs,
        if results.total_runs == 1 { "" } else { "s" },
    );
    let _ = writeln!(md, "| Machine | |\n| --- | --- |");
    let _ = writeln!(md, "| CPU | {} |", s(&machine["cpu_model"]));
    let _ = writeln!(md, "| Cores | {} |", machine["cores"]);
    let _ = writeln!(md, "| Memory | {} |", s(&machine["memory"]));
    let _ = writeln!(md, "| Kernel | {} |", s(&machine["kernel"]));
    let _ = writeln!(md, "| Rust | {} |", s(&machine["rustc"]));
    let _ = writeln!(md, "| Node | {} |", s(&machine["node"]));
    let _ = writeln!(md, "| Switchboard | {} |", s(&machine["switchboard"]));
    let _ = writeln!(md);

    write_targets(md, results);
    for case in CASES {
        write_case(md, results, case, images);
    }
    write_tls(md, results);
    write_physical(md, results, &machine["physical"]);
}

/// Targets: (label, case, metric, ratio bound, whether the ratio must be at least the bound).
fn write_targets(md: &mut String, results: &Results<'_>) {
    let _ = writeln!(md, "### Targets\n");
    let _ = writeln!(md, "| Target | Switchboard | Best peer | Switchboard ÷ peer | Met |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
    let targets: &[(&str, &str, Metric, f64)] = &[
        ("echo-64 messages/s ≥ 1.5 × best peer", "echo-64", MSG_PER_S, 1.5),
        ("echo-16k messages/s ≥ 1.2 × best peer", "echo-16k", MSG_PER_S, 1.2),
        ("fanout-1k p99 latency ≤ 0.5 × best peer", "fanout-1k", P99, 0.5),
        ("fanout-10k p50 latency ≤ 0.5 × best peer", "fanout-10k", P50, 0.5),
        ("fanout-10k p99 latency ≤ 0.5 × best peer", "fanout-10k", P99, 0.5),
        ("open rate ≥ best peer", "open-rate", case("open-rate").main, 1.0),
    ];
    for &(label, key, metric, bound) in targets {
        let c = case(key);
        let ours = results.median(key, OURS, metric.path);
        let best = results.best_peer(c, metric);
        let ratio = ours.zip(best).and_then(|(o, (_, b))| (b > 0.0).then(|| o / b));
        let met = ratio.map(|r| if metric.higher_is_better { r >= bound } else { r <= bound });
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} |",
            ours.map_or("n/a".into(), |v| format_value(v, metric.unit)),
            best.map_or("n/a".into(), |(s, v)| format!(
                "{} ({})",
                format_value(v, metric.unit),
                display_name(s)
            )),
            ratio.map_or("n/a".into(), |r| format!("{r:.2}")),
            yes_no(met),
        );
    }
    let memory = case("idle-memory");
    let ours = results.median(memory.key, OURS, memory.main.path);
    let _ = writeln!(
        md,
        "| idle memory ≤ 1.0 KB per subscribed connection | {} | {} | | {} |",
        ours.map_or("n/a".into(), |v| format_value(v, Unit::Bytes)),
        results.best_peer(memory, memory.main).map_or("n/a".into(), |(s, v)| format!(
            "{} ({})",
            format_value(v, Unit::Bytes),
            display_name(s)
        )),
        yes_no(ours.map(|v| v <= 1000.0)),
    );
    let max = case("fanout-max");
    let figure = results.median(max.key, OURS, max.main.path);
    let delivered = results.median(max.key, OURS, DELIVERED.path);
    let _ = writeln!(
        md,
        "| fanout-max: most deliveries/s, all delivered (figure, no bound) | {} | | | {} |",
        figure.map_or("n/a".into(), |v| format_value(v, Unit::PerSecond)),
        delivered
            .map_or("n/a".into(), |f| format!("{} delivered", format_value(f, Unit::Fraction))),
    );
    let _ = writeln!(
        md,
        "\nIn fan-out cases a peer that delivered less than {:.0} % of the messages is not \
         counted as the best peer.\n",
        MIN_DELIVERED * 100.0
    );
}

fn write_case(md: &mut String, results: &Results<'_>, case: &Case, images: &str) {
    let servers = results.servers(case.key);
    if servers.is_empty() {
        return;
    }
    let _ = writeln!(md, "### {}: {}\n", case.key, case.title);
    // The exact command and pinning, from Switchboard's record (peers differ only in the URL
    // and protocol).
    let sample = servers.iter().find_map(|s| results.records(case.key, s).first().copied());
    if let Some(r) = sample {
        if let Some(cmd) = r["command"].as_str() {
            let _ = writeln!(md, "`{cmd}`\n");
        }
        let _ = writeln!(
            md,
            "Server on CPU {}, load tool on CPU {}.\n",
            r["server_cpus"].as_str().unwrap_or("?"),
            r["load_cpus"].as_str().unwrap_or("?"),
        );
    }
    let ours_main = results.median(case.key, OURS, case.main.path);
    let mut header = format!("| Server | {} | Switchboard ÷ server |", case.main.label);
    let mut rule = String::from("| --- | --- | --- |");
    if case.latency.is_some() {
        for p in ["p50", "p90", "p99", "p99.9"] {
            let _ = write!(header, " {p} |");
            rule.push_str(" --- |");
        }
    }
    for m in case.extra {
        let _ = write!(header, " {} |", m.label);
        rule.push_str(" --- |");
    }
    let _ = writeln!(md, "{header} runs |\n{rule} --- |");
    for server in &servers {
        let name = if *server == OURS {
            format!("**{}**", display_name(server))
        } else {
            display_name(server).to_owned()
        };
        let main = results.median(case.key, server, case.main.path);
        let ratio = match (ours_main, main) {
            (Some(o), Some(v)) if v > 0.0 && *server != OURS => format!("{:.2}", o / v),
            _ => String::new(),
        };
        let mut row = format!(
            "| {name} | {} | {ratio} |",
            main.map_or("failed".into(), |v| format_value(v, case.main.unit))
        );
        if let Some(lat) = case.latency {
            for p in ["p50", "p90", "p99", "p999"] {
                let v = results.median(case.key, server, &format!("{lat}.{p}"));
                let _ = write!(
                    row,
                    " {} |",
                    v.map_or(String::new(), |v| format_value(v, Unit::Micros))
                );
            }
        }
        for m in case.extra {
            let v = results.median(case.key, server, m.path);
            let _ = write!(row, " {} |", v.map_or(String::new(), |v| format_value(v, m.unit)));
        }
        let ok = results.records(case.key, server).len();
        let failed =
            results.failures.get(&(case.key.to_owned(), (*server).to_owned())).map_or(0, Vec::len);
        let _ = writeln!(
            md,
            "{row} {ok}{} |",
            if failed > 0 { format!(" ({failed} failed)") } else { String::new() }
        );
    }
    let _ = writeln!(md);
    let saturated: Vec<_> = servers
        .iter()
        .filter(|s| results.median(case.key, s, LOAD_CPU.path).is_some_and(|c| c >= 90.0))
        .map(|s| display_name(s))
        .collect();
    if !saturated.is_empty() {
        let _ = writeln!(
            md,
            "The load tool used 90 % of its core or more against {}: those figures may \
             measure the load tool rather than the server.\n",
            saturated.join(", ")
        );
    }
    let disturbed: Vec<_> = servers
        .iter()
        .filter(|s| results.median(case.key, s, OTHER_CPU.path).is_some_and(|c| c >= 10.0))
        .map(|s| display_name(s))
        .collect();
    if !disturbed.is_empty() {
        let _ = writeln!(
            md,
            "Other processes of the shared machine took 10 % of the server's core or more \
             while {} ran: those servers had less CPU than the others.\n",
            disturbed.join(", ")
        );
    }
    for ((case_key, server), errors) in &results.failures {
        if case_key == case.key && servers.contains(&server.as_str()) {
            let mut unique = errors.clone();
            unique.dedup();
            let _ = writeln!(
                md,
                "{} failed: {}\n",
                display_name(server),
                unique.join("; ").replace('|', "\\|")
            );
        }
    }
    for plot in plots(case, results) {
        let _ = writeln!(md, "![{}]({images}/{})\n", plot.title, plot.file);
    }
}

/// Switchboard over `wss://` against itself over `ws://`, from the same runs.
fn write_tls(md: &mut String, results: &Results<'_>) {
    let cases = ["echo-64", "fanout-1k"];
    let measured = |case: &str, server: &str| {
        let key = (case.to_owned(), server.to_owned());
        results.runs.contains_key(&key) || results.failures.contains_key(&key)
    };
    if !cases.iter().any(|case| measured(case, OURS_TLS)) {
        return;
    }
    let _ = writeln!(md, "### TLS\n");
    let _ = writeln!(
        md,
        "Switchboard over `wss://` (`serve --dev-tls`, the load tool trusting its certificate \
         with `--ca`) against Switchboard over `ws://`, in the same runs and with the same \
         commands. TLS costs both ends: the load tool encrypts and decrypts every message too. \
         Target: wss keeps at least {TLS_KEEPS} × the plain figure, that is wss ÷ ws ≥ \
         {TLS_KEEPS} for messages/s and ≤ 1 / {TLS_KEEPS} ≈ {:.2} for latency and CPU.\n",
        1.0 / TLS_KEEPS
    );
    let _ = writeln!(md, "| Figure | ws | wss | wss ÷ ws | Met |\n| --- | --- | --- | --- | --- |");
    // (case, figure, whether it has a target): the server's CPU is a figure only where the
    // load is fixed, and the load tool's says whether the load tool was the limit.
    let rows: &[(&str, Metric, bool)] = &[
        ("echo-64", MSG_PER_S, true),
        ("echo-64", LOAD_CPU, false),
        ("fanout-1k", P50, true),
        ("fanout-1k", P99, true),
        ("fanout-1k", SERVER_CPU, true),
        ("fanout-1k", LOAD_CPU, false),
    ];
    for &(case, metric, has_target) in rows {
        if !measured(case, OURS_TLS) {
            continue;
        }
        let ws = results.median(case, OURS, metric.path);
        let wss = results.median(case, OURS_TLS, metric.path);
        let ratio = ws.zip(wss).and_then(|(ws, wss)| (ws > 0.0).then(|| wss / ws));
        let met = ratio
            .map(|r| if metric.higher_is_better { r >= TLS_KEEPS } else { r <= 1.0 / TLS_KEEPS });
        let value = |v: Option<f64>| v.map_or("failed".into(), |v| format_value(v, metric.unit));
        let _ = writeln!(
            md,
            "| {case} {} | {} | {} | {} | {} |",
            metric.label,
            value(ws),
            value(wss),
            ratio.map_or("n/a".into(), |r| format!("{r:.2}")),
            if has_target { yes_no(met) } else { "" },
        );
    }
    let _ = writeln!(md);
    let saturated: Vec<_> = cases
        .iter()
        .filter(|case| results.median(case, OURS_TLS, LOAD_CPU.path).is_some_and(|c| c >= 90.0))
        .copied()
        .collect();
    if !saturated.is_empty() {
        let _ = writeln!(
            md,
            "The load tool used 90 % of its core or more over wss in {}: there the wss figure \
             is the load tool's limit as much as the server's.\n",
            saturated.join(", ")
        );
    }
    let disturbed: Vec<_> = cases
        .iter()
        .filter(|case| {
            [OURS, OURS_TLS].iter().any(|server| {
                results.median(case, server, OTHER_CPU.path).is_some_and(|c| c >= 10.0)
            })
        })
        .copied()
        .collect();
    if !disturbed.is_empty() {
        let _ = writeln!(
            md,
            "Other processes of the shared machine took 10 % of the server's core or more \
             during {}: the ratio there is less trustworthy.\n",
            disturbed.join(", ")
        );
    }
    for case in cases {
        if let Some(errors) = results.failures.get(&(case.to_owned(), OURS_TLS.to_owned())) {
            let mut unique = errors.clone();
            unique.dedup();
            let _ =
                writeln!(md, "{case} over wss failed: {}\n", unique.join("; ").replace('|', "\\|"));
        }
    }
}

fn write_physical(md: &mut String, results: &Results<'_>, physical: &Value) {
    if !physical.is_object() {
        return;
    }
    let f = |k: &str| physical[k].as_f64();
    let _ = writeln!(md, "### Physical limits\n");
    let _ = writeln!(
        md,
        "Measured once per run of the script by `loopback-probe` (median of {} repetition{}): \
         the CPU time of the calling thread per system call on a loopback TCP pair, the other \
         end drained or fed by a second thread.\n",
        physical["repeats"].as_u64().unwrap_or(1),
        if physical["repeats"].as_u64().unwrap_or(1) == 1 { "" } else { "s" },
    );
    let _ = writeln!(md, "| Measure | Value |\n| --- | --- |");
    let rows: &[(&str, &str, &str)] = &[
        ("small_write_ns", "one 64-byte `write`", "ns"),
        ("small_read_ns", "one 64-byte `read`", "ns"),
        ("coalesced_write_ns_per_byte", "one byte of a 64 KiB `write`", "ns"),
        ("coalesced_read_ns_per_byte", "one byte of a 64 KiB `read`", "ns"),
        ("bandwidth_gb_per_s", "throughput of 1 MiB writes between two threads", "GB/s"),
        ("round_trip_64_ns", "64-byte round trip between two threads (wall clock)", "ns"),
    ];
    for (key, label, unit) in rows {
        if let Some(v) = f(key) {
            let _ = writeln!(md, "| {label} | {} {unit} |", significant(v));
        }
    }
    let _ = writeln!(md);
    let (Some(w), Some(r), Some(cw), Some(cr)) = (
        f("small_write_ns"),
        f("small_read_ns"),
        f("coalesced_write_ns_per_byte"),
        f("coalesced_read_ns_per_byte"),
    ) else {
        return;
    };
    // Bytes on the wire per echoed message: the client's frame has a 4-byte mask and a 2-byte
    // (≤ 125 bytes) or 4-byte (≤ 64 KiB) header; the server's has no mask (RFC 6455 §5.2).
    let echo_bound =
        |size: f64, header: f64| 1e9 / ((size + header + 4.0) * cr + (size + header) * cw);
    let mut lines = Vec::new();
    let pct = |v: f64, bound: f64| format!("{:.0} %", v / bound * 100.0);
    if let Some(v) = results.median("echo-64", OURS, MSG_PER_S.path) {
        let per_call = 1e9 / (w + r);
        let bytes = echo_bound(64.0, 2.0);
        lines.push(format!(
            "| echo-64 messages/s | {} | {} ({}) | {} ({}) |",
            format_value(v, Unit::PerSecond),
            format_value(per_call, Unit::PerSecond),
            pct(v, per_call),
            format_value(bytes, Unit::PerSecond),
            pct(v, bytes),
        ));
    }
    if let Some(v) = results.median("echo-16k", OURS, MSG_PER_S.path) {
        let bytes = echo_bound(16384.0, 4.0);
        lines.push(format!(
            "| echo-16k messages/s | {} | | {} ({}) |",
            format_value(v, Unit::PerSecond),
            format_value(bytes, Unit::PerSecond),
            pct(v, bytes),
        ));
    }
    if let Some(v) = results.median("fanout-max", OURS, "deliveries_per_s") {
        let per_call = 1e9 / w;
        lines.push(format!(
            "| fanout-max deliveries/s | {} | {} ({}) | |",
            format_value(v, Unit::PerSecond),
            format_value(per_call, Unit::PerSecond),
            pct(v, per_call),
        ));
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "How close Switchboard comes, its server on one core. *One call per message*: a `read` \
         and a `write` per echoed message, a `write` per delivery; a server that coalesces \
         frames passes it. *Bytes only*: just the per-byte cost of moving the frames in and \
         out in 64 KiB calls, a ceiling no server on this core can pass. Neither counts \
         any work of the server's own.\n"
    );
    let _ = writeln!(md, "| Figure | Switchboard | One call per message | Bytes only |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for l in lines {
        let _ = writeln!(md, "{l}");
    }
    if let (Some(v), Some(rtt)) =
        (results.median("echo-64", OURS, "latency_us.p50"), f("round_trip_64_ns"))
    {
        let _ = writeln!(
            md,
            "\nA bare 64-byte round trip between two threads takes {}; Switchboard's echo-64 p50 \
             ({}) has 16 messages in flight on each of 100 connections queued ahead of it.",
            format_value(rtt / 1000.0, Unit::Micros),
            format_value(v, Unit::Micros),
        );
    }
    let _ = writeln!(md);
}

/// One PNG.
struct Plot {
    file: String,
    title: String,
    y_label: &'static str,
    unit: Unit,
    /// Series names (one: a plain bar chart; more: grouped bars).
    series: Vec<&'static str>,
    /// Per server: its key and one value per series.
    bars: Vec<(&'static str, Vec<Option<f64>>)>,
}

fn plots(case: &Case, results: &Results<'_>) -> Vec<Plot> {
    let servers = results.servers(case.key);
    let mut plots = Vec::new();
    let latency_plot = |file: String| {
        case.latency.map(|lat| Plot {
            file,
            title: format!("{}: latency (lower is better)", case.key),
            y_label: "latency",
            unit: Unit::Micros,
            series: vec!["p50", "p99"],
            bars: servers
                .iter()
                .map(|s| {
                    let p = |q: &str| results.median(case.key, s, &format!("{lat}.{q}"));
                    (*s, vec![p("p50"), p("p99")])
                })
                .collect(),
        })
    };
    if case.main.unit == Unit::Micros {
        // The main figure is a latency: the grouped chart is the case's chart.
        plots.extend(latency_plot(format!("bench-{}.png", case.key)));
        return plots;
    }
    plots.push(Plot {
        file: format!("bench-{}.png", case.key),
        title: format!(
            "{}: {} ({} is better)",
            case.key,
            case.main.label,
            if case.main.higher_is_better { "higher" } else { "lower" }
        ),
        y_label: case.main.label,
        unit: case.main.unit,
        series: vec![case.main.label],
        bars: servers
            .iter()
            .map(|s| (*s, vec![results.median(case.key, s, case.main.path)]))
            .collect(),
    });
    plots.extend(latency_plot(format!("bench-{}-latency.png", case.key)));
    plots
}

impl Plot {
    fn draw(&self, path: &Path) -> anyhow::Result<()> {
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        self.draw_on(&root)?;
        root.present()?;
        Ok(())
    }

    fn draw_on(&self, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()> {
        let mut values: Vec<f64> =
            self.bars.iter().flat_map(|(_, v)| v.iter().flatten().copied()).collect();
        values.sort_by(f64::total_cmp);
        let max = values.last().copied().unwrap_or(0.0);
        // A few servers an order of magnitude off would flatten everyone else's bars: the
        // axis stops at 3 × the median and their bars are cut, their labels marked ↑.
        let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
        let cap = (median > 0.0 && max > 6.0 * median).then_some(3.0 * median);
        let top = match cap {
            Some(cap) => cap * 1.18,
            None if max > 0.0 => max * 1.18,
            None => 1.0,
        };
        let title = match cap {
            Some(cap) => format!("{} (axis cut at {})", self.title, format_value(cap, self.unit)),
            None => self.title.clone(),
        };
        let n = self.bars.len().max(1);
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, 24))
            .margin(16)
            .margin_bottom(40)
            .x_label_area_size(10)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
        let unit = self.unit;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc(self.y_label)
            .y_labels(8)
            .y_label_formatter(&|v| if *v == 0.0 { "0".into() } else { format_value(*v, unit) })
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        let groups = self.series.len().max(1) as f64;
        let width = 0.7 / groups;
        for (i, (server, values)) in self.bars.iter().enumerate() {
            for (j, v) in values.iter().enumerate() {
                let x0 = i as f64 + 0.15 + j as f64 * width;
                let x1 = x0 + width * 0.92;
                let color = bar_color(*server == OURS, j, self.series.len());
                let Some(v) = *v else {
                    chart.draw_series(std::iter::once(Text::new(
                        "n/a",
                        ((x0 + x1) / 2.0, top * 0.02),
                        (FONT, 14)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )))?;
                    continue;
                };
                let shown = cap.map_or(v, |cap| v.min(cap));
                let label = if shown < v {
                    format!("{} ↑", format_value(v, self.unit))
                } else {
                    format_value(v, self.unit)
                };
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x1, shown)],
                    color.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    label,
                    ((x0 + x1) / 2.0, shown + top * 0.01),
                    (FONT, 13).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))?;
            }
            // The server's name under its bars, on the root area (outside the plot's clip).
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let style = (FONT, 16)
                .into_font()
                .style(if *server == OURS { FontStyle::Bold } else { FontStyle::Normal })
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(display_name(server), (px, py + 8), style))?;
        }
        if self.series.len() > 1 {
            let (x, y) = (WIDTH as i32 - 200, 60);
            for (j, name) in self.series.iter().enumerate() {
                let y = y + j as i32 * 22;
                root.draw(&Rectangle::new(
                    [(x, y), (x + 16, y + 14)],
                    bar_color(false, j, self.series.len()).filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [(x + 18, y), (x + 34, y + 14)],
                    bar_color(true, j, self.series.len()).filled(),
                ))?;
                root.draw(&Text::new(
                    *name,
                    (x + 42, y),
                    (FONT, 15).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top)),
                ))?;
            }
        }
        Ok(())
    }
}

/// Switchboard in orange, peers in blue; in grouped charts the later series darker.
fn bar_color(ours: bool, series: usize, count: usize) -> RGBColor {
    let dark = count > 1 && series > 0;
    match (ours, dark) {
        (true, false) if count > 1 => RGBColor(253, 174, 107),
        (true, _) => RGBColor(230, 85, 13),
        (false, false) if count > 1 => RGBColor(158, 202, 225),
        (false, _) => RGBColor(49, 130, 189),
    }
}

fn case(key: &str) -> &'static Case {
    CASES.iter().find(|c| c.key == key).unwrap_or(&CASES[0])
}

fn display_name(server: &str) -> &str {
    SERVERS.iter().find(|(k, _)| *k == server).map_or(server, |(_, name)| name)
}

fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    }
}

/// The value at a dotted path, if it is a number.
fn lookup(v: &Value, path: &str) -> Option<f64> {
    path.split('.').try_fold(v, |v, key| v.get(key)).and_then(Value::as_f64)
}

fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Count => format!("{v:.0}"),
        Unit::PerSecond => compact(v, ""),
        Unit::BytesPerSecond => format!("{}B/s", compact(v, " ")),
        Unit::Bytes if v >= 1000.0 => format!("{} KB", significant(v / 1000.0)),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Micros if v >= 1000.0 => format!("{} ms", significant(v / 1000.0)),
        Unit::Micros => format!("{} µs", significant(v)),
        Unit::Fraction => format!("{:.2} %", v * 100.0),
        Unit::Percent => format!("{v:.0} %"),
    }
}

/// 1234567 → "1.23M" (with `sep` between number and suffix).
fn compact(v: f64, sep: &str) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    if suffix.is_empty() {
        format!("{}{sep}", significant(scaled)).trim_end().to_owned()
    } else {
        format!("{}{sep}{suffix}", significant(scaled))
    }
}

/// Three significant digits at most, no trailing zeros.
fn significant(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// The images directory as the markdown file links it.
fn relative_images(out: &Path, images: &Path) -> String {
    let base = out.parent().unwrap_or(Path::new(""));
    images.strip_prefix(base).unwrap_or(images).to_string_lossy().into_owned()
}

/// Registers DejaVu Sans (Debian's `fonts-dejavu-core`) as the plots' font.
fn load_font() -> anyhow::Result<()> {
    for (path, style) in [(FONT_PATH, FontStyle::Normal), (FONT_BOLD_PATH, FontStyle::Bold)] {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{path} (install Debian's fonts-dejavu-core)"))?;
        // The font lives as long as the process: plotters keeps a 'static reference.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT, style, bytes)
            .map_err(|_| anyhow::anyhow!("{path}: not a font"))?;
    }
    Ok(())
}

const MARKER: &str = "<!-- results -->";
const USAGE: &str = "usage: bench-report --results FILE.jsonl [--results …] --machine FILE.json \
                     --template FILE.md --out FILE.md --images DIR";
const FONT: &str = "sans-serif";
const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT_BOLD_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 480;
