//! A libFuzzer-free fuzz driver: runs Partita's fuzz targets on mutated inputs for a time
//! budget, without coverage feedback, on a stable compiler. See README.md.
//!
//! ```text
//! fuzz-fallback <target|all> [--seconds N] [--seed N] [--corpus DIR] [--artifacts DIR]
//! fuzz-fallback --write-seeds <target> <DIR>
//! ```
//!
//! Inputs start from the target's built-in seeds plus the files in `corpus/<target>/`; each
//! run mutates one of them a few times (bit flips, interesting integers, inserted, deleted,
//! duplicated and spliced ranges). A panic saves the input to `artifacts/<target>/crash-<hash>`
//! and exits with status 1; a file given instead of a target name is replayed.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use partita_fuzz::{seeds, TARGETS};

/// Like libFuzzer's `-malloc_limit_mb`: an allocation above this is a bug (a size taken from
/// the input without a bound), reported with a backtrace and the input instead of an abort
/// that says nothing.
const MALLOC_LIMIT: usize = 1 << 30;

mod guard {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::{Cell, RefCell};
    use std::path::PathBuf;

    pub(crate) struct LimitedAlloc;

    thread_local! {
        static REPORTING: Cell<bool> = const { Cell::new(false) };
        /// The input being run and where to save it if it allocates too much.
        pub(crate) static CURRENT: RefCell<Option<(PathBuf, Vec<u8>)>> = const { RefCell::new(None) };
    }

    unsafe impl GlobalAlloc for LimitedAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.size() > super::MALLOC_LIMIT && !REPORTING.with(|r| r.replace(true)) {
                eprintln!(
                    "allocation of {} bytes exceeds the limit\n{}",
                    layout.size(),
                    std::backtrace::Backtrace::force_capture()
                );
                CURRENT.with(|c| {
                    if let Some((dir, input)) = c.borrow().as_ref() {
                        let path = super::save(dir, input);
                        eprintln!("input saved to {}", path.display());
                    }
                });
                std::process::abort();
            }
            System.alloc(layout)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if new_size > super::MALLOC_LIMIT {
                let grown = Layout::from_size_align_unchecked(new_size, layout.align());
                return self.alloc(grown);
            }
            System.realloc(ptr, layout, new_size)
        }
    }
}

#[global_allocator]
static ALLOCATOR: guard::LimitedAlloc = guard::LimitedAlloc;

struct Options {
    targets: Vec<&'static str>,
    seconds: u64,
    seed: u64,
    corpus: PathBuf,
    artifacts: PathBuf,
    replay: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--write-seeds") {
        let [_, target, dir] = &args[..] else {
            eprintln!("usage: fuzz-fallback --write-seeds <target> <DIR>");
            return ExitCode::from(2);
        };
        fs::create_dir_all(dir).expect("corpus directory");
        for (i, input) in seeds(target).iter().enumerate() {
            fs::write(Path::new(dir).join(format!("seed-{i}")), input).expect("seed file");
        }
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\nusage: fuzz-fallback <target|all> [--seconds N] [--seed N] [--corpus DIR] [--artifacts DIR] [FILE...]");
            return ExitCode::from(2);
        }
    };
    let budget = Duration::from_secs(options.seconds) / options.targets.len().max(1) as u32;
    for &name in &options.targets {
        let target = TARGETS.iter().find(|(n, _)| *n == name).expect("known").1;
        if !options.replay.is_empty() {
            for file in &options.replay {
                target(&fs::read(file).expect("input file"));
                println!("{name}: {} ran without a crash", file.display());
            }
            continue;
        }
        if let Err(path) = fuzz(name, target, budget, &options) {
            eprintln!("{name}: crash saved to {}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn parse(args: &[String]) -> Result<Options, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut options = Options {
        targets: Vec::new(),
        seconds: 60,
        seed: now | 1,
        corpus: PathBuf::from("corpus"),
        artifacts: PathBuf::from("artifacts"),
        replay: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seed" => options.seed = value()?.parse::<u64>().map_err(|e| format!("{e}"))? | 1,
            "--corpus" => options.corpus = PathBuf::from(value()?),
            "--artifacts" => options.artifacts = PathBuf::from(value()?),
            "all" => options.targets = TARGETS.iter().map(|(n, _)| *n).collect(),
            name if options.targets.is_empty() => {
                let known = TARGETS.iter().find(|(n, _)| *n == name);
                options
                    .targets
                    .push(known.ok_or(format!("unknown target {name}"))?.0);
            }
            file => options.replay.push(PathBuf::from(file)),
        }
    }
    if options.targets.is_empty() {
        return Err("no target given".to_string());
    }
    Ok(options)
}

