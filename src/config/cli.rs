//! Command-line flags; each also reads a `KGATE_*` environment variable
//! (clap gives the flag precedence over the variable).

use super::file::{build, FileConfig, Overrides};
use super::sasl::FileSasl;
use super::tls::{FileDownstreamTls, FileUpstreamTls};
use super::Config;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args, Default, Clone)]
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
    /// Process-wide bytes for assembling frames kgate must read whole; beyond it, reads wait [default: 33554432].
    #[arg(long, env = "KGATE_BUFFER_BUDGET_BYTES")]
    pub buffer_budget_bytes: Option<usize>,
    /// Most listeners created for brokers learned from the cluster [default: 256].
    #[arg(long, env = "KGATE_MAX_DYNAMIC_LISTENERS")]
    pub max_dynamic_listeners: Option<usize>,
    /// Host patterns learned brokers may have: exact, `*.domain`, CIDR or `*` (comma-separated) [default: derived from the bootstrap servers].
    #[arg(long, env = "KGATE_UPSTREAM_HOSTS", value_delimiter = ',')]
    pub upstream_hosts: Option<Vec<String>>,
    /// Permit link-local broker addresses (169.254.0.0/16, fe80::/10), where cloud metadata services live.
    #[arg(long, env = "KGATE_ALLOW_LINK_LOCAL")]
    pub allow_link_local: Option<bool>,
    /// Move cut-through bytes socket to socket with splice(2) when both sides are plain TCP [default: true].
    #[arg(long, env = "KGATE_SPLICE")]
    pub splice: Option<bool>,
    /// Runtime worker threads; more help with many TLS connections [default: 1].
    #[arg(long, env = "KGATE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Upstream TCP connect timeout in milliseconds [default: 10000].
    #[arg(long, env = "KGATE_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    /// PROXY protocol on the bootstrap and dynamic listeners: off, optional or required [default: off].
    #[arg(long, env = "KGATE_PROXY_PROTOCOL")]
    pub proxy_protocol: Option<String>,
    /// `human` or `json` [default: human].
    #[arg(long, env = "KGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `kgate=debug` (RUST_LOG wins when set).
    #[arg(long, env = "KGATE_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Speak TLS to the brokers.
    #[arg(long, env = "KGATE_UPSTREAM_TLS")]
    pub upstream_tls: Option<bool>,
    /// CA bundle for the brokers' certificates [default: system roots].
    #[arg(long, env = "KGATE_UPSTREAM_CA_FILE")]
    pub upstream_ca_file: Option<PathBuf>,
    /// Client certificate chain for mTLS to the brokers.
    #[arg(long, env = "KGATE_UPSTREAM_CERT_FILE")]
    pub upstream_cert_file: Option<PathBuf>,
    /// Client key (PKCS#8, PKCS#1, SEC1 or encrypted PKCS#8).
    #[arg(long, env = "KGATE_UPSTREAM_KEY_FILE")]
    pub upstream_key_file: Option<PathBuf>,
    /// File holding the client key's passphrase.
    #[arg(long, env = "KGATE_UPSTREAM_KEY_PASSPHRASE_FILE")]
    pub upstream_key_passphrase_file: Option<PathBuf>,
    /// Name of the environment variable holding the client key's passphrase.
    #[arg(long, env = "KGATE_UPSTREAM_KEY_PASSPHRASE_ENV")]
    pub upstream_key_passphrase_env: Option<String>,
    /// Name for SNI and certificate checks instead of the broker's host name.
    #[arg(long, env = "KGATE_UPSTREAM_SERVER_NAME")]
    pub upstream_server_name: Option<String>,
    /// Accept any broker certificate (insecure; logs a warning).
    #[arg(long, env = "KGATE_UPSTREAM_INSECURE_SKIP_VERIFY")]
    pub upstream_insecure_skip_verify: Option<bool>,

    /// Terminate TLS from clients.
    #[arg(long, env = "KGATE_DOWNSTREAM_TLS")]
    pub downstream_tls: Option<bool>,
    /// Server certificate chain shown to clients.
    #[arg(long, env = "KGATE_DOWNSTREAM_CERT_FILE")]
    pub downstream_cert_file: Option<PathBuf>,
    /// Server key.
    #[arg(long, env = "KGATE_DOWNSTREAM_KEY_FILE")]
    pub downstream_key_file: Option<PathBuf>,
    /// File holding the server key's passphrase.
    #[arg(long, env = "KGATE_DOWNSTREAM_KEY_PASSPHRASE_FILE")]
    pub downstream_key_passphrase_file: Option<PathBuf>,
    /// Name of the environment variable holding the server key's passphrase.
    #[arg(long, env = "KGATE_DOWNSTREAM_KEY_PASSPHRASE_ENV")]
    pub downstream_key_passphrase_env: Option<String>,
    /// Require client certificates signed by this CA bundle.
    #[arg(long, env = "KGATE_DOWNSTREAM_CLIENT_CA_FILE")]
    pub downstream_client_ca_file: Option<PathBuf>,
    /// Allowed client CN/SAN names or `*` patterns (comma-separated).
    #[arg(long, env = "KGATE_DOWNSTREAM_ALLOWED_SUBJECTS", value_delimiter = ',')]
    pub downstream_allowed_subjects: Option<Vec<String>>,

    /// SASL toward the brokers: AWS_MSK_IAM, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN.
    #[arg(long, env = "KGATE_UPSTREAM_SASL_MECHANISM")]
    pub upstream_sasl_mechanism: Option<String>,
    /// SCRAM/PLAIN user name.
    #[arg(long, env = "KGATE_UPSTREAM_SASL_USERNAME")]
    pub upstream_sasl_username: Option<String>,
    /// File holding the SCRAM/PLAIN password.
    #[arg(long, env = "KGATE_UPSTREAM_SASL_PASSWORD_FILE")]
    pub upstream_sasl_password_file: Option<PathBuf>,
    /// Name of the environment variable holding the SCRAM/PLAIN password.
    #[arg(long, env = "KGATE_UPSTREAM_SASL_PASSWORD_ENV")]
    pub upstream_sasl_password_env: Option<String>,
    /// AWS region for IAM signing [default: from the broker host name].
    #[arg(long, env = "KGATE_UPSTREAM_SASL_REGION")]
    pub upstream_sasl_region: Option<String>,
    /// AWS shared-config profile.
    #[arg(long, env = "KGATE_AWS_PROFILE")]
    pub aws_profile: Option<String>,
    /// Role to assume for MSK IAM.
    #[arg(long, env = "KGATE_AWS_ROLE_ARN")]
    pub aws_role_arn: Option<String>,
    /// External id for the assumed role.
    #[arg(long, env = "KGATE_AWS_EXTERNAL_ID")]
    pub aws_external_id: Option<String>,
    /// Stable role session name [default: kgate].
    #[arg(long, env = "KGATE_AWS_SESSION_NAME")]
    pub aws_session_name: Option<String>,
    /// STS region for assume-role.
    #[arg(long, env = "KGATE_AWS_STS_REGION")]
    pub aws_sts_region: Option<String>,
    /// STS endpoint URL for assume-role.
    #[arg(long, env = "KGATE_AWS_STS_ENDPOINT")]
    pub aws_sts_endpoint: Option<String>,

    /// Admin HTTP listener for /metrics, /healthz, /readyz, or `off` [default: 127.0.0.1:9644].
    #[arg(long, env = "KGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Admin connections served at once; more are closed at once [default: 64].
    #[arg(long, env = "KGATE_ADMIN_MAX_CONNECTIONS")]
    pub admin_max_connections: Option<usize>,
    /// An admin client must send its request headers within this many ms [default: 5000].
    #[arg(long, env = "KGATE_ADMIN_HEADER_TIMEOUT_MS")]
    pub admin_header_timeout_ms: Option<u64>,
    /// An admin request must be answered within this many ms [default: 10000].
    #[arg(long, env = "KGATE_ADMIN_REQUEST_TIMEOUT_MS")]
    pub admin_request_timeout_ms: Option<u64>,
    /// /readyz needs the upstream reached within this many ms [default: 30000].
    #[arg(long, env = "KGATE_READY_WINDOW_MS")]
    pub ready_window_ms: Option<u64>,
    /// On SIGTERM, let in-flight requests finish for up to this many ms [default: 20000].
    #[arg(long, env = "KGATE_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Client connections allowed in total [default: 10000].
    #[arg(long, env = "KGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Client connections allowed per listener [default: no limit].
    #[arg(long, env = "KGATE_MAX_CONNECTIONS_PER_LISTENER")]
    pub max_connections_per_listener: Option<usize>,
    /// Close a connection with no traffic for this many ms; 0 disables [default: 600000].
    #[arg(long, env = "KGATE_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Close a connection whose broker does not answer a request within this many ms [default: 330000].
    #[arg(long, env = "KGATE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// A new connection must send a complete request within this many ms; nothing happens upstream before [default: 10000].
    #[arg(long, env = "KGATE_FIRST_REQUEST_TIMEOUT_MS")]
    pub first_request_timeout_ms: Option<u64>,
    /// Client connections allowed from one IP address [default: no limit].
    #[arg(long, env = "KGATE_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
    /// New upstream connections per second per broker; more wait [default: 50].
    #[arg(long, env = "KGATE_UPSTREAM_CONNECT_RATE")]
    pub upstream_connect_rate: Option<u32>,
    /// New upstream connections per broker allowed at once above the rate [default: 10].
    #[arg(long, env = "KGATE_UPSTREAM_CONNECT_BURST")]
    pub upstream_connect_burst: Option<u32>,
    /// Concurrent upstream connections per broker; more are refused [default: 2000].
    #[arg(long, env = "KGATE_UPSTREAM_MAX_CONNECTIONS_PER_BROKER")]
    pub upstream_max_connections_per_broker: Option<usize>,
    /// Longest a connection waits for the per-broker rate before it is refused, in ms [default: 30000].
    #[arg(long, env = "KGATE_UPSTREAM_CONNECT_WAIT_MS")]
    pub upstream_connect_wait_ms: Option<u64>,
    /// Hold new upstream connections (a cut-over's sync window); SIGHUP with it off releases them [default: false].
    #[arg(long, env = "KGATE_UPSTREAM_HOLD")]
    pub upstream_hold: Option<bool>,
}

