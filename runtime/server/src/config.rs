//! Server configuration: the [`ServerConfig`] struct, its TOML file form and byte sizes
//! (`64MiB`, `2GiB`).
//!
//! ```toml
//! listen = "127.0.0.1:7070"     # address to bind; port 0 picks a free one
//! capacity = "2GiB"             # far memory this server offers (integer bytes also accepted)
//! token_file = "cluster.token"  # file holding the cluster token (relative to this file)
//! max_frame_body = "64MiB"      # optional: largest frame body accepted
//! max_connections = 1024        # optional: connections beyond this are refused
//! ```
//! Command-line flags override the file (`farmem-server --config F.toml --capacity 4GiB`).

use std::path::{Path, PathBuf};

use farmem_error::{Error, ErrorKind, Result};
use farmem_net::DEFAULT_MAX_BODY;
use serde::Deserialize;

/// Everything a memory server needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind (`127.0.0.1:0` picks a free port; the handle reports the real one).
    pub listen: String,
    /// Far-memory capacity in bytes (object bytes plus a fixed per-object overhead).
    pub capacity_bytes: u64,
    /// The cluster token clients must present.
    pub token: Vec<u8>,
    /// Largest frame body accepted.
    pub max_frame_body: u32,
    /// Concurrent connections accepted; more are refused with an error reply.
    pub max_connections: usize,
}

impl ServerConfig {
    /// A config listening on `listen` with `capacity_bytes` and `token`, other fields default.
    pub fn new(listen: &str, capacity_bytes: u64, token: impl Into<Vec<u8>>) -> ServerConfig {
        ServerConfig {
            listen: listen.to_string(),
            capacity_bytes,
            token: token.into(),
            max_frame_body: DEFAULT_MAX_BODY,
            max_connections: 1024,
        }
    }

    /// Checks the fields that cannot be right (empty token, zero capacity or frame bound).
    pub fn validate(&self) -> Result<()> {
        if self.token.is_empty() {
            return Err(Error::invalid(
                "the cluster token is empty: give the server a token (--token-file F)",
            ));
        }
        if self.token.len() > farmem_net::handshake::MAX_TOKEN_LEN {
            return Err(Error::invalid(format!(
                "the cluster token is {} bytes, longer than the {} the protocol allows",
                self.token.len(),
                farmem_net::handshake::MAX_TOKEN_LEN
            )));
        }
        if self.capacity_bytes == 0 {
            return Err(Error::invalid(
                "capacity is 0 bytes: give the server some memory (--capacity 64MiB)",
            ));
        }
        if self.max_frame_body < 64 {
            return Err(Error::invalid(format!(
                "max_frame_body of {} bytes is too small to carry any request (minimum 64)",
                self.max_frame_body
            )));
        }
        if self.max_connections == 0 {
            return Err(Error::invalid(
                "max_connections is 0: no client could connect",
            ));
        }
        Ok(())
    }

    /// Parses a TOML config; a relative `token_file` is resolved against `base_dir` (the config
    /// file's directory).
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<ServerConfig> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            Error::new(ErrorKind::Parse, format!("server config is not valid: {e}"))
        })?;
        let mut config = ServerConfig::new(
            file.listen.as_deref().unwrap_or("127.0.0.1:7070"),
            0,
            Vec::new(),
        );
        if let Some(c) = file.capacity {
            config.capacity_bytes = c.0;
        }
        if let Some(m) = file.max_frame_body {
            config.max_frame_body = u32::try_from(m.0).map_err(|_| {
                Error::invalid(format!(
                    "max_frame_body of {} bytes exceeds the protocol's 4 GiB - 1 limit",
                    m.0
                ))
            })?;
        }
        if let Some(n) = file.max_connections {
            config.max_connections = n;
        }
        if let Some(path) = file.token_file {
            config.token = read_token_file(&base_dir.join(path))?;
        }
        Ok(config)
    }

    /// Reads and parses the TOML config file at `path`.
    pub fn from_toml_file(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading server config {}", path.display()), e))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        ServerConfig::from_toml_str(&text, base).map_err(|e| e.with_context(path.display()))
    }
}

/// Reads a cluster token file: its contents with trailing whitespace (the newline) removed.
pub fn read_token_file(path: &Path) -> Result<Vec<u8>> {
    let mut raw = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading token file {}", path.display()), e))?;
    while raw.last().is_some_and(|b| b.is_ascii_whitespace()) {
        raw.pop();
    }
    if raw.is_empty() {
        return Err(Error::invalid(format!(
            "token file {} is empty: write the cluster token into it",
            path.display()
        )));
    }
    Ok(raw)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    capacity: Option<ByteSize>,
    token_file: Option<PathBuf>,
    max_frame_body: Option<ByteSize>,
    max_connections: Option<usize>,
}

/// A byte count written as an integer or a string with a unit (`"64MiB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => parse_size(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a size: plain bytes (`4096`, `4096B`) or a binary unit `KiB`, `MiB`, `GiB`, `TiB`
/// (`64MiB`, `2 GiB`). Units are case-sensitive IEC names, so `MB` vs `MiB` is never guessed.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        Error::new(
            ErrorKind::Parse,
            format!(
                "size {text:?} is not understood: write bytes (4096) or a number with KiB, MiB, \
                 GiB or TiB (64MiB)"
            ),
        )
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| {
        Error::new(
            ErrorKind::Parse,
            format!("size {text:?} does not fit in 64 bits"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512B").unwrap(), 512);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size(" 3 KiB ").unwrap(), 3 << 10);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        for bad in [
            "",
            "MiB",
            "64MB",
            "64 mib",
            "-1",
            "1.5GiB",
            "99999999999TiB",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Parse, "{bad}");
        }
    }

    #[test]
    fn toml_config_with_token_file() {
        let dir = std::env::temp_dir().join(format!("farmem-server-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.token"), "s3cret\n").unwrap();
        let text = r#"
            listen = "127.0.0.1:0"
            capacity = "64MiB"
            token_file = "t.token"
            max_frame_body = 1048576
            max_connections = 8
        "#;
        let c = ServerConfig::from_toml_str(text, &dir).unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.capacity_bytes, 64 << 20);
        assert_eq!(c.token, b"s3cret");
        assert_eq!(c.max_frame_body, 1 << 20);
        assert_eq!(c.max_connections, 8);
        c.validate().unwrap();
        let e = ServerConfig::from_toml_str("capacity = \"lots\"", &dir).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Parse);
        let e = ServerConfig::from_toml_str("colour = 3", &dir).unwrap_err();
        assert!(e.context().contains("colour"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn validate_rejects_empty_token_and_zero_capacity() {
        let c = ServerConfig::new("127.0.0.1:0", 0, "t");
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidArgument);
        let c = ServerConfig::new("127.0.0.1:0", 10, "");
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}
