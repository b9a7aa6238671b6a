//! 联网核查 through the NCIIC (全国公民身份证号码查询服务中心) SOAP interface, as banks reach it over PBoC channels:
//! `nciicCheck(inLicense, inConditions)` at `/nciic_ws/services/NciicServices`. `inConditions` is an XML document of
//! rows (`GMSFHM` the number, `XM` the name) sent as an escaped string; the answer's `out` is one too, with
//! `result_gmsfhm` / `result_xm` (一致 · 不一致), `xp` (the authority's photo, base64), or `errormesage` (e.g.
//! 库中无此号) — or a `RESPONSE` with an `ErrorCode` when the request itself was refused (licence, IP, format).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use quick_xml::events::Event;
use vbank_crypto::SecretBytes;

use super::{Decision, HttpRequest, IdentityProtocol, Verdict, decided};

/// The service path.
pub const PATH: &str = "/nciic_ws/services/NciicServices";
/// The SOAP namespace of the operation.
pub const NAMESPACE: &str = "http://www.nciic.com.cn";

/// A configured NCIIC connection: the licence file's content (`inLicense`), the bank's 识别码 (`SBM`), and the
/// business type and place sent with each row.
pub struct Nciic {
    license: SecretBytes,
    sbm: String,
    business: String,
    place: String,
}

impl Nciic {
    /// With the licence `license`, the querying organisation's 识别码 `sbm`, the business type (`YWLX`, e.g. 开户)
    /// and place of business (`FSD`, a region code).
    pub fn new(license: SecretBytes, sbm: &str, business: &str, place: &str) -> Nciic {
        Nciic { license, sbm: sbm.into(), business: business.into(), place: place.into() }
    }
}

/// `s` with the five XML special characters escaped.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The `inConditions` document for one person.
pub fn conditions(sbm: &str, business: &str, place: &str, id_number: &str, name: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ROWS><INFO><SBM>{}</SBM></INFO><ROW><GMSFHM>公民身份号码</GMSFHM>\
         <XM>姓名</XM></ROW><ROW FSD=\"{}\" YWLX=\"{}\"><GMSFHM>{}</GMSFHM><XM>{}</XM></ROW></ROWS>",
        escape(sbm),
        escape(place),
        escape(business),
        escape(id_number),
        escape(name)
    )
}

/// A SOAP 1.1 envelope around `body`.
pub fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:nci=\"{NAMESPACE}\"><soapenv:Body>{body}\
         </soapenv:Body></soapenv:Envelope>"
    )
}

/// Every element's text, by local name, in document order (entities resolved); an error names what is malformed.
pub fn fields(xml: &str) -> Result<Vec<(String, String)>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| format!("malformed XML: {e}"))? {
            Event::Start(e) => {
                stack.push(e.local_name().as_ref().to_string());
                text.clear();
            }
            Event::Empty(e) => out.push((e.local_name().as_ref().to_string(), String::new())),
            Event::Text(t) => text.push_str(&t),
            Event::CData(t) => text.push_str(&t),
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| format!("malformed XML: {e}"))? {
                Some(c) => text.push(c),
                None => text.push_str(
                    quick_xml::escape::resolve_predefined_entity(&r)
                        .ok_or_else(|| format!("malformed XML: unknown entity &{};", &*r))?,
                ),
            },
            Event::End(_) => {
                let name = stack.pop().ok_or("malformed XML: an end without a start")?;
                out.push((name, std::mem::take(&mut text)));
            }
            Event::Eof if stack.is_empty() => return Ok(out),
            Event::Eof => return Err("malformed XML: truncated".into()),
            _ => {}
        }
    }
}

fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

impl IdentityProtocol for Nciic {
    fn engine(&self) -> &'static str {
        "nciic nciicCheck"
    }

    fn request(&self, name: &str, id_number: &str, _now_s: u64) -> Result<HttpRequest, String> {
        let license = std::str::from_utf8(self.license.expose()).map_err(|_| "the licence is not text")?;
        let rows = conditions(&self.sbm, &self.business, &self.place, id_number, name);
        let body = envelope(&format!(
            "<nci:nciicCheck><nci:inLicense>{}</nci:inLicense><nci:inConditions>{}</nci:inConditions></nci:nciicCheck>",
            escape(license.trim()),
            escape(&rows)
        ));
        Ok(HttpRequest {
            path: PATH.into(),
            headers: vec![
                ("Content-Type".into(), "text/xml; charset=utf-8".into()),
                ("SOAPAction".into(), "\"\"".into()),
            ],
            body: body.into_bytes(),
        })
    }

    fn decide(&self, status: u16, body: &[u8]) -> Decision {
        decide(status, body)
    }
}

