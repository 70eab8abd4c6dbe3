//! Command-line flags; each also reads a `KGATE_*` environment variable
//! (clap gives the flag precedence over the variable).

use super::file::{build, FileConfig, Overrides};
use super::Config;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long, env = "KGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Upstream bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "KGATE_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Option<Vec<String>>,
    /// Address the listeners bind to [default: 127.0.0.1].
    #[arg(long, env = "KGATE_BIND_HOST")]
    pub bind_host: Option<String>,
    /// Bootstrap listener port; broker N listens on port-base + 1 + N [default: 19092].
    #[arg(long, env = "KGATE_PORT_BASE")]
    pub port_base: Option<u16>,
    /// Host name handed to clients [default: the bind host].
    #[arg(long, env = "KGATE_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Create listeners for brokers learned from the cluster [default: true].
    #[arg(long, env = "KGATE_DYNAMIC_LISTENERS")]
    pub dynamic_listeners: Option<bool>,
    /// Give dynamic listeners the next free port of FIRST-LAST instead of port-base + 1 + node id.
    #[arg(long, env = "KGATE_PORT_RANGE")]
    pub port_range: Option<String>,
    /// UPSTREAM=BIND[=ADVERTISED], repeatable (env: comma-separated).
    #[arg(
        long = "static-listener",
        env = "KGATE_STATIC_LISTENERS",
        value_delimiter = ','
    )]
    pub static_listeners: Option<Vec<String>>,
    /// BROKER=CONNECT dial-address mapping, repeatable (env: comma-separated).
    #[arg(long, env = "KGATE_DIAL", value_delimiter = ',')]
    pub dial: Option<Vec<String>>,
    /// Largest frame accepted from either side, in bytes [default: 104857600].
    #[arg(long, env = "KGATE_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Requests in flight per connection before reading pauses [default: 1000].
    #[arg(long, env = "KGATE_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Upstream TCP connect timeout in milliseconds [default: 10000].
    #[arg(long, env = "KGATE_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    /// `human` or `json` [default: human].
    #[arg(long, env = "KGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `kgate=debug` (RUST_LOG wins when set).
    #[arg(long, env = "KGATE_LOG_LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// TOML configuration file to validate.
    #[arg(long)]
    pub config: PathBuf,
}

impl RunArgs {
    /// Flags and env over the file (if any), validated.
    pub fn resolve(self) -> Result<Config, String> {
        let (file, origin) = match &self.config {
            Some(p) => (FileConfig::load(p)?, p.display().to_string()),
            None => (FileConfig::default(), "command line".to_string()),
        };
        let o = Overrides {
            bootstrap: self.bootstrap,
            bind_host: self.bind_host,
            port_base: self.port_base,
            advertised_host: self.advertised_host,
            dynamic_listeners: self.dynamic_listeners,
            port_range: self.port_range,
            static_listeners: self.static_listeners,
            dial: self.dial,
            max_frame_bytes: self.max_frame_bytes,
            max_in_flight: self.max_in_flight,
            connect_timeout_ms: self.connect_timeout_ms,
            log_format: self.log_format,
            log_level: self.log_level,
        };
        build(file, o, &origin)
    }
}

impl CheckArgs {
    pub fn check(&self) -> Result<Config, String> {
        let file = FileConfig::load(&self.config)?;
        build(
            file,
            Overrides::default(),
            &self.config.display().to_string(),
        )
    }
}