/// `check-config` takes exactly what `run` takes (file, `KGATE_*`
/// environment, flags), so it validates the configuration `run` would use.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

impl RunArgs {
    /// Flags and env over the file (if any), validated.
    pub fn resolve(self) -> Result<Config, String> {
        let (file, origin) = match &self.config {
            Some(p) => (FileConfig::load(p)?, p.display().to_string()),
            None => (FileConfig::default(), "command line".to_string()),
        };
        let (upstream_tls, downstream_tls, ops, upstream_sasl) = (
            self.upstream_tls_overrides(),
            self.downstream_tls_overrides(),
            self.ops_overrides(),
            self.upstream_sasl_overrides(),
        );
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
            buffer_budget_bytes: self.buffer_budget_bytes,
            max_dynamic_listeners: self.max_dynamic_listeners,
            upstream_hosts: self.upstream_hosts,
            allow_link_local: self.allow_link_local,
            splice: self.splice,
            worker_threads: self.worker_threads,
            connect_timeout_ms: self.connect_timeout_ms,
            log_format: self.log_format,
            proxy_protocol: self.proxy_protocol,
            log_level: self.log_level,
            upstream_tls,
            downstream_tls,
            ops,
            upstream_sasl,
        };
        build(file, o, &origin)
    }

    fn upstream_tls_overrides(&self) -> FileUpstreamTls {
        FileUpstreamTls {
            enabled: self.upstream_tls,
            ca_file: self.upstream_ca_file.clone(),
            cert_file: self.upstream_cert_file.clone(),
            key_file: self.upstream_key_file.clone(),
            key_passphrase_file: self.upstream_key_passphrase_file.clone(),
            key_passphrase_env: self.upstream_key_passphrase_env.clone(),
            server_name: self.upstream_server_name.clone(),
            insecure_skip_verify: self.upstream_insecure_skip_verify,
        }
    }
    fn downstream_tls_overrides(&self) -> FileDownstreamTls {
        FileDownstreamTls {
            enabled: self.downstream_tls,
            cert_file: self.downstream_cert_file.clone(),
            key_file: self.downstream_key_file.clone(),
            key_passphrase_file: self.downstream_key_passphrase_file.clone(),
            key_passphrase_env: self.downstream_key_passphrase_env.clone(),
            client_ca_file: self.downstream_client_ca_file.clone(),
            allowed_subjects: self.downstream_allowed_subjects.clone(),
            principal: None,
        }
    }
    fn ops_overrides(&self) -> super::ops::OpsOverrides {
        super::ops::OpsOverrides {
            admin_listen: self.admin_listen.clone(),
            admin_max_connections: self.admin_max_connections,
            admin_header_timeout_ms: self.admin_header_timeout_ms,
            admin_request_timeout_ms: self.admin_request_timeout_ms,
            ready_window_ms: self.ready_window_ms,
            drain_timeout_ms: self.drain_timeout_ms,
            max_connections: self.max_connections,
            max_connections_per_listener: self.max_connections_per_listener,
            idle_timeout_ms: self.idle_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            first_request_timeout_ms: self.first_request_timeout_ms,
            max_connections_per_client: self.max_connections_per_client,
            upstream_connect_rate: self.upstream_connect_rate,
            upstream_connect_burst: self.upstream_connect_burst,
            upstream_max_connections_per_broker: self.upstream_max_connections_per_broker,
            upstream_connect_wait_ms: self.upstream_connect_wait_ms,
            upstream_hold: self.upstream_hold,
        }
    }
    fn upstream_sasl_overrides(&self) -> FileSasl {
        FileSasl {
            mechanism: self.upstream_sasl_mechanism.clone(),
            username: self.upstream_sasl_username.clone(),
            password_file: self.upstream_sasl_password_file.clone(),
            password_env: self.upstream_sasl_password_env.clone(),
            region: self.upstream_sasl_region.clone(),
            profile: self.aws_profile.clone(),
            role_arn: self.aws_role_arn.clone(),
            external_id: self.aws_external_id.clone(),
            session_name: self.aws_session_name.clone(),
            sts_region: self.aws_sts_region.clone(),
            sts_endpoint: self.aws_sts_endpoint.clone(),
        }
    }
}

impl CheckArgs {
    /// The merged config, as `run` builds it, with every TLS file read,
    /// parsed and (certificate with key) paired.
    pub fn check(&self) -> Result<Config, String> {
        let origin = self.origin();
        let c = self.run.clone().resolve()?;
        super::check_material(&c).map_err(|e| format!("{origin}: {e}"))?;
        Ok(c)
    }

    /// The file, or "command line" when there is none.
    pub fn origin(&self) -> String {
        match &self.run.config {
            Some(p) => p.display().to_string(),
            None => "command line".into(),
        }
    }
}
