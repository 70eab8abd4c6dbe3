//! The TOML file. Unknown keys are errors; values are checked with the
//! key's name in every message.

use super::sasl::{sasl, FileSasl};
use super::tls::{downstream, upstream, FileDownstreamTls, FileUpstreamTls};
use super::{parse_port_range, Config, DialMapping, HostPort, StaticListener};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub bootstrap: Option<Vec<String>>,
    pub bind_host: Option<String>,
    pub port_base: Option<u16>,
    pub advertised_host: Option<String>,
    pub dynamic_listeners: Option<bool>,
    pub port_range: Option<String>,
    #[serde(default)]
    pub static_listeners: Vec<FileStatic>,
    #[serde(default)]
    pub dial: Vec<FileDial>,
    pub max_frame_bytes: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub buffer_budget_bytes: Option<usize>,
    pub max_dynamic_listeners: Option<usize>,
    pub upstream_hosts: Option<Vec<String>>,
    pub allow_link_local: Option<bool>,
    pub splice: Option<bool>,
    pub worker_threads: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub tls_reload_interval_ms: Option<u64>,
    pub admin_listen: Option<String>,
    pub admin_max_connections: Option<usize>,
    pub admin_header_timeout_ms: Option<u64>,
    pub admin_request_timeout_ms: Option<u64>,
    pub ready_window_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_listener: Option<usize>,
    pub idle_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub first_request_timeout_ms: Option<u64>,
    pub max_connections_per_client: Option<usize>,
    pub upstream_connect_rate: Option<u32>,
    pub upstream_connect_burst: Option<u32>,
    pub upstream_max_connections_per_broker: Option<usize>,
    pub upstream_connect_wait_ms: Option<u64>,
    pub upstream_hold: Option<bool>,
    pub cutover_order: Option<String>,
    pub cutover_consumer_delay_ms: Option<u64>,
    #[serde(default)]
    pub upstream_tls: FileUpstreamTls,
    #[serde(default)]
    pub downstream_tls: FileDownstreamTls,
    #[serde(default)]
    pub upstream_sasl: FileSasl,
    #[serde(default)]
    pub upstream_identity: Vec<super::identity::FileIdentity>,
    pub upstream_identity_unmapped: Option<String>,
    #[serde(default)]
    pub client_auth: super::client_auth::FileClientAuth,
    pub proxy_protocol: Option<String>,
    #[serde(default)]
    pub sni: super::listeners::FileSni,
    pub policy: Option<super::policy::FilePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStatic {
    pub upstream: String,
    /// Serve broker `node_id` of whichever cluster is current (cut-over).
    pub node_id: Option<i32>,
    pub bind: String,
    pub advertised: Option<String>,
    pub tls: Option<bool>,
    pub proxy_protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDial {
    pub broker: String,
    pub connect: String,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let msg = e.message();
            let loc = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            format!("{}{loc}: {msg}", path.display())
        })
    }
}

/// Values gathered from flags and env, each `None` when not given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bootstrap: Option<Vec<String>>,
    pub bind_host: Option<String>,
    pub port_base: Option<u16>,
    pub advertised_host: Option<String>,
    pub dynamic_listeners: Option<bool>,
    pub port_range: Option<String>,
    pub static_listeners: Option<Vec<String>>,
    pub dial: Option<Vec<String>>,
    pub max_frame_bytes: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub buffer_budget_bytes: Option<usize>,
    pub max_dynamic_listeners: Option<usize>,
    pub upstream_hosts: Option<Vec<String>>,
    pub allow_link_local: Option<bool>,
    pub splice: Option<bool>,
    pub worker_threads: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub upstream_tls: FileUpstreamTls,
    pub downstream_tls: FileDownstreamTls,
    pub upstream_sasl: FileSasl,
    pub ops: super::ops::OpsOverrides,
    pub proxy_protocol: Option<String>,
}

fn hp(key: &str, v: &str) -> Result<HostPort, String> {
    HostPort::parse(v).map_err(|e| format!("key `{key}`: {e}"))
}

