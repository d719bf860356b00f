//! Placeholder with the mirror's signatures, replaced by the real one.
#![allow(dead_code, unused_variables)]
#[derive(Clone)]
pub enum GitAuth {
    None,
    Token(crate::model::Secret<String>),
    SshKey {
        path: std::path::PathBuf,
        passphrase: Option<crate::model::Secret<String>>,
    },
}
#[derive(Clone)]
pub struct RemoteSpec {
    pub url: String,
    pub branch: String,
    pub auth: GitAuth,
}
pub struct Mirror;
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct Error;
impl Mirror {
    pub fn open_or_clone(spec: &RemoteSpec, dir: &std::path::Path) -> Result<Mirror, Error> {
        todo!()
    }
    pub fn fetch(&self, spec: &RemoteSpec) -> Result<git2::Oid, Error> {
        todo!()
    }
    pub fn git_dir(&self) -> &std::path::Path {
        todo!()
    }
    pub fn is_descendant(&self, commit: git2::Oid, ancestor: git2::Oid) -> Result<bool, Error> {
        todo!()
    }
}
