//! Where tables live: the lakehouse root, the landing prefix, and the fixed table layout
//! (`{root}/{layer}/{table}`, `{root}/{layer}/_quarantine/{table}`, `{root}/_system/runs`).

use std::fmt;
use std::path::Path;

use medallion_config::{Storage, TableRef};
use url::Url;

use crate::error::{Error, Result};

/// The resolved storage locations of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    root: Url,
    landing: Url,
}

impl Locations {
    /// Resolves the configured locations, with `--root` / `--landing` taking precedence.
    pub fn resolve(storage: &Storage, root: Option<&str>, landing: Option<&str>) -> Result<Self> {
        Ok(Self {
            root: parse_location(root.unwrap_or(&storage.root.value), "lakehouse root")?,
            landing: parse_location(landing.unwrap_or(&storage.landing.value), "landing prefix")?,
        })
    }

    /// The lakehouse root (always ends with `/`).
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The landing prefix (always ends with `/`).
    pub fn landing(&self) -> &Url {
        &self.landing
    }

    /// A table's location: `{root}/{layer}/{table}/`.
    pub fn table(&self, table: &TableRef) -> Url {
        self.under_root(&format!("{}/{}/", table.layer, table.name))
    }

    /// A table's quarantine: `{root}/{layer}/_quarantine/{table}/`.
    pub fn quarantine(&self, table: &TableRef) -> Url {
        self.under_root(&format!("{}/_quarantine/{}/", table.layer, table.name))
    }

    /// The run log: `{root}/_system/runs/`.
    pub fn runs(&self) -> Url {
        self.under_root("_system/runs/")
    }

    /// A source folder under the landing prefix.
    pub fn source(&self, folder: &str) -> Url {
        let mut folder = folder.trim_start_matches("./").to_string();
        if !folder.ends_with('/') {
            folder.push('/');
        }
        self.landing
            .join(&folder)
            .expect("a relative folder joins onto a base URL")
    }

    fn under_root(&self, relative: &str) -> Url {
        self.root
            .join(relative)
            .expect("a relative path joins onto a base URL")
    }
}

impl fmt::Display for Locations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "root {} · landing {}",
            redacted(&self.root),
            redacted(&self.landing)
        )
    }
}

/// Parses a location: a URL (`s3://…`, `file://…`) or a local path (made absolute).
/// The result always ends with `/` so that relative joins stay below it.
pub fn parse_location(text: &str, what: &str) -> Result<Url> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Usage(format!("the {what} is empty")));
    }
    let mut url = if text.contains("://") {
        Url::parse(text)
            .map_err(|e| Error::Usage(format!("the {what} `{text}` is not a valid URL: {e}")))?
    } else {
        let absolute = std::path::absolute(Path::new(text))
            .map_err(|e| Error::Usage(format!("the {what} `{text}` is not a usable path: {e}")))?;
        Url::from_directory_path(&absolute)
            .map_err(|()| Error::Usage(format!("the {what} `{text}` is not a usable path")))?
    };
    match url.scheme() {
        "file" | "s3" | "s3a" => {}
        "gs" if cfg!(feature = "gcs") => {}
        "az" | "abfs" | "abfss" if cfg!(feature = "azure") => {}
        scheme @ ("gs" | "az" | "abfs" | "abfss") => {
            let feature = if scheme == "gs" { "gcs" } else { "azure" };
            return Err(Error::Usage(format!(
                "the {what} `{}` needs the `{feature}` feature, which this build of medallion \
                 was made without (cargo build --features {feature})",
                redacted(&url)
            )));
        }
        other => {
            return Err(Error::Usage(format!(
                "the {what} `{}` uses the unsupported scheme `{other}`: use a local path, file://, s3://, gs:// or az://",
                redacted(&url)
            )));
        }
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A URL without user information (which could hold a secret), for logs and messages.
pub fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("***");
        let _ = url.set_password(None);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use medallion_config::{Layer, Name};

    #[test]
    fn layout_follows_the_spec() {
        let storage = Storage::default();
        let l =
            Locations::resolve(&storage, Some("s3://lake/prod"), Some("s3://land/raw")).unwrap();
        let t = TableRef::new(Layer::Gold, Name::new("campaign_daily").unwrap());
        assert_eq!(l.table(&t).as_str(), "s3://lake/prod/gold/campaign_daily/");
        assert_eq!(
            l.quarantine(&t).as_str(),
            "s3://lake/prod/gold/_quarantine/campaign_daily/"
        );
        assert_eq!(l.runs().as_str(), "s3://lake/prod/_system/runs/");
        assert_eq!(l.source("events").as_str(), "s3://land/raw/events/");
    }

    #[test]
    fn local_paths_become_absolute_file_urls() {
        let url = parse_location("./lakehouse", "root").unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/lakehouse/"));
        assert!(parse_location("ftp://x/y", "root").is_err());
    }

    #[test]
    fn user_info_is_redacted() {
        let url = Url::parse("s3://AKIA:secret@bucket/x/").unwrap();
        assert!(!redacted(&url).contains("secret"));
    }
}