/// `nciicCheck`: HTTP status and body.
pub fn decide(status: u16, body: &[u8]) -> Decision {
    let outer = std::str::from_utf8(body).ok().map(fields);
    let Some(Ok(outer)) = outer else {
        if (500..600).contains(&status) {
            return decided(Verdict::Unavailable(format!("HTTP {status}")), false, true, None);
        }
        return decided(Verdict::Unavailable("an unreadable answer".into()), true, false, None);
    };
    if let Some(fault) = field(&outer, "faultstring") {
        // A SOAP fault: the service failed before checking anything.
        return decided(Verdict::Unavailable(format!("SOAP fault: {fault}")), false, true, None);
    }
    if (500..600).contains(&status) {
        return decided(Verdict::Unavailable(format!("HTTP {status}")), false, true, None);
    }
    let Some(Ok(inner)) = field(&outer, "out").map(fields) else {
        return decided(Verdict::Unavailable("an answer without a result".into()), true, false, None);
    };
    if let Some(code) = field(&inner, "ErrorCode") {
        let why = format!("{code} {}", field(&inner, "ErrorMsg").unwrap_or_default());
        return match code {
            // The licence is wrong or expired, or this address is not allowed: bank IT must act.
            "-70" | "-71" | "-72" => decided(Verdict::Misconfigured(why), false, false, None),
            // The conditions document was refused.
            "-20" | "-21" => decided(Verdict::BadInput(why), false, false, None),
            // Busy: nothing was checked.
            "-90" => decided(Verdict::Unavailable(why), false, true, None),
            _ => decided(Verdict::Unavailable(why), false, false, None),
        };
    }
    if let Some(m) = field(&inner, "errormesage").filter(|m| !m.is_empty()) {
        if m.contains("库中无此号") {
            return decided(Verdict::NoRecord, true, false, None);
        }
        let col = field(&inner, "errormesagecol").unwrap_or_default();
        return decided(Verdict::BadInput(format!("{m} {col}").trim().to_string()), true, false, None);
    }
    let (number, name) = (field(&inner, "result_gmsfhm"), field(&inner, "result_xm"));
    let mut d = match (number, name) {
        (Some("一致"), Some("一致")) => decided(Verdict::Match, true, false, None),
        (Some(_), Some(_)) => decided(Verdict::Mismatch, true, false, None),
        _ => return decided(Verdict::Unavailable("an answer without a result".into()), true, false, None),
    };
    if d.verdict == Verdict::Match {
        d.photo = field(&inner, "xp").filter(|p| !p.is_empty()).and_then(|p| B64.decode(p).ok());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(inner: &str) -> Vec<u8> {
        envelope(&format!(
            "<ns1:nciicCheckResponse xmlns:ns1=\"{NAMESPACE}\"><ns1:out>{}</ns1:out></ns1:nciicCheckResponse>",
            escape(inner)
        ))
        .into_bytes()
    }

    fn row(output: &str) -> Vec<u8> {
        answer(&format!("<ROWS><ROW no=\"1\"><INPUT><gmsfhm>x</gmsfhm></INPUT><OUTPUT>{output}</OUTPUT></ROW></ROWS>"))
    }

    #[test]
    fn every_documented_answer_is_decided() {
        let ok = row("<ITEM><result_gmsfhm>一致</result_gmsfhm></ITEM><ITEM><result_xm>一致</result_xm></ITEM>\
                      <ITEM><xp>/9j/4AAQ</xp></ITEM>");
        let d = decide(200, &ok);
        assert_eq!((d.verdict, d.billed, d.photo), (Verdict::Match, true, Some(vec![0xff, 0xd8, 0xff, 0xe0, 0, 0x10])));
        let d = decide(
            200,
            &row("<ITEM><result_gmsfhm>一致</result_gmsfhm></ITEM><ITEM><result_xm>不一致</result_xm></ITEM>"),
        );
        assert_eq!((d.verdict, d.photo), (Verdict::Mismatch, None));
        let none =
            row("<ITEM><errormesage>服务结果:库中无此号，请到户籍所在地进行核实</errormesage><errormesagecol/></ITEM>");
        assert_eq!(decide(200, &none).verdict, Verdict::NoRecord);
        let refused = |code: &str| {
            decide(
                200,
                &answer(&format!(
                    "<RESPONSE errorcode=\"{code}\" code=\"0\" countrows=\"1\"><ROWS><ROW><ErrorCode>{code}</ErrorCode>\
                 <ErrorMsg>m</ErrorMsg></ROW></ROWS></RESPONSE>"
                )),
            )
        };
        assert!(matches!(refused("-72").verdict, Verdict::Misconfigured(_)));
        assert!(matches!(refused("-20").verdict, Verdict::BadInput(_)));
        assert!(refused("-90").retryable);
        let fault = envelope(
            "<soapenv:Fault><faultcode>soap:Server</faultcode><faultstring>down</faultstring></soapenv:Fault>",
        );
        assert!(decide(500, fault.as_bytes()).retryable);
        assert!(decide(503, b"").retryable);
        let garbled = &ok[..ok.len() / 2];
        assert!(decide(200, garbled).billed && !decide(200, garbled).retryable);
    }

    #[test]
    fn the_request_escapes_what_it_carries() {
        let n = Nciic::new(SecretBytes::new(b"LICENSE<&>".to_vec()), "SBM-1", "开户", "110101");
        let r = n.request("测试<甲>", "11010519491231002X", 0).unwrap();
        let body = String::from_utf8(r.body).unwrap();
        let outer = fields(&body).unwrap();
        assert_eq!(field(&outer, "inLicense"), Some("LICENSE<&>"));
        let inner = fields(field(&outer, "inConditions").unwrap()).unwrap();
        let xm: Vec<&str> = inner.iter().filter(|(k, _)| k == "XM").map(|(_, v)| v.as_str()).collect();
        assert_eq!(xm, ["姓名", "测试<甲>"]);
        assert_eq!(field(&inner, "SBM"), Some("SBM-1"));
        assert!(fields("<a><b>x</a>").is_err() && fields("<a>&bogus;</a>").is_err());
    }
}
