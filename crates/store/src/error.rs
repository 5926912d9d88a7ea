//! Errors of the database half of the crate ([`StoreError`]); blob storage has its own
//! [`BlobError`](crate::blob::BlobError).

/// What went wrong while talking to the database.
///
/// Messages never contain credentials: connection URLs are shown with their password replaced by `***`,
/// and row values that may be secret (credentials, key hashes) are never included.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no supported backend.
    #[error(
        "unsupported database URL `{url}`: use `sqlite://path/to/file.db?mode=rwc` or `postgres://user@host:port/db`"
    )]
    UnsupportedUrl {
        /// The URL, password redacted.
        url: String,
    },

    /// Opening the connection pool failed.
    #[error(
        "cannot connect to the database at `{url}`: {source}. Check that the server is running and the URL is right"
    )]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// Creating the folder that holds the SQLite file failed.
    #[error("cannot create the folder `{path}` for the SQLite database: {source}")]
    CreateDir {
        /// The folder.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Running the schema migrations failed.
    #[error("database migration failed: {0}. The database may have been changed by a newer toolplane or by hand")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// A unique constraint was violated: a row with the same value already exists.
    #[error("{entity} with this {field} already exists{}", value.as_ref().map(|v| format!(" ({field} = '{v}')")).unwrap_or_default())]
    Conflict {
        /// What kind of row, e.g. `"builtin credential"`.
        entity: &'static str,
        /// Which field collided, e.g. `"name"`.
        field: &'static str,
        /// The colliding value when it is safe to show (never for secrets or hashes).
        value: Option<String>,
    },

    /// The row the operation needs does not exist (or belongs to another tenant).
    #[error("{entity} `{id}` not found")]
    NotFound {
        /// What kind of row.
        entity: &'static str,
        /// The id that was looked up.
        id: String,
    },

    /// An argument was rejected before reaching the database.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending argument.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A stored value could not be decoded (e.g. a JSON column holding invalid JSON).
    #[error("corrupt value in {table}.{column}: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Column name.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether this is a [`StoreError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether this is a [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// Turns a unique-constraint violation into [`StoreError::Conflict`] (built by `conflict`), anything else into
/// [`StoreError::Database`].
pub(crate) fn map_unique(err: sqlx::Error, conflict: impl FnOnce() -> StoreError) -> StoreError {
    let unique = err.as_database_error().is_some_and(|db| db.is_unique_violation());
    if unique { conflict() } else { StoreError::Database(err) }
}

/// Replaces the password of `scheme://user:password@host/...` with `***` so the URL can be shown.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..rest_start],
        &userinfo[..colon],
        &url[rest_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/x.db?mode=rwc"), "sqlite://data/x.db?mode=rwc");
        assert_eq!(redact_url("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }
}