/// Fuzzes one target until the budget is spent; `Err` holds the saved crashing input.
fn fuzz(name: &str, target: fn(&[u8]), budget: Duration, options: &Options) -> Result<(), PathBuf> {
    let mut pool = seeds(name);
    if let Ok(entries) = fs::read_dir(options.corpus.join(name)) {
        pool.extend(entries.flatten().filter_map(|e| fs::read(e.path()).ok()));
    }
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut rng = Rng(options.seed);
    println!(
        "{name}: {} seeds, seed {}, {} s",
        pool.len(),
        options.seed,
        budget.as_secs()
    );
    let started = Instant::now();
    // Every seed as it is first: the corpus holds the inputs of past crashes.
    for input in pool.clone() {
        guard::CURRENT
            .with(|c| *c.borrow_mut() = Some((options.artifacts.join(name), input.clone())));
        if panic::catch_unwind(|| target(&input)).is_err() {
            return Err(save(&options.artifacts.join(name), &input));
        }
    }
    let mut runs: u64 = 0;
    while started.elapsed() < budget {
        let mut input = pool[rng.below(pool.len())].clone();
        // Half the time a single change: most inputs then still get past the header.
        let changes = if rng.below(2) == 0 {
            1
        } else {
            1 + rng.below(8)
        };
        for _ in 0..changes {
            let other = &pool[rng.below(pool.len())];
            mutate(&mut input, other, &mut rng);
        }
        guard::CURRENT
            .with(|c| *c.borrow_mut() = Some((options.artifacts.join(name), input.clone())));
        if panic::catch_unwind(|| target(&input)).is_err() {
            return Err(save(&options.artifacts.join(name), &input));
        }
        runs += 1;
        // Keep a few mutants as new starting points: deeper inputs without coverage data.
        if runs.is_multiple_of(64) && pool.len() < 4096 {
            pool.push(input);
        }
    }
    println!("{name}: {runs} runs in {:.0?}, no crash", started.elapsed());
    Ok(())
}

fn save(dir: &Path, input: &[u8]) -> PathBuf {
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    fs::create_dir_all(dir).expect("artifacts directory");
    let path = dir.join(format!("crash-{hash:016x}"));
    fs::write(&path, input).expect("crash file");
    path
}

/// xorshift64*: fast, and reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    7,
    8,
    16,
    61,
    127,
    128,
    255,
    256,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    -0x8000_0000,
    i64::MAX,
    i64::MIN,
];

fn mutate(input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = rng.next() as u8;
        }
        2 if len > 0 => {
            // An interesting integer, big-endian, 1, 2, 4 or 8 bytes wide.
            let width = 1 << rng.below(4);
            let value = INTERESTING[rng.below(INTERESTING.len())].to_be_bytes();
            let at = rng.below(len);
            for (i, byte) in value[8 - width..].iter().enumerate() {
                if let Some(slot) = input.get_mut(at + i) {
                    *slot = *byte;
                }
            }
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(16)).min(len);
            input.drain(at..end);
        }
        4 => {
            let at = rng.below(len + 1);
            let bytes: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
            input.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(64)).min(len);
            let copy = input[at..end].to_vec();
            let to = rng.below(len + 1);
            input.splice(to..to, copy);
        }
        6 if !other.is_empty() => {
            let from = rng.below(other.len());
            let end = (from + 1 + rng.below(64)).min(other.len());
            let at = rng.below(len + 1);
            input.truncate(at);
            input.extend_from_slice(&other[from..end]);
        }
        _ => {
            let keep = rng.below(len + 1);
            input.truncate(keep);
        }
    }
}
