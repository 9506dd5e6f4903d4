//! The machine's limits for a WebSocket server on loopback TCP, measured once per benchmark
//! run: what one small write, one small read, a byte of a large write, and a round trip
//! cost. Prints one JSON object (docs/benchmarks.md, "Physical limits").
//!
//! Costs are CPU time of the thread making the calls (`/proc/thread-self/schedstat`), so a
//! thread blocked on a full or empty socket does not count its wait. On loopback the writer
//! also pays the receive path (the kernel delivers to the peer socket inside `write`).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    // Each figure is the median of a few repetitions: the machine is shared and noisy.
    let mut samples: Vec<[f64; 6]> = Vec::new();
    for _ in 0..REPEATS {
        let small_write = stream(SMALL, SMALL * SMALL_COUNT, LARGE)?;
        let small_read = stream(LARGE, SMALL * SMALL_COUNT, SMALL)?;
        let coalesced = stream(LARGE, BULK_BYTES, LARGE)?;
        let huge = stream(HUGE, BULK_BYTES * 2, HUGE)?;
        samples.push([
            small_write.writer_ns_per_call,
            small_read.reader_ns_per_call,
            coalesced.writer_ns_per_byte,
            coalesced.reader_ns_per_byte,
            huge.bytes_per_ns,
            ping_pong()?,
        ]);
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = samples.iter().map(|s| s[i]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let report = serde_json::json!({
        "small_write_ns": median(0),
        "small_read_ns": median(1),
        "coalesced_write_ns_per_byte": median(2),
        "coalesced_read_ns_per_byte": median(3),
        "bandwidth_gb_per_s": median(4),
        "round_trip_64_ns": median(5),
        "small_bytes": SMALL,
        "coalesced_write_bytes": LARGE,
        "bandwidth_write_bytes": HUGE,
        "repeats": REPEATS,
    });
    println!("{report}");
    Ok(())
}

/// One one-way transfer's costs.
struct Transfer {
    writer_ns_per_call: f64,
    writer_ns_per_byte: f64,
    reader_ns_per_call: f64,
    reader_ns_per_byte: f64,
    /// Wall-clock throughput (bytes per ns = GB/s).
    bytes_per_ns: f64,
}

/// Sends `total` bytes in writes of `write_size` and reads them in reads of up to
/// `read_size`.
fn stream(write_size: usize, total: usize, read_size: usize) -> anyhow::Result<Transfer> {
    let (mut tx, mut rx) = pair()?;
    let reader = thread::spawn(move || -> std::io::Result<(u64, u64)> {
        let mut buf = vec![0u8; read_size];
        let (mut got, mut calls) = (0usize, 0u64);
        let cpu = thread_cpu_ns()?;
        while got < total {
            let n = rx.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
            calls += 1;
        }
        Ok((thread_cpu_ns()? - cpu, calls))
    });
    let buf = vec![0x5au8; write_size];
    let start = Instant::now();
    let cpu = thread_cpu_ns()?;
    let mut sent = 0;
    let mut calls = 0u64;
    while sent < total {
        tx.write_all(&buf)?;
        sent += write_size;
        calls += 1;
    }
    let writer_cpu = thread_cpu_ns()? - cpu;
    drop(tx);
    let (reader_cpu, reads) = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
    let wall = start.elapsed().as_nanos() as f64;
    Ok(Transfer {
        writer_ns_per_call: writer_cpu as f64 / calls as f64,
        writer_ns_per_byte: writer_cpu as f64 / sent as f64,
        reader_ns_per_call: reader_cpu as f64 / reads.max(1) as f64,
        reader_ns_per_byte: reader_cpu as f64 / sent as f64,
        bytes_per_ns: sent as f64 / wall,
    })
}

/// Mean wall-clock round trip of a `SMALL`-byte message between two threads.
fn ping_pong() -> anyhow::Result<f64> {
    let (mut a, mut b) = pair()?;
    let rounds = WARMUP_ROUNDS + ROUNDS;
    let echo = thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0u8; SMALL];
        for _ in 0..rounds {
            b.read_exact(&mut buf)?;
            b.write_all(&buf)?;
        }
        Ok(())
    });
    let mut buf = [0u8; SMALL];
    let mut start = Instant::now();
    for i in 0..rounds {
        if i == WARMUP_ROUNDS {
            start = Instant::now();
        }
        a.write_all(&buf)?;
        a.read_exact(&mut buf)?;
    }
    let wall = start.elapsed().as_nanos() as f64;
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(wall / ROUNDS as f64)
}

/// A connected loopback TCP pair with Nagle off, as WebSocket servers set it.
fn pair() -> anyhow::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let a = TcpStream::connect(listener.local_addr()?).context("connect")?;
    let (b, _) = listener.accept().context("accept")?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a, b))
}

/// CPU time this thread has run, in nanoseconds (first field of schedstat).
fn thread_cpu_ns() -> std::io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    stat.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unexpected schedstat {stat:?}")))
}

/// A small message: the echo-64 payload.
const SMALL: usize = 64;
/// Small writes or reads per measurement.
const SMALL_COUNT: usize = 200_000;
/// A coalesced write: many small frames in one call.
const LARGE: usize = 64 << 10;
/// A write large enough that per-call costs vanish.
const HUGE: usize = 1 << 20;
/// Bytes per bulk measurement.
const BULK_BYTES: usize = 256 << 20;
/// Repetitions of every measurement.
const REPEATS: usize = 3;
const WARMUP_ROUNDS: usize = 5_000;
const ROUNDS: usize = 20_000;
