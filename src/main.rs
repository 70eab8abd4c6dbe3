//! The `kgate` command: parse, load config, run.

use clap::{Parser, Subcommand};
use kgate::config::{CheckArgs, Config, LogFormat, RunArgs};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "kgate",
    version,
    about = "Kafka proxy: one local listener per broker, addresses rewritten"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    Run(Box<RunArgs>),
    /// Validate the configuration `run` would use (file, KGATE_* environment
    /// and flags, certificate and key files) without starting anything.
    CheckConfig(Box<CheckArgs>),
    /// Manage the users file that client SASL (PLAIN, SCRAM) checks against.
    #[command(subcommand)]
    User(UserCmd),
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user, or replace its entry. The password is read from stdin
    /// when stdin is not a terminal, else from a prompt without echo.
    Add {
        name: String,
        /// SCRAM-SHA-512 or SCRAM-SHA-256; the entry also serves PLAIN.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations (4096 to 100000).
        #[arg(long, default_value_t = kgate::downstream::sasl::users::DEFAULT_ITERATIONS)]
        iterations: u32,
        /// The users file (written atomically, mode 0600).
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

fn user(cmd: UserCmd) -> ExitCode {
    use kgate::downstream::sasl::users::{add_user, Hash};
    let UserCmd::Add {
        name,
        mechanism,
        iterations,
        file,
    } = cmd;
    let Some(hash) = Hash::parse(&mechanism) else {
        eprintln!("error: --mechanism {mechanism:?}: expected SCRAM-SHA-512 or SCRAM-SHA-256");
        return ExitCode::from(2);
    };
    let password = match kgate::downstream::sasl::password::read(&format!("password for {name}: ")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot read the password: {e}");
            return ExitCode::from(2);
        }
    };
    match add_user(&file, &name, hash, password.as_bytes(), iterations) {
        Ok(replaced) => {
            let what = if replaced {
                "replaced the entry of"
            } else {
                "added"
            };
            println!("{}: {what} user {name:?} ({})", file.display(), hash.name());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logs(c: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| c.log_level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match c.log_format {
        LogFormat::Json => b.json().init(),
        LogFormat::Human => b.init(),
    }
}

/// glibc raises its mmap threshold after a large buffer is freed, so later
/// large buffers come from the heap and stay resident after a burst. A fixed
/// threshold keeps buffers over 256 KiB in their own mappings, which go
/// back to the system when freed; smaller frees are trimmed above 1 MiB.
fn return_memory_after_bursts() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called once before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::User(cmd) => user(cmd),
        Cmd::CheckConfig(args) => check_config(&args),
        Cmd::Run(args) => run(*args),
    }
}

fn check_config(args: &CheckArgs) -> ExitCode {
    let checked = args.check().and_then(|c| {
        // The users file and the JWKS parse as `run` will read them.
        match &c.client_auth {
            Some(a) => kgate::downstream::sasl::Server::new(a)
                .map(|_| c)
                .map_err(|e| format!("{}: {e}", args.origin())),
            None => Ok(c),
        }
    });
    match checked {
        Ok(c) => {
            println!(
                "{}: OK ({} bootstrap server(s), {} static listener(s), bootstrap listener {}:{})",
                args.origin(),
                c.bootstrap.len(),
                c.static_listeners.len(),
                c.bind_host,
                c.port_base
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let again = args.clone();
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(&config);
    return_memory_after_bursts();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(config, again))
}

/// Runs until a signal, reloading on SIGHUP (`again` resolves the
/// configuration anew), then drains.
async fn serve(config: Config, again: RunArgs) -> ExitCode {
    let running = match kgate::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let _flush = tokio::spawn(kgate::logs::flush_task());
    let shared = running.shared.clone();
    let on_hup = move || {
        let (shared, again) = (shared.clone(), again.clone());
        async move {
            shared.reload_tls(true);
            match again.resolve() {
                Ok(new) => shared.reload(new).await,
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: configuration is invalid; keeping the running one")
                }
            }
        }
    };
    wait_for_signal(on_hup).await;
    let drain = running.shared.config.drain_timeout;
    tracing::info!(
        drain_timeout_ms = drain.as_millis() as u64,
        "shutting down: not ready, listeners closed, draining in-flight requests (signal again to exit now)"
    );
    tokio::select! {
        left = running.drain() => {
            if left > 0 {
                tracing::warn!(connections = left, "drain timeout reached; closing the rest");
            } else {
                tracing::info!("drained");
            }
        }
        _ = second_signal() => tracing::warn!("second signal: exiting now"),
    }
    ExitCode::SUCCESS
}

async fn second_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => std::future::pending().await,
    }
}

/// Waits for SIGTERM or SIGINT; SIGHUP reloads certificates and the live
/// settings meanwhile.
async fn wait_for_signal<F: std::future::Future<Output = ()>>(on_hup: impl Fn() -> F) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading certificates and configuration");
                on_hup().await;
            }
        }
    }
}