/// Merges flags/env over the file and validates the result. `origin`
/// names the file for messages.
pub fn build(mut file: FileConfig, mut o: Overrides, origin: &str) -> Result<Config, String> {
    let err = |m: String| format!("{origin}: {m}");
    let bootstrap_raw = o.bootstrap.take().or(file.bootstrap.take()).unwrap_or_default();
    let mut bootstrap = Vec::new();
    for (i, b) in bootstrap_raw.iter().filter(|b| !b.trim().is_empty()).enumerate() {
        bootstrap.push(hp(&format!("bootstrap[{i}]"), b).map_err(err)?);
    }
    if bootstrap.is_empty() {
        return Err(err(
            "key `bootstrap`: missing; expected at least one upstream broker host:port (flag --bootstrap, env KGATE_BOOTSTRAP)".into(),
        ));
    }
    let mut c = Config::with_bootstrap(bootstrap);
    listeners(&mut c, &mut file, &mut o).map_err(err)?;
    dials(&mut c, &mut file, &mut o).map_err(err)?;
    super::limits::limits(&mut c, &mut file, &mut o).map_err(err)?;
    super::limits::engine(&mut c, &mut file, &mut o).map_err(err)?;
    c.upstream_tls = upstream(merge_up(file.upstream_tls, o.upstream_tls)).map_err(err)?;
    c.downstream_tls = downstream(merge_down(file.downstream_tls, o.downstream_tls)).map_err(err)?;
    c.upstream_sasl = sasl(file.upstream_sasl.overlay(o.upstream_sasl)).map_err(err)?;
    c.upstream_identity = super::identity::identities(
        std::mem::take(&mut file.upstream_identity),
        file.upstream_identity_unmapped.take(),
        c.upstream_sasl.as_ref(),
    )
    .map_err(err)?;
    c.client_auth = super::client_auth::client_auth(std::mem::take(&mut file.client_auth)).map_err(err)?;
    let ops = super::ops::OpsOverrides {
        admin_listen: file.admin_listen,
        admin_max_connections: file.admin_max_connections,
        admin_header_timeout_ms: file.admin_header_timeout_ms,
        admin_request_timeout_ms: file.admin_request_timeout_ms,
        ready_window_ms: file.ready_window_ms,
        drain_timeout_ms: file.drain_timeout_ms,
        max_connections: file.max_connections,
        max_connections_per_listener: file.max_connections_per_listener,
        idle_timeout_ms: file.idle_timeout_ms,
        request_timeout_ms: file.request_timeout_ms,
        first_request_timeout_ms: file.first_request_timeout_ms,
        max_connections_per_client: file.max_connections_per_client,
        upstream_connect_rate: file.upstream_connect_rate,
        upstream_connect_burst: file.upstream_connect_burst,
        upstream_max_connections_per_broker: file.upstream_max_connections_per_broker,
        upstream_connect_wait_ms: file.upstream_connect_wait_ms,
        upstream_hold: file.upstream_hold,
    }
    .overlay(o.ops);
    ops.apply(&mut c).map_err(err)?;
    c.cutover_order =
        super::ops::cutover_order(file.cutover_order.take(), file.cutover_consumer_delay_ms).map_err(err)?;
    if let Some(m) = o.proxy_protocol.take().or(file.proxy_protocol.take()) {
        c.proxy_protocol =
            super::ProxyMode::parse(&m).map_err(|e| err(format!("key `proxy_protocol`: {e}")))?;
    }
    c.sni = super::listeners::sni(std::mem::take(&mut file.sni), c.downstream_tls.is_some()).map_err(err)?;
    c.policy = super::policy::policy(file.policy.take()).map_err(err)?;
    if c.downstream_tls.is_none() {
        if let Some(i) = c.static_listeners.iter().position(|s| s.tls == Some(true)) {
            return Err(err(format!(
                "key `static_listeners[{i}].tls`: true needs an enabled [downstream_tls] section with cert_file and key_file"
            )));
        }
    }
    Ok(c)
}

