//! Documents a teller shows in a call (a contract, a product brief): the upload is checked — size, type by its
//! first bytes, page count — and rendered page by page to PNG on the appliance, so both sides see the same pixels
//! and no browser ever parses the bank's PDF. PDFs go through Debian's `pdftoppm`; PowerPoint files through
//! LibreOffice headless to PDF first. Each converter runs as its own process in a private (0700) scratch directory,
//! under a wall-clock limit (killed if it overruns) and, through util-linux `prlimit`, limits on address space and
//! CPU time, so a hostile file (a decompression bomb) fails alone instead of starving the gateway.
//!
//! [`sniff`] and [`parse_pages`] are pure; [`Renderer::render`] does the IO.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Largest upload, in bytes.
pub const MAX_BYTES: usize = 20 << 20;
/// Most pages (or slides) in one document.
pub const MAX_PAGES: u32 = 100;
/// Rendered page width, in pixels: sharp on a teller's monitor and a phone alike.
pub const PAGE_WIDTH: u32 = 1280;

/// What kind of document the upload is, from its first bytes (never from its name or declared type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PDF.
    Pdf,
    /// PowerPoint: `.pptx` (Office Open XML) or the older `.ppt`.
    Presentation,
}

impl Kind {
    /// `pdf` or `presentation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pdf => "pdf",
            Kind::Presentation => "presentation",
        }
    }
}

/// Why a document was not accepted. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Nothing was uploaded.
    #[error("the upload is empty: choose a PDF or PowerPoint file")]
    Empty,
    /// Over [`MAX_BYTES`].
    #[error("the file is {bytes} bytes; the most a document may be is {max} bytes (20 MiB): compress it or split it")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Neither a PDF nor a PowerPoint file.
    #[error("this is not a PDF or PowerPoint file (its first bytes say {0}): export it as PDF and upload that")]
    Unsupported(&'static str),
    /// Over [`MAX_PAGES`].
    #[error("the document has {pages} pages; at most {max} can be shown in a call: split it")]
    TooManyPages {
        /// Its pages.
        pages: u32,
        /// The limit.
        max: u32,
    },
    /// The converter could not read it (damaged, password-protected).
    #[error("the document could not be read ({0}): if it has a password, remove it; otherwise export it again as PDF")]
    Unreadable(String),
    /// A converter is not installed on this node.
    #[error("{tool} is not installed on this node: install the Debian package {package} (tests/setup.sh does)")]
    Missing {
        /// The program.
        tool: &'static str,
        /// Its Debian package.
        package: &'static str,
    },
    /// A converter overran its time limit and was stopped.
    #[error("rendering the document took longer than {0:?} and was stopped: export it as a simpler PDF")]
    Timeout(Duration),
    /// The scratch directory could not be used.
    #[error("the scratch directory for rendering failed: {0} (check the temporary directory's space)")]
    Io(#[from] std::io::Error),
}

/// The document's kind from its first bytes.
pub fn sniff(bytes: &[u8]) -> Result<Kind, DocumentError> {
    if bytes.is_empty() {
        return Err(DocumentError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(DocumentError::TooLarge { bytes: bytes.len(), max: MAX_BYTES });
    }
    // A PDF header may follow up to 1 KiB of junk, as readers accept; nothing else is looked for there.
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Ok(Kind::Pdf);
    }
    const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    if bytes.starts_with(OLE) {
        return Ok(Kind::Presentation);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        // A ZIP: a presentation only if it has the part every .pptx has.
        let named = |n: &[u8]| bytes.windows(n.len()).any(|w| w == n);
        return if named(b"ppt/presentation.xml") {
            Ok(Kind::Presentation)
        } else {
            Err(DocumentError::Unsupported("a ZIP archive that is not a presentation"))
        };
    }
    Err(DocumentError::Unsupported(match bytes {
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [0xFF, 0xD8, 0xFF, ..] => "a JPEG image",
        b if b.iter().take(512).all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace()) => "plain text",
        _ => "an unknown format",
    }))
}

/// The page count in `pdfinfo`'s output.
pub fn parse_pages(pdfinfo: &str) -> Option<u32> {
    pdfinfo.lines().find_map(|l| l.strip_prefix("Pages:")).and_then(|v| v.trim().parse().ok())
}

/// A rendered document.
#[derive(Debug)]
pub struct Rendered {
    /// Its kind.
    pub kind: Kind,
    /// SM3 of the uploaded bytes, hex: the document as the teller uploaded it, named in the call's record.
    pub sm3: String,
    /// One PNG per page, in order.
    pub pages: Vec<Vec<u8>>,
}

/// Renders documents with the converters on this node.
#[derive(Debug, Clone)]
pub struct Renderer {
    /// Wall-clock limit for each converter run.
    pub timeout: Duration,
    /// Address space for pdfinfo and pdftoppm, bytes.
    pub poppler_memory: u64,
    /// Address space for LibreOffice, bytes (it maps far more than it uses).
    pub office_memory: u64,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer { timeout: Duration::from_secs(60), poppler_memory: 1 << 30, office_memory: 2 << 30 }
    }
}

