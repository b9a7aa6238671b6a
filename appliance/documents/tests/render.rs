//! Rendering the test fixtures with the real converters (poppler-utils, LibreOffice; tests/setup.sh installs them).

use vbank_documents::{DocumentError, Kind, PAGE_WIDTH, Renderer};

/// Read at run time from `CARGO_MANIFEST_DIR` as cargo sets it for the test: a path compiled in would name whichever
/// checkout built the binary first when clones share one target directory.
fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test");
    std::fs::read(format!("{dir}/../../tests/fixtures/{name}")).expect("fixture")
}

/// Width and height from a PNG's IHDR.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test]
async fn a_pdf_renders_one_png_per_page_at_the_page_width() {
    let bytes = fixture("account-agreement.pdf");
    let r = Renderer::default().render(&bytes).await.unwrap();
    assert_eq!(r.kind, Kind::Pdf);
    assert_eq!(r.pages.len(), 2);
    assert_eq!(r.sm3, vbank_crypto::to_hex(&vbank_crypto::hash::sm3(&bytes)));
    for p in &r.pages {
        let (w, h) = png_size(p);
        assert_eq!(w, PAGE_WIDTH);
        assert!(h > w, "an A4/Letter page is taller than wide: {w}x{h}");
    }
    assert_ne!(r.pages[0], r.pages[1]);
}

#[tokio::test]
async fn a_powerpoint_file_renders_through_libreoffice() {
    let r = Renderer::default().render(&fixture("product-brief.pptx")).await.unwrap();
    assert_eq!(r.kind, Kind::Presentation);
    assert_eq!(r.pages.len(), 3);
    let (w, h) = png_size(&r.pages[0]);
    assert!(w == PAGE_WIDTH && h < w, "slides are wider than tall: {w}x{h}");
}

#[tokio::test]
async fn a_damaged_pdf_is_refused_with_what_to_do() {
    let mut bytes = fixture("account-agreement.pdf");
    bytes.truncate(400);
    let e = Renderer::default().render(&bytes).await.unwrap_err();
    assert!(matches!(e, DocumentError::Unreadable(_)), "{e}");
    assert!(e.to_string().contains("export it again as PDF"), "{e}");
}

#[tokio::test]
async fn a_converter_over_its_memory_limit_fails_alone_with_a_clear_error() {
    let tight = Renderer { poppler_memory: 8 << 20, ..Renderer::default() };
    let e = tight.render(&fixture("account-agreement.pdf")).await.unwrap_err();
    assert!(matches!(e, DocumentError::Unreadable(_)), "{e}");
}
