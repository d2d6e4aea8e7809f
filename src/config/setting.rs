//! How a setting is written once: the `settings!` macro turns one entry per setting (its
//! doc comment, field, type, environment name, default and parser) into the [`Config`]
//! field, its part of the loader, and a row of [`SETTINGS`], which the README's table is
//! tested against.
//!
//! [`Config`]: super::Config
//! [`SETTINGS`]: super::SETTINGS

/// One setting as documented: the environment name, the default, what it means.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Environment variable; the TOML file key is the same in lowercase.
    pub env: &'static str,
    /// The default value, or `None` when unset by default.
    pub default: Option<&'static str>,
    /// The field's doc comment, one entry per line.
    pub doc: &'static [&'static str],
}

impl Setting {
    /// The key of this setting in the TOML file.
    pub fn file_key(&self) -> String {
        self.env.to_ascii_lowercase()
    }

    /// The doc comment as one line.
    pub fn meaning(&self) -> String {
        let lines: Vec<&str> = self.doc.iter().map(|l| l.trim()).collect();
        lines.join(" ")
    }

    /// This setting's row of the README's configuration table.
    pub fn markdown_row(&self) -> String {
        let default = self
            .default
            .map_or("unset".to_string(), |d| format!("`{d}`"));
        format!("| `{}` | {default} | {} |", self.env, self.meaning())
    }
}

/// A setting that could not be used. The message names the setting, never its secret value.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or file key) at fault.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Builds a [`ConfigError`].
pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

/// Where settings come from: the environment first (a lookup function, so tests pass a
/// map), then the TOML file's table.
pub(crate) struct Sources<'a> {
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) file: toml::Table,
}

impl Sources<'_> {
    /// The raw text of a setting: the environment's, else the file's (numbers as written).
    pub(crate) fn raw(&self, setting: &'static str) -> Result<Option<String>, ConfigError> {
        if let Some(v) = (self.env)(setting) {
            return Ok(Some(v));
        }
        match self.file.get(&setting.to_ascii_lowercase()) {
            None if setting == "TEAMS_WEBHOOKS" => webhook_tables(self.file.get("webhook")),
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(toml::Value::Integer(n)) => Ok(Some(n.to_string())),
            Some(toml::Value::Boolean(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(invalid(
                setting,
                "expected a string or a number in the file",
            )),
        }
    }

    /// A setting parsed from its source, else from its default (`None`: unset).
    pub(crate) fn get<T>(
        &self,
        setting: &'static str,
        default: Option<&'static str>,
        parse: impl Fn(Option<&str>) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let raw = self.raw(setting)?;
        parse(raw.as_deref().or(default)).map_err(|reason| invalid(setting, reason))
    }
}

/// The file's `[[webhook]]` tables (`name`, `secrets`) in the environment's list form,
/// `name=token,name=token`, so both forms go through one parser.
fn webhook_tables(tables: Option<&toml::Value>) -> Result<Option<String>, ConfigError> {
    let bad = |why: &str| invalid("[[webhook]] (config file)", why.to_string());
    let Some(tables) = tables else {
        return Ok(None);
    };
    let tables = tables.as_array().ok_or_else(|| bad("expected tables"))?;
    let mut names = Vec::new();
    let mut pairs = Vec::new();
    for table in tables {
        let table = table.as_table().ok_or_else(|| bad("expected tables"))?;
        if table.keys().any(|k| k != "name" && k != "secrets") {
            return Err(bad("a table holds only name and secrets"));
        }
        let name = table.get("name").and_then(|n| n.as_str());
        let name = name.ok_or_else(|| bad("every table needs a name"))?;
        if names.contains(&name) {
            return Err(bad(
                "a webhook is listed twice; give one table with several secrets",
            ));
        }
        names.push(name);
        let secrets = table.get("secrets").and_then(|s| s.as_array());
        let secrets = secrets.filter(|s| !s.is_empty());
        let secrets = secrets.ok_or_else(|| bad("every webhook needs at least one secret"))?;
        for secret in secrets {
            // Base64 has no comma: one here would split the list form below.
            let secret = secret.as_str().filter(|s| !s.contains(','));
            let secret = secret.ok_or_else(|| bad("a secret is not a base64 string"))?;
            pairs.push(format!("{name}={secret}"));
        }
    }
    Ok(Some(pairs.join(",")))
}

/// Declares every setting once; see the module comment.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $ty:ty = $env:literal, $default:expr, $parse:expr;
    )+) => {
        /// Every setting of teams-bridge, validated once at start-up. Tests build it with
        /// [`Config::from_map`].
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )+
        }

        /// Every setting, in the order of the README's configuration table.
        pub const SETTINGS: &[$crate::config::Setting] = &[
            $( $crate::config::Setting { env: $env, default: $default, doc: &[$($doc),+] }, )+
        ];

        impl Config {
            fn read(src: &$crate::config::setting::Sources<'_>) -> Result<Self, ConfigError> {
                Ok(Self { $( $field: src.get($env, $default, $parse)?, )+ })
            }
        }
    };
}
pub(crate) use settings;