/// Bind host, advertised host, ports, dynamic and static listeners.
fn listeners(c: &mut Config, file: &mut FileConfig, o: &mut Overrides) -> Result<(), String> {
    if let Some(h) = o.bind_host.take().or(file.bind_host.take()) {
        c.bind_host = h;
    }
    c.advertised_host = o
        .advertised_host
        .take()
        .or(file.advertised_host.take())
        .unwrap_or_else(|| c.bind_host.clone());
    if let Some(p) = o.port_base.or(file.port_base) {
        if p == 0 {
            return Err("key `port_base`: 0 is not a port; expected 1-65535".into());
        }
        c.port_base = p;
    }
    if let Some(d) = o.dynamic_listeners.or(file.dynamic_listeners) {
        c.dynamic_listeners = d;
    }
    if let Some(r) = o.port_range.take().or(file.port_range.take()) {
        c.port_range = Some(parse_port_range(&r).map_err(|e| format!("key `port_range`: {e}"))?);
    }
    let statics: Vec<FileStatic> = match o.static_listeners.take() {
        Some(list) => list
            .iter()
            .map(|s| parse_static_flag(s))
            .collect::<Result<_, _>>()?,
        None => std::mem::take(&mut file.static_listeners),
    };
    for (i, s) in statics.iter().enumerate() {
        let k = |f: &str| format!("static_listeners[{i}].{f}");
        let upstream = hp(&k("upstream"), &s.upstream)?;
        let bind = hp(&k("bind"), &s.bind)?;
        let advertised = match &s.advertised {
            Some(a) => hp(&k("advertised"), a)?,
            None => bind.clone(),
        };
        if c.static_listeners.iter().any(|x| x.upstream == upstream) {
            return Err(format!("key `{}`: {upstream} is listed twice", k("upstream")));
        }
        if let Some(id) = s.node_id {
            if id < 0 || c.static_listeners.iter().any(|x| x.node_id == Some(id)) {
                return Err(format!(
                    "key `{}`: {id} is negative or listed twice; expected one static listener per broker node id",
                    k("node_id")
                ));
            }
        }
        c.static_listeners.push(StaticListener {
            upstream,
            node_id: s.node_id,
            bind,
            advertised,
            tls: s.tls,
            proxy_protocol: s
                .proxy_protocol
                .as_deref()
                .map(super::ProxyMode::parse)
                .transpose()
                .map_err(|e| format!("key `{}`: {e}", k("proxy_protocol")))?,
        });
    }
    Ok(())
}

/// Dial-address mappings (PrivateLink).
fn dials(c: &mut Config, file: &mut FileConfig, o: &mut Overrides) -> Result<(), String> {
    let dials: Vec<FileDial> = match o.dial.take() {
        Some(list) => list
            .iter()
            .map(|s| {
                s.split_once('=')
                    .map(|(b, c)| FileDial {
                        broker: b.into(),
                        connect: c.into(),
                    })
                    .ok_or_else(|| format!("--dial `{s}`: expected BROKER_HOST:PORT=CONNECT_HOST:PORT"))
            })
            .collect::<Result<_, _>>()?,
        None => std::mem::take(&mut file.dial),
    };
    for (i, d) in dials.iter().enumerate() {
        c.dial.push(DialMapping {
            broker: hp(&format!("dial[{i}].broker"), &d.broker)?,
            connect: hp(&format!("dial[{i}].connect"), &d.connect)?,
        });
    }
    Ok(())
}

/// `--static-listener UPSTREAM=BIND[=ADVERTISED]`.
fn parse_static_flag(s: &str) -> Result<FileStatic, String> {
    let parts: Vec<&str> = s.split('=').collect();
    match parts.as_slice() {
        [u, b] => Ok(FileStatic {
            upstream: u.to_string(),
            node_id: None,
            bind: b.to_string(),
            advertised: None,
            tls: None,
            proxy_protocol: None,
        }),
        [u, b, a] => Ok(FileStatic {
            upstream: u.to_string(),
            node_id: None,
            bind: b.to_string(),
            advertised: Some(a.to_string()),
            tls: None,
            proxy_protocol: None,
        }),
        _ => Err(format!(
            "--static-listener `{s}`: expected UPSTREAM_HOST:PORT=BIND_HOST:PORT[=ADVERTISED_HOST:PORT]"
        )),
    }
}

macro_rules! overlay {
    ($base:ident, $over:ident, $($f:ident),*) => {
        $( if $over.$f.is_some() { $base.$f = $over.$f; } )*
    };
}

/// Flag/env values win field by field over the file's section.
fn merge_up(mut f: FileUpstreamTls, o: FileUpstreamTls) -> FileUpstreamTls {
    overlay!(
        f,
        o,
        enabled,
        ca_file,
        cert_file,
        key_file,
        key_passphrase_file,
        key_passphrase_env,
        server_name,
        insecure_skip_verify
    );
    f
}

fn merge_down(mut f: FileDownstreamTls, o: FileDownstreamTls) -> FileDownstreamTls {
    overlay!(
        f,
        o,
        enabled,
        cert_file,
        key_file,
        key_passphrase_file,
        key_passphrase_env,
        client_ca_file,
        allowed_subjects,
        principal
    );
    f
}
