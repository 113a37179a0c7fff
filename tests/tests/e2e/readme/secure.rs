//! The `secure` stack: what the README's "Secure it" block sets up, made real in a temporary directory.
//! `scripts/dev-certs.sh` writes the certificates, tokens and principals file there; sagad gets the
//! block's own `SAGAD_*` assignments with `certs/` pointing at that directory; the README's grpcurl
//! words are mapped the same way (`certs/ca.pem`, `$(cat certs/client.token)`).
//!
//! The test itself needs a client too (to find a running saga to abort, to wait for one to end): it
//! appends a principal of its own to the principals file, an operator known by a client certificate it
//! issues with the dev CA (`CN=readme-harness`), so that no README command can borrow its rights: the
//! README's commands present `client.pem`, whose subject no principal names.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_tests::repo_root;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// How the README names the directory `scripts/dev-certs.sh` writes to.
const README_DIR: &str = "certs/";

/// The command line the block must run first, so that `certs/` means what this stack made.
const DEV_CERTS: &str = "scripts/dev-certs.sh certs";

/// The certificates, tokens and principals of one secure stack.
pub struct Certs {
    /// Removed on drop.
    _dir: TempDir,
    /// What the README calls `certs/`.
    path: PathBuf,
    /// Each token file's token and the principal it authenticates.
    principals: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct PrincipalsFile {
    principal: Vec<Principal>,
}

#[derive(Deserialize)]
struct Principal {
    name: String,
    token_sha256: Option<String>,
}

impl Certs {
    /// Runs `scripts/dev-certs.sh` into a temporary directory and adds the test's own principal.
    ///
    /// # Panics
    /// When the script or openssl fails, or the block does not run the script first.
    pub fn make(block_lines: &[String]) -> Self {
        assert!(
            block_lines.iter().any(|l| l.trim() == DEV_CERTS),
            "the secure block must run `{DEV_CERTS}`: its paths are mapped onto what that makes"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("certs");
        run(
            Command::new(repo_root().join("scripts/dev-certs.sh")).arg(&path),
            "scripts/dev-certs.sh",
        );
        let principals_file = path.join("principals.toml");
        let text = std::fs::read_to_string(&principals_file).expect("principals.toml");
        let file: PrincipalsFile = toml::from_str(&text).expect("principals.toml parses");
        let mut principals = Vec::new();
        for entry in std::fs::read_dir(&path).expect("certs dir") {
            let file_path = entry.expect("entry").path();
            if file_path.extension().is_some_and(|e| e == "token") {
                let token = token(&file_path);
                let hash = hex::encode(Sha256::digest(token.as_bytes()));
                if let Some(p) = file
                    .principal
                    .iter()
                    .find(|p| p.token_sha256.as_deref() == Some(hash.as_str()))
                {
                    principals.push((token, p.name.clone()));
                }
            }
        }
        issue_harness_certificate(&path);
        let harness = "\n[[principal]]\nname = \"readme-harness\"\n\
                       cert_subject = \"CN=readme-harness, O=Acme\"\nroles = [\"operator\"]\n";
        std::fs::write(&principals_file, text + harness).expect("add the harness principal");
        Self {
            _dir: dir,
            path,
            principals,
        }
    }

    /// sagad's environment: the block's `SAGAD_*=certs/...` assignments, pointed at this directory.
    pub fn sagad_env(&self, block_lines: &[String]) -> Vec<(String, String)> {
        let env: Vec<(String, String)> = block_lines
            .iter()
            .flat_map(|line| line.split_whitespace())
            .filter_map(|word| word.split_once('='))
            .filter(|(name, _)| name.starts_with("SAGAD_"))
            .map(|(name, value)| (name.to_owned(), self.map(value)))
            .collect();
        assert!(
            !env.is_empty(),
            "the secure block sets no SAGAD_* variables for sagad"
        );
        env
    }

    /// A README word with `$(cat certs/NAME)` replaced by that file's content and a `certs/` path by
    /// this directory's.
    pub fn map(&self, word: &str) -> String {
        let mut word = word.to_owned();
        while let Some(start) = word.find("$(cat ") {
            let end = word[start..]
                .find(')')
                .map(|e| start + e)
                .unwrap_or_else(|| panic!("unclosed $(cat ...) in {word}"));
            let file = &word[start + "$(cat ".len()..end];
            let content = token(&self.file(file));
            word.replace_range(start..=end, &content);
        }
        match word.strip_prefix(README_DIR) {
            Some(name) => self.path.join(name).display().to_string(),
            None => word,
        }
    }

    /// The principal a bearer token authenticates, if any.
    pub fn principal(&self, token: &str) -> Option<&str> {
        self.principals
            .iter()
            .find(|(t, _)| t == token)
            .map(|(_, name)| name.as_str())
    }

    /// TLS for the test's own client: the dev CA, and its operator certificate.
    pub fn harness_tls(&self) -> ClientTlsConfig {
        let read = |name: &str| std::fs::read(self.path.join(name)).expect("certificate file");
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca.pem")))
            .identity(Identity::from_pem(
                read("readme-harness.pem"),
                read("readme-harness.key"),
            ))
    }

    fn file(&self, readme_path: &str) -> PathBuf {
        let name = readme_path
            .strip_prefix(README_DIR)
            .unwrap_or_else(|| panic!("{readme_path} is not under {README_DIR}"));
        self.path.join(name)
    }
}

/// A token file's token, as `$(cat FILE)` gives it (trailing newlines dropped).
fn token(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim_end_matches('\n')
        .to_owned()
}

/// A client certificate `CN=readme-harness, O=Acme` signed by the dev CA, as dev-certs.sh issues its own.
fn issue_harness_certificate(dir: &Path) {
    std::fs::write(
        dir.join("readme-harness.ext"),
        "extendedKeyUsage=clientAuth\n",
    )
    .expect("ext");
    run(
        Command::new("openssl")
            .current_dir(dir)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-subj", "/CN=readme-harness/O=Acme"])
            .args([
                "-keyout",
                "readme-harness.key",
                "-out",
                "readme-harness.csr",
            ]),
        "openssl req",
    );
    run(
        Command::new("openssl")
            .current_dir(dir)
            .args(["x509", "-req", "-in", "readme-harness.csr", "-CA", "ca.pem"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-days", "1"])
            .args([
                "-extfile",
                "readme-harness.ext",
                "-out",
                "readme-harness.pem",
            ]),
        "openssl x509",
    );
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