impl Renderer {
    /// Check `bytes` and render every page.
    pub async fn render(&self, bytes: &[u8]) -> Result<Rendered, DocumentError> {
        let kind = sniff(bytes)?;
        let sm3 = vbank_crypto::to_hex(&vbank_crypto::hash::sm3(bytes));
        // tempfile makes the directory 0700: the document and its pages are readable by this service only.
        let dir = tempfile::Builder::new().prefix("vbank-document-").tempdir()?;
        let input = dir.path().join(if kind == Kind::Pdf { "input.pdf" } else { "input.pptx" });
        tokio::fs::write(&input, bytes).await?;
        let pdf = match kind {
            Kind::Pdf => input,
            Kind::Presentation => self.to_pdf(dir.path(), &input).await?,
        };
        let memory = self.poppler_memory;
        let info = self.run("pdfinfo", "poppler-utils", memory, Command::new("pdfinfo").arg(&pdf)).await?;
        let pages = parse_pages(&info).ok_or_else(|| DocumentError::Unreadable("no page count".into()))?;
        if pages == 0 {
            return Err(DocumentError::Unreadable("it has no pages".into()));
        }
        if pages > MAX_PAGES {
            return Err(DocumentError::TooManyPages { pages, max: MAX_PAGES });
        }
        let prefix = dir.path().join("page");
        let mut cmd = Command::new("pdftoppm");
        cmd.args(["-png", "-r", "150", "-scale-to-x", &PAGE_WIDTH.to_string(), "-scale-to-y", "-1"])
            .arg(&pdf)
            .arg(&prefix);
        self.run("pdftoppm", "poppler-utils", memory, &mut cmd).await?;
        let mut out = Vec::with_capacity(pages as usize);
        for n in 1..=pages {
            // pdftoppm pads the page number to the width of the last one: page-1.png, or page-01.png of 10+.
            let width = pages.to_string().len();
            let file = dir.path().join(format!("page-{n:0width$}.png"));
            out.push(tokio::fs::read(&file).await.map_err(|e| DocumentError::Unreadable(format!("page {n}: {e}")))?);
        }
        Ok(Rendered { kind, sm3, pages: out })
    }

    /// A presentation to PDF with LibreOffice, its profile in the scratch directory (never the service's home).
    async fn to_pdf(&self, dir: &Path, input: &Path) -> Result<PathBuf, DocumentError> {
        let profile = format!("-env:UserInstallation=file://{}", dir.join("profile").display());
        let mut cmd = Command::new("soffice");
        cmd.args([profile.as_str(), "--headless", "--norestore", "--convert-to", "pdf", "--outdir"])
            .arg(dir.join("pdf"))
            .arg(input)
            .env("HOME", dir);
        self.run("soffice", "libreoffice-impress-nogui", self.office_memory, &mut cmd).await?;
        let pdf = dir.join("pdf").join("input.pdf");
        if !pdf.exists() {
            return Err(DocumentError::Unreadable("LibreOffice made no PDF of it".into()));
        }
        Ok(pdf)
    }

    /// Run converter `tool` under the limits; its standard output.
    async fn run(
        &self,
        tool: &'static str,
        package: &'static str,
        memory: u64,
        cmd: &mut Command,
    ) -> Result<String, DocumentError> {
        // The same command under prlimit: address space and CPU seconds capped.
        let plain = cmd.as_std();
        let mut limited = Command::new("prlimit");
        limited
            .arg(format!("--as={memory}"))
            .arg(format!("--cpu={}", self.timeout.as_secs().max(1)))
            .arg("--")
            .arg(plain.get_program())
            .args(plain.get_args());
        for (k, v) in plain.get_envs() {
            if let Some(v) = v {
                limited.env(k, v);
            }
        }
        limited.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let child = limited.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DocumentError::Missing { tool: "prlimit", package: "util-linux" },
            _ => DocumentError::Io(e),
        })?;
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| DocumentError::Timeout(self.timeout))??;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("failed to execute") && err.contains("No such file or directory") {
                return Err(DocumentError::Missing { tool, package });
            }
            let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(DocumentError::Unreadable(format!("{tool}: {}", first.chars().take(200).collect::<String>())));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_comes_from_the_first_bytes() {
        assert_eq!(sniff(b"%PDF-1.7\n...").unwrap(), Kind::Pdf);
        assert_eq!(sniff(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0]).unwrap(), Kind::Presentation);
        assert_eq!(sniff(b"PK\x03\x04....ppt/presentation.xml....").unwrap(), Kind::Presentation);
        let msg = |b: &[u8]| sniff(b).unwrap_err().to_string();
        assert!(msg(b"PK\x03\x04....word/document.xml").contains("not a presentation"));
        assert!(msg(b"\x89PNG\r\n\x1a\n").contains("a PNG image"));
        assert!(msg(b"hello, this is a contract").contains("plain text"));
        assert!(msg(b"").contains("empty"));
        assert!(msg(&vec![b'%'; MAX_BYTES + 1]).contains("20 MiB"));
    }

    #[test]
    fn the_page_count_is_read_from_pdfinfo() {
        assert_eq!(parse_pages("Producer:  Skia/PDF\nPages:           12\nEncrypted: no\n"), Some(12));
        assert_eq!(parse_pages("Syntax Error: nothing\n"), None);
    }
}
