//! Electronic signature (电子签名) in the call. The teller sends the document (the transaction elements to confirm)
//! to the customer, who reads it and signs by drawing on the screen. The gateway seals the signing: the document's
//! SM3, the drawn image's SM3, who, where and when go into one statement that keyd signs with the evidence-seal key
//! (SM2, user ID `vbank-evidence`). The request, the statement, its seal and the image go into the call's recording.
//! Only the gateway makes statements, so a page cannot forge a signature event; an auditor checks the seal with
//! OpenSSL like a manifest's.

use base64::Engine as _;
use serde_json::{Value, json};
use vbank_config::Service;

use super::{Desk, now_ms, random_hex};

/// A signature the teller asked for and the customer has not given yet.
pub(super) struct Pending {
    id: String,
    teller: String,
    document_sm3: String,
}

/// Largest drawn signature accepted (PNG).
const MAX_IMAGE: usize = 300 * 1024;

fn sm3_hex(b: &[u8]) -> String {
    vbank_crypto::to_hex(&vbank_crypto::hash::sm3(b))
}

impl Desk {
    /// The teller in `customer`'s call asks them to sign `text` (titled `title`).
    pub(super) async fn request_signature(
        &self,
        teller: &str,
        customer: &str,
        title: &str,
        text: &str,
    ) -> Result<(), String> {
        let in_call = self.router.lock().await.call_of(customer).is_some_and(|t| t.iter().any(|x| x == teller));
        if !in_call {
            return Err(format!("you are not in a call with {customer}"));
        }
        if title.trim().is_empty()
            || title.chars().count() > 200
            || text.trim().is_empty()
            || text.chars().count() > 20_000
        {
            return Err("a signature request has a title (1-200 characters) and a text (1-20000 characters)".into());
        }
        let id = format!("sig-{}", random_hex(6));
        let document_sm3 = sm3_hex(text.as_bytes());
        let room = {
            let mut inner = self.inner.lock().expect("not poisoned");
            inner.signing.insert(
                customer.to_string(),
                Pending { id: id.clone(), teller: teller.to_string(), document_sm3: document_sm3.clone() },
            );
            inner.rooms.get(customer).cloned()
        };
        if let Some(room) = &room {
            self.calls.note(
                room,
                json!({"kind": "sign_request", "request": id, "teller": teller, "title": title,
                                         "document_sm3": document_sm3, "text": text}),
            );
        }
        self.send_customer(
            customer,
            json!({"type": "sign_request", "request": id, "title": title, "text": text, "document_sm3": document_sm3}),
        );
        Ok(())
    }

    /// The customer signs request `request` with the drawn image `png_b64` (base64 PNG): seal it through keyd and
    /// record it. The statement sealed.
    pub(super) async fn sign(&self, customer: &str, request: &str, png_b64: &str) -> Result<Value, String> {
        let png = base64::engine::general_purpose::STANDARD
            .decode(png_b64.trim_start_matches("data:image/png;base64,"))
            .map_err(|_| "the signature is not a base64 PNG".to_string())?;
        if png.len() > MAX_IMAGE || !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(format!("the signature must be a PNG of at most {} KiB", MAX_IMAGE / 1024));
        }
        let (pending, room) = {
            let inner = self.inner.lock().expect("not poisoned");
            let p = inner
                .signing
                .get(customer)
                .filter(|p| p.id == request)
                .map(|p| (p.teller.clone(), p.document_sm3.clone()));
            (p, inner.rooms.get(customer).cloned())
        };
        let (Some((teller, document_sm3)), Some(room)) = (pending, room) else {
            return Err("no signature was asked for under this request (or it was given already)".into());
        };
        let statement = json!({"format": "vbank-esign/1", "request": request, "room": room, "customer": customer,
                               "teller": teller, "document_sm3": document_sm3, "image_sm3": sm3_hex(&png),
                               "signed_at_ms": now_ms()})
        .to_string();
        let seal = self.seal(statement.as_bytes()).await?;
        self.inner.lock().expect("not poisoned").signing.remove(customer);
        self.calls.note(
            &room,
            json!({"kind": "signature", "request": request, "statement": statement, "seal": seal["signature"],
                   "seal_key": seal["key"], "image_png": base64::engine::general_purpose::STANDARD.encode(&png)}),
        );
        self.send_teller(
            &teller,
            json!({"type": "signed", "customer": customer, "request": request, "document_sm3": document_sm3}),
        );
        Ok(json!({"type": "signed", "request": request, "statement": statement}))
    }

    /// keyd's SM2 evidence seal over `data`.
    async fn seal(&self, data: &[u8]) -> Result<Value, String> {
        let Some(cfg) = &self.cfg else { return Err("no keyd to seal the signature".into()) };
        let body = json!({"purpose": "evidence-seal", "data": vbank_crypto::to_hex(data)});
        crate::recording::post(cfg, Service::Keyd, "/v1/sign", body)
            .await
            .map_err(|e| format!("the signature could not be sealed, so it is not taken: {e}"))
    }
}
