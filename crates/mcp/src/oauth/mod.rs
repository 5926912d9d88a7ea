//! OAuth 2.1 for MCP servers, as a library without storage.

mod challenge;

pub use challenge::BearerChallenge;
